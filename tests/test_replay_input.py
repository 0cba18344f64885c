"""Hostile input to `voiceivr replay`: malformed recording JSON and WAV headers that lie.

Each case runs the real command in a child process (tests/support/measure.py): it must end in one clear error line
and exit 1, without a traceback, and cost little more memory than the same command refusing a missing file.
"""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.measure import Run, assert_refused, run_voiceivr
from voiceivr.audio.wav import MAX_DURATION_S, MAX_FILE_BYTES, write_wav
from voiceivr.replay_input import MAX_EVENTS, MAX_JSON_BYTES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
RECORDING = json.loads((FIXTURES / "calls" / "bank_call.json").read_text())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    var = tmp_path_factory.mktemp("var")
    return {"VOICEIVR_PATHS_VAR_DIR": str(var), "VOICEIVR_DATABASE_URL": f"sqlite:///{var}/none.sqlite3"}


@pytest.fixture(scope="module")
def baseline(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("b")
    run = run_voiceivr(["replay", str(tmp / "missing.json")], tmp, env)
    assert run.returncode == 1 and "no such file" in run.stderr, run.output
    return run


def recording(tmp_path: Path, change: Any) -> Path:
    """The fixture's recording with one change, beside a second of silence as its WAV."""
    doc = copy.deepcopy(RECORDING)
    doc["wav"] = "call.wav"
    doc["sip"]["remote_media"] = {"host": "127.0.0.1", "port": 40000}
    change(doc)
    write_wav(tmp_path / "call.wav", np.zeros((8000, 2), dtype=np.int16), 8000)
    path = tmp_path / "call.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def setter(*path: Any, value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


# Each way a recording's fields can be wrong, in the fields replay reads.
MALFORMED = [
    ("events-not-a-list", setter("events", value=5), "events must be a list, got 5"),
    ("events-a-string", setter("events", value="dtmf"), 'events must be a list, got "dtmf"'),
    ("event-not-an-object", setter("events", 0, value=1), "events[0] must be an object, got 1"),
    ("t-not-a-number", setter("events", 0, "t", value="soon"), 'events[0].t must be a number of seconds, got "soon"'),
    ("t-null", setter("events", 0, "t", value=None), "events[0].t must be a number of seconds, got null"),
    ("t-nan", setter("events", 0, "t", value=float("nan")), "events[0].t must be a number of seconds, got NaN"),
    ("t-infinite", setter("events", 0, "t", value=float("inf")),
     "events[0].t must be a number of seconds, got Infinity"),
    ("t-negative", setter("events", 0, "t", value=-5), f"events[0].t must be between 0 and {MAX_DURATION_S} seconds"),
    ("t-huge", setter("events", 0, "t", value=1e300), f"events[0].t must be between 0 and {MAX_DURATION_S} seconds"),
    ("digit-a-number", setter("events", 0, "digit", value=5), "events[0].digit must be one key of 0-9 * # A-D, got 5"),
    ("digit-a-list", setter("events", 0, "digit", value=["1"]), "events[0].digit must be one key of 0-9 * # A-D"),
    ("remote-not-an-object", lambda d: d["events"].insert(0, {"t": 1.0, "type": "media_moved", "remote": "x"}),
     'events[0].remote must be an object with host and port, got "x"'),
    ("remote-port-not-a-number", lambda d: d["events"].insert(0, {"t": 1.0, "type": "media_moved",
                                                                   "remote": {"host": "h", "port": [1]}}),
     "events[0].remote.port must be a port number (0-65535), got [1]"),
    ("sip-not-an-object", setter("sip", value="x"), 'sip must be an object, got "x"'),
    ("sip-remote-media-not-an-object", setter("sip", "remote_media", value=5),
     "sip.remote_media must be an object with host and port, got 5"),
    ("sip-call-id-not-text", setter("sip", "sip_call_id", value={"a": 1}), "sip.sip_call_id must be text"),
    ("wav-a-relative-path", setter("wav", value="../../etc/passwd"),
     'wav must be the name of a file beside the recording, got "../../etc/passwd"'),
    ("wav-an-absolute-path", setter("wav", value="/etc/passwd"),
     'wav must be the name of a file beside the recording, got "/etc/passwd"'),
    ("wav-not-text", setter("wav", value=7), "wav must be the name of a file beside the recording, got 7"),
    ("too-many-events", setter("events", value=[{"t": 1.0, "type": "dtmf", "digit": "1"}] * (MAX_EVENTS + 1)),
     f"{MAX_EVENTS + 1:,} events; a recording has at most {MAX_EVENTS:,}"),
]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("change, words", [(c, w) for _, c, w in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_a_malformed_recording_is_one_clear_error(change: Any, words: str, env: dict[str, str], baseline: Run,
                                                  tmp_path: Path) -> None:
    path = recording(tmp_path, change)
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"voiceivr: error: {path}: {words}")
    assert len(run.error_lines()) == 1


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_the_json_beside_a_wav_is_checked_too(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    path = recording(tmp_path, setter("events", 0, value=1))
    run = run_voiceivr(["replay", str(tmp_path / "call.wav")], tmp_path, env)
    assert_refused(run, baseline, f"{path}: events[0] must be an object, got 1")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_json_nested_past_the_parser_is_one_clear_error(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: not a readable recording (nested too deeply)")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_oversized_recording_is_refused_unread(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    # 600,000 events (37 MB): parsed, they took hundreds of MB; replayed, each event was popped off the front
    # of a list (quadratic in their number).
    event = '{"t": 1.0, "type": "dtmf", "digit": "1", "method": "rfc4733"}'
    path = tmp_path / "big.json"
    path.write_text('{"format": "voiceivr-recording/1", "events": [' + ",".join([event] * 600_000) + "]}")
    assert path.stat().st_size > MAX_JSON_BYTES
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: over {MAX_JSON_BYTES // (1024 * 1024)} MB")


def wav_header(rate: int, data_bytes: int, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte PCM header, saying whatever it is told to."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * bits // 8) & 0xFFFFFFFF, channels * bits // 8,
                      bits)
    return (b"RIFF" + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + fmt + b"data" + struct.pack("<I", data_bytes))


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("rate, body", [
    (999_983, 4000 - 44),  # a 4 kB WAV at a prime rate past any real one: resampling it took 2.3 GB
    (4_294_967_291, 0),  # a bare 44-byte header at the largest prime rate: numpy was asked for 1.56 TiB
    (1, 100),
], ids=["999983-hz", "44-byte-header", "1-hz"])
def test_a_wav_with_an_impossible_rate_is_refused(rate: int, body: int, env: dict[str, str], baseline: Run,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "odd.wav"
    path.write_bytes(wav_header(rate, body) + bytes(body))
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: WAV file says its sample rate is {rate} Hz; 4000-192000 Hz is supported")


@pytest.mark.slow
def test_a_wav_at_an_odd_rate_within_range_replays_in_bounded_memory(env: dict[str, str], tmp_path: Path) -> None:
    # 191,999 Hz is a legal rate, but its exact ratio to 8 kHz is 8000/191999: the resampler's filter for it
    # took 1 GB and 5 s. Converted through the nearest small ratio (1/24) it costs almost nothing. The
    # replay itself runs: its baseline is a replay of the same second of silence at 8 kHz.
    odd, plain = tmp_path / "odd.wav", tmp_path / "plain.wav"
    write_wav(odd, np.zeros(191_999, dtype=np.int16), 191_999)
    write_wav(plain, np.zeros(8000, dtype=np.int16), 8000)
    hello = ["--dialplan", str(ROOT / "dialplans" / "hello.yaml"), "--json"]
    # The speech engines map far more address space than the refusals above.
    reference = run_voiceivr(["replay", str(plain), *hello], tmp_path, env, timeout_s=120, address_space_mb=4000)
    assert reference.returncode == 0, reference.output[-2000:]
    run = run_voiceivr(["replay", str(odd), *hello], tmp_path, env, timeout_s=120, address_space_mb=4000)
    assert run.returncode == 0, run.output[-2000:]
    assert json.loads(run.stdout)["audio_s"] == json.loads(reference.stdout)["audio_s"]
    assert run.peak_mb - reference.peak_mb < 50, (run.peak_mb, reference.peak_mb)


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_header_claiming_4_gb_of_data_costs_only_what_the_file_holds(env: dict[str, str], baseline: Run,
                                                                       tmp_path: Path) -> None:
    # Streamed WAVs may claim more than they hold, so the claim is not an error; it must not cost anything.
    # Three channels, so replay refuses it right after reading (the refusal is not what is tested here).
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(8000, 0xFFFFFFFF, channels=3) + bytes(600))
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: 3 channels")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_wav_over_the_size_limit_is_refused_unread(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    path = tmp_path / "huge.wav"
    with path.open("wb") as f:  # sparse: the disk holds almost nothing, the file says 300 MB
        f.write(wav_header(8000, 300 * 1024 * 1024))
        f.truncate(300 * 1024 * 1024 + 44)
    assert path.stat().st_size > MAX_FILE_BYTES
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: WAV file is 300 MB; voiceivr reads at most 256 MB")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_wav_longer_than_the_duration_limit_is_refused(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    # 4 kHz mono 8-bit: the most audio per byte a readable WAV holds; two hours and a minute in 29 MB.
    seconds = MAX_DURATION_S + 60
    path = tmp_path / "long.wav"
    with path.open("wb") as f:
        f.write(wav_header(4000, seconds * 4000, bits=8))
        f.truncate(44 + seconds * 4000)
    run = run_voiceivr(["replay", str(path)], tmp_path, env)
    assert_refused(run, baseline, f"{path}: WAV file holds 2.0 hours of audio; voiceivr reads at most 2 hours")

"""Real calls over 127.0.0.1: `voiceivr serve` (one worker, no Kamailio) answered by tests/sip/sip_handlers.py,
called by `voiceivr call` and tests/sip/sip_peer.py, each pjsua2 endpoint in its own process."""

from __future__ import annotations

import json
import os
import signal
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sip import siptools
from tests.sip.sip_handlers import tone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ivr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[siptools.Served]:
    tmp = tmp_path_factory.mktemp("ivr")
    with siptools.serve(tmp, VOICEIVR_SIP_TRUSTED_PROXIES="127.0.0.1", VOICEIVR_SIP_RTP_TIMEOUT_S="2",
                        VIVR_TEST_TRANSFER="sip:agent@127.0.0.1:{port}") as served:
        yield served



def recording_for(ivr: siptools.Served, sip_call_id: str, timeout: float = 10.0) -> tuple[dict[str, Any], Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in (ivr.var / "recordings").glob("*/*.json"):
            doc = json.loads(path.read_text())
            if doc["sip"]["sip_call_id"] == sip_call_id:
                return doc, path.with_suffix(".wav")
        time.sleep(0.1)
    raise AssertionError(f"no recording for {sip_call_id}")


def test_call_hears_prompt_keys_dtmf_and_is_hung_up_on_hash(ivr: siptools.Served, tmp_path: Path) -> None:
    played = tmp_path / "hello.wav"
    with wave.open(str(played), "wb") as w:  # 16 kHz stereo on purpose: the caller converts it
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        mono = np.frombuffer(tone(16000, 300, 0.5, 6000), dtype="<i2")
        w.writeframes(np.repeat(mono, 2).astype("<i2").tobytes())
    heard = tmp_path / "heard.wav"
    result = siptools.voiceivr_call(
        [f"sip:ivr@127.0.0.1:{ivr.port}", "--wait-prompt", "3", "--play", str(played), "--dtmf", "12#",
         "--record", str(heard), "--duration", "8", "--json"], ivr.env)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["answered"] and report["codec"] == "PCMU/8000"
    assert report["setup_s"] < 1.0
    # The 0.6 s greeting, measured in the audio the caller heard.
    first = report["agent_audio"][0]
    assert first["start"] < 0.3 and 0.4 < first["end"] - first["start"] < 0.9
    # A 0.2 s beep per digit came back (the two beeps 0.25 s apart merge into one stretch of audio).
    assert len(report["agent_audio"]) >= 2
    assert report["agent_audio"][1]["start"] > report["dtmf_sent"][0]["t"]
    assert report["hangup"]["by"] == "far end"
    with wave.open(str(heard), "rb") as w:
        assert w.getframerate() == 8000 and w.getnframes() > 8000

    log = ivr.call_log(report["sip_call_id"])
    assert log["digits"] == [["1", "rfc4733"], ["2", "rfc4733"], ["#", "rfc4733"]]
    assert log["loud_frames"] >= 20  # the 0.5 s tone the caller played reached the handler
    assert log["thread_checks"]["start"] == "voiceivr-sip"
    assert log["thread_checks"]["on_dtmf"] == "voiceivr-sip"

    doc, wav_path = recording_for(ivr, report["sip_call_id"])
    assert doc["format"] == "voiceivr-recording/1" and doc["channels"] == ["caller", "agent"]
    assert doc["hangup"]["by"] == "agent" and doc["hangup"]["reason"] == "caller pressed #"
    assert [e["digit"] for e in doc["events"] if e["type"] == "dtmf"] == ["1", "2", "#"]
    assert doc["frame_gaps"]["frames"] > 50 and doc["frame_gaps"]["max_ms"] < 200
    with wave.open(str(wav_path), "rb") as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2).astype(np.float64)
    caller_rms = np.sqrt(np.mean(pcm[:, 0] ** 2))
    agent_first = np.sqrt(np.mean(pcm[:4000, 1] ** 2))  # the greeting plays in the first 0.5 s
    assert agent_first > 2000 and caller_rms > 100
    assert abs(len(pcm) / 8000 - doc["duration_s"]) < 0.05


def test_sip_info_dtmf_and_caller_hangup_reach_the_handler(ivr: siptools.Served) -> None:
    out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}",
                         "steps": [["wait_prompt", 3], ["dtmf", "47", "sip-info"], ["sleep", 0.5], ["hangup"]]},
                        ivr.env)
    report = out[-1]
    assert report["answered"] and report["by"] == "agent"
    log = ivr.call_log(report["sip_call_id"])
    assert log["digits"] == [["4", "sip-info"], ["7", "sip-info"]]
    assert [e[1] for e in log["events"]][-1] == "remote_hangup"
    doc, _ = recording_for(ivr, report["sip_call_id"])
    assert doc["hangup"]["by"] == "caller"
    assert [e["method"] for e in doc["events"] if e["type"] == "dtmf"] == ["sip-info", "sip-info"]


def test_call_info_is_read_from_the_invite(ivr: siptools.Served) -> None:
    headers = {"P-Asserted-Identity": '"Bank Caller" <sip:+15551234567@trunk.example.net>', "X-Campaign": "spring"}
    out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "headers": headers,
                         "steps": [["sleep", 0.3], ["hangup"]]}, ivr.env)
    answered, report = out[0], out[-1]
    log = ivr.call_log(report["sip_call_id"])
    assert log["asserted_identity"] == "sip:+15551234567@trunk.example.net"  # 127.0.0.1 is trusted here
    assert log["headers"]["x-campaign"] == "spring"
    assert log["to_uri"] == "sip:ivr@127.0.0.1"
    # Both ends agree on the dialog.
    assert log["local_tag"] == answered["remote_tag"] and log["remote_tag"] == answered["local_tag"]
    assert log["source_address"].startswith("127.0.0.1:")
    assert log["remote_media"][0] == "127.0.0.1" and log["remote_media"][1] > 0
    assert log["codec"] == "PCMU/8000"


def test_blind_transfer_by_refer(ivr: siptools.Served) -> None:
    target = f"sip:agent@127.0.0.1:{ivr.port}"
    out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "accept_refer": True, "linger": 1.5,
                         "steps": [["wait_prompt", 3], ["dtmf", "0"], ["wait_end", 8]]}, ivr.env)
    report = out[-1]
    assert target in report["transferred_to"]
    assert report["by"] == "far end"  # the IVR hung up its leg once the transfer succeeded
    doc, _ = recording_for(ivr, report["sip_call_id"])
    kinds = [e["type"] for e in doc["events"]]
    assert "transfer_requested" in kinds
    result = [e for e in doc["events"] if e["type"] == "transfer_result"]
    assert result and result[-1]["ok"] is True and result[-1]["status"] == 200
    assert doc["hangup"]["by"] == "agent" and doc["hangup"]["reason"] == "transferred"
    # The transferred caller arrived as a new call to the target.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = [x for x in ivr.call_logs(0, 0) if x["to_uri"] == "sip:agent@127.0.0.1"]
        if logs:
            break
        time.sleep(0.2)
    assert logs, "the transfer target never got the call"


def test_refused_transfer_is_reported_to_the_handler(ivr: siptools.Served) -> None:
    out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "accept_refer": False,
                         "steps": [["wait_prompt", 3], ["dtmf", "0"], ["sleep", 1.5], ["hangup"]]}, ivr.env)
    report = out[-1]
    log = ivr.call_log(report["sip_call_id"])
    results = [e[2] for e in log["events"] if e[1] == "transfer_result"]
    assert results == [[False, 603]]
    assert report["by"] == "agent"  # the call stayed up until the caller hung up


def test_reinvite_moving_media_reaches_the_handler(ivr: siptools.Served) -> None:
    out = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}",
                         "steps": [["sleep", 0.5], ["reinvite"], ["sleep", 1.0], ["dtmf", "5"], ["sleep", 0.5],
                                   ["hangup"]]}, ivr.env)
    report = out[-1]
    log = ivr.call_log(report["sip_call_id"])
    moved = [e[2] for e in log["events"] if e[1] == "media_moved"]
    assert len(moved) == 1 and moved[0][1] != log["remote_media"][1]
    assert log["digits"] == [["5", "rfc4733"]]  # DTMF still arrives over the new media path


def test_invite_with_replaces_moves_the_call_to_the_new_dialog(ivr: siptools.Served) -> None:
    first = siptools.start_peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}",
                                 "steps": [["wait_end", 20]]}, ivr.env)
    try:
        answered = siptools.read_json_line(first, 10)
        replaces = (f"{answered['sip_call_id']};to-tag={answered['remote_tag']};"
                    f"from-tag={answered['local_tag']}")
        second = siptools.peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "headers": {"Replaces": replaces},
                                "steps": [["sleep", 0.5], ["dtmf", "8"], ["sleep", 0.5], ["hangup"]]}, ivr.env)
        old = siptools.finish_peer(first, 20)
    finally:
        if first.poll() is None:
            first.kill()
    assert old["by"] == "far end"  # the replaced dialog got a BYE
    assert second[-1]["answered"]
    log = ivr.call_log(answered["sip_call_id"])
    kinds = [e[1] for e in log["events"]]
    assert "dialog_replaced" in kinds
    assert log["digits"] == [["8", "rfc4733"]]  # the same session now hears the new dialog


def test_rtp_timeout_hangs_up(ivr: siptools.Served) -> None:
    proc = siptools.start_peer({"uri": f"sip:ivr@127.0.0.1:{ivr.port}", "steps": [["wait_end", 30]]}, ivr.env)
    try:
        answered = siptools.read_json_line(proc, 10)
        time.sleep(0.5)  # part of the scenario: half a second of RTP both ways, then the caller goes silent
        os.kill(proc.pid, signal.SIGSTOP)  # no RTP (and no SIP) from the caller any more
        doc, _ = recording_for(ivr, answered["sip_call_id"], timeout=10)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(5)
    assert doc["hangup"]["by"] == "edge" and doc["hangup"]["reason"] == "rtp timeout"
    timeout_events = [e for e in doc["events"] if e["type"] == "rtp_timeout"]
    assert timeout_events and 2.0 <= timeout_events[0]["silent_s"] < 4.0
    assert ivr.alive()


def test_caller_says_text_and_transcribes_what_it_heard(ivr: siptools.Served) -> None:
    result = siptools.voiceivr_call(
        [f"sip:ivr@127.0.0.1:{ivr.port}", "--wait-prompt", "3", "--say", "one two three", "--dtmf", "5",
         "--duration", "3", "--tts", "tests.sip.sip_handlers:fake_tts", "--transcribe", "--stt",
         "tests.sip.sip_handlers:fake_stt", "--json"], ivr.env)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["played"][0]["what"] == "say: one two three"
    assert 0.4 < report["played"][0]["end"] - report["played"][0]["start"] < 1.0
    assert report["transcript"] == "beep"  # the IVR's answer to the key press, through the STT interface
    log = ivr.call_log(report["sip_call_id"])
    assert log["loud_frames"] >= 20  # the synthesised words reached the IVR


@pytest.fixture(scope="module")
def speaking_ivr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[siptools.Served]:
    """An IVR whose greeting is a spoken phrase (espeak-ng on a telephone line) instead of a tone."""
    from voiceivr.audio.wav import read_wav, write_wav

    tmp = tmp_path_factory.mktemp("speaking")
    phrase = siptools.ROOT / "tests" / "fixtures" / "audio" / "phrases" / "check_balance__espeak-us__tel.wav"
    write_wav(tmp / "prompt.wav", read_wav(phrase).mono(), 8000)  # PCM: the test handler reads it with `wave`
    with siptools.serve(tmp, VIVR_TEST_PROMPT=str(tmp / "prompt.wav")) as served:
        yield served


@pytest.mark.parametrize("stt", [[], ["--stt", "voiceivr.speech.stt.pocketsphinx_stt:PocketsphinxEngine"]],
                         ids=["configured-engine", "engine-class"])
def test_caller_transcribes_with_the_real_recognizer(speaking_ivr: siptools.Served, stt: list[str]) -> None:
    # Without --stt the engine speech.stt_engine names listens; an engine's class, the natural guess for --stt,
    # means that engine (it was a TypeError traceback: the class was called with the settings as its model).
    result = siptools.voiceivr_call([f"sip:ivr@127.0.0.1:{speaking_ivr.port}", "--wait-prompt", "5", "--duration",
                                     "4", "--transcribe", *stt, "--json"], speaking_ivr.env, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["answered"] and report["agent_audio"]
    # Free speech (no grammar) on a synthetic voice gives other words than were said, but words.
    assert isinstance(report["transcript"], str) and report["transcript"].split(), report["transcript"]


def test_caller_with_a_broken_engine_says_what_is_wrong(ivr: siptools.Served) -> None:
    # Without --tts the engine the settings name speaks; a factory that does not exist is one clear line.
    result = siptools.voiceivr_call([f"sip:ivr@127.0.0.1:{ivr.port}", "--say", "hello", "--tts",
                                     "voiceivr.nowhere:tts"], ivr.env)
    assert result.returncode != 0
    assert "--tts" in result.stderr and "Traceback" not in result.stderr

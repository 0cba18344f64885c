"""WAV reading and writing: PCM16, mu-law and A-law (with the fmt/fact chunks the spec asks for), stereo,
the odd formats other tools write, and precise errors on broken files."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voiceivr.audio import g711
from voiceivr.audio.wav import WavError, encode_wav, read_wav, write_wav


def noise(n: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(7)
    shape = (n,) if channels == 1 else (n, channels)
    return np.clip(rng.normal(0, 5000, shape), -32768, 32767).astype(np.int16)


def test_pcm16_round_trip_and_stdlib_agrees(tmp_path: Path) -> None:
    x = noise(8000)
    path = tmp_path / "a.wav"
    write_wav(path, x, 8000)
    back = read_wav(path)
    assert back.rate == 8000 and back.encoding == "pcm" and back.channels == 1
    assert np.array_equal(back.pcm, x)
    with wave.open(str(path)) as w:  # an independent reader understands what we wrote
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (1, 8000, 2, 8000)
        assert np.array_equal(np.frombuffer(w.readframes(8000), "<i2"), x)


def test_stereo_round_trip(tmp_path: Path) -> None:
    x = noise(1000, channels=2)
    write_wav(tmp_path / "s.wav", x, 16000)
    back = read_wav(tmp_path / "s.wav")
    assert back.channels == 2 and np.array_equal(back.pcm, x)
    assert np.array_equal(back.mono(), np.rint(x.astype(float).mean(axis=1)).astype(np.int16))


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_wav_layout(tmp_path: Path, encoding: str) -> None:
    x = noise(801)  # odd length: the data chunk needs a pad byte
    data = encode_wav(x, 8000, encoding)  # type: ignore[arg-type]
    assert data[:4] == b"RIFF" and struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    assert data[12:16] == b"fmt " and struct.unpack_from("<I", data, 16)[0] == 18
    tag, channels, rate, byte_rate, align, bits, cb = struct.unpack_from("<HHIIHHH", data, 20)
    assert (tag, channels, rate, byte_rate, align, bits, cb) == (
        7 if encoding == "mulaw" else 6, 1, 8000, 8000, 1, 8, 0)
    assert data[38:42] == b"fact" and struct.unpack_from("<I", data, 46)[0] == 801
    assert data[50:54] == b"data" and struct.unpack_from("<I", data, 54)[0] == 801
    assert len(data) == 58 + 801 + 1
    path = tmp_path / "g.wav"
    path.write_bytes(data)
    back = read_wav(path)
    assert back.encoding == encoding and back.bits == 8
    codec = (g711.ulaw_encode, g711.ulaw_decode) if encoding == "mulaw" else (g711.alaw_encode, g711.alaw_decode)
    assert np.array_equal(back.pcm, codec[1](codec[0](x)))


def _riff(fmt: bytes, body: bytes) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_other_pcm_widths_and_float() -> None:
    x = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    as24 = b"".join(struct.pack("<i", int(v) << 8)[:3] for v in x)
    got = read_wav(_riff(struct.pack("<HHIIHH", 1, 1, 8000, 24000, 3, 24), as24))
    assert np.array_equal(got.pcm, x)
    as32 = (x.astype("<i4") << 16).tobytes()
    assert np.array_equal(read_wav(_riff(struct.pack("<HHIIHH", 1, 1, 8000, 32000, 4, 32), as32)).pcm, x)
    asf = (x.astype(np.float64) / 32768).astype("<f4").tobytes()
    assert np.array_equal(read_wav(_riff(struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32), asf)).pcm, x)
    as8 = bytes([128, 129, 127])
    assert read_wav(_riff(struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8), as8)).pcm.tolist() == [0, 256, -256]


def test_extensible_format_is_read() -> None:
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 16000, 64000, 4, 16, 22, 16, 3) + struct.pack("<H", 1) + guid_tail
    x = noise(10, channels=2)
    got = read_wav(_riff(fmt, x.tobytes()))
    assert got.channels == 2 and np.array_equal(got.pcm, x)


def test_broken_files_get_precise_errors(tmp_path: Path) -> None:
    with pytest.raises(WavError, match="not a WAV file"):
        read_wav(b"hello")
    with pytest.raises(WavError, match="no data chunk"):
        read_wav(b"RIFF\x1c\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16))
    with pytest.raises(WavError, match="format tag 0x0055"):
        read_wav(_riff(struct.pack("<HHIIHH", 0x55, 1, 8000, 1000, 1, 0), b"\0\0"))
    with pytest.raises(WavError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_truncated_data_is_read_as_far_as_it_goes() -> None:
    x = noise(100)
    data = encode_wav(x, 8000)
    got = read_wav(data[:-51])  # a recording cut mid-sample
    assert np.array_equal(got.pcm, x[:74])


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    write_wav(tmp_path / "p.wav", noise(10), 8000)
    write_wav(tmp_path / "p.wav", noise(20), 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["p.wav"]
    assert len(read_wav(tmp_path / "p.wav").pcm) == 20

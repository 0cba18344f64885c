"""WAV files: read PCM (8/16/24/32-bit), float, mu-law and A-law, mono or multi-channel; write PCM16, mu-law
and A-law.

The stdlib ``wave`` module handles only integer PCM, so the RIFF chunks are parsed and written here. G.711
files carry an 18-byte ``fmt`` chunk (``cbSize`` = 0) and a ``fact`` chunk with the sample count, as the
WAVE spec asks of every non-PCM format. Writes are atomic (temporary file, then rename), so a reader in
another process (the prompt cache, a recorder being replayed) never sees half a file.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from voiceivr.audio import g711
from voiceivr.audio.frames import Pcm
from voiceivr.errors import VoiceivrError

Encoding = Literal["pcm16", "mulaw", "alaw"]

# What a WAV file may say about itself before it is refused. The header is untrusted: a 44-byte file once
# declared 4,294,967,291 Hz, and resampling from that asked numpy for 1.56 TiB. Telephone audio is 8 kHz,
# studio audio at most 192 kHz; nothing voiceivr reads (a call recording, a prompt, a caller's WAV) lasts
# hours, and the biggest file it writes, a 2-hour stereo call at 8 kHz, is 230 MB.
MIN_RATE = 4000
MAX_RATE = 192_000
MAX_DURATION_S = 2 * 3600
MAX_FILE_BYTES = 256 * 1024 * 1024

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_FORMAT_NAMES = {
    WAVE_FORMAT_PCM: "pcm",
    WAVE_FORMAT_IEEE_FLOAT: "float",
    WAVE_FORMAT_ALAW: "alaw",
    WAVE_FORMAT_MULAW: "mulaw",
}


class WavError(VoiceivrError):
    """A file is not a WAV file this code can read, or cannot be written."""


@dataclass
class WavAudio:
    """``pcm``: int16, shape (n,) for mono or (n, channels); ``encoding`` is what the file stored."""

    pcm: Pcm
    rate: int
    encoding: str
    bits: int

    @property
    def channels(self) -> int:
        return 1 if self.pcm.ndim == 1 else int(self.pcm.shape[1])

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate

    def mono(self) -> Pcm:
        """One channel: the mean of all channels (rounded), or the samples themselves if already mono."""
        if self.pcm.ndim == 1:
            return self.pcm
        mixed = np.rint(self.pcm.astype(np.float64).mean(axis=1))
        return np.clip(mixed, -32768, 32767).astype(np.int16)


def read_wav(source: str | Path | bytes) -> WavAudio:
    """Read a WAV file (a path or the file's bytes)."""
    name = "<bytes>"
    if isinstance(source, bytes):
        data = source
        size = len(data)
    else:
        name = str(source)
        try:
            with Path(source).open("rb") as f:
                # Refused unread when the size is known; a pipe says 0, and then no more than the limit is read.
                size = os.fstat(f.fileno()).st_size
                data = f.read(MAX_FILE_BYTES + 1) if size <= MAX_FILE_BYTES else b""
        except OSError as exc:
            raise WavError(f"{name}: cannot read: {exc.strerror}") from None
        size = max(size, len(data))
    if size > MAX_FILE_BYTES:
        mb = 1024 * 1024
        raise WavError(f"{name}: WAV file is {size / mb:.0f} MB; voiceivr reads at most {MAX_FILE_BYTES // mb} MB "
                       f"({MAX_DURATION_S // 3600} hours of audio)")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise WavError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    if data[:4] == b"RIFX":
        raise WavError(f"{name}: big-endian RIFX WAV files are not supported")
    fmt: bytes | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        # A streamed file may claim more than it holds (0xFFFFFFFF): take what is there. The slice never holds
        # more than the file, so a claim of 4 GB in a 44-byte file costs nothing.
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            payload = body
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise WavError(f"{name}: WAV file has no valid fmt chunk")
    if payload is None:
        raise WavError(f"{name}: WAV file has no data chunk")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE fmt chunk is truncated")
        (tag,) = struct.unpack_from("<H", fmt, 24)  # the sub-format GUID starts with the format tag
    if channels < 1:
        raise WavError(f"{name}: WAV file says it has {channels} channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(f"{name}: WAV file says its sample rate is {rate} Hz; {MIN_RATE}-{MAX_RATE} Hz is "
                       "supported")
    if tag not in _FORMAT_NAMES:
        raise WavError(f"{name}: WAV format tag 0x{tag:04x} is not supported (PCM, float, mu-law, A-law are)")
    width = bits // 8
    if bits % 8 or width == 0:
        raise WavError(f"{name}: {bits} bits per sample is not supported")
    if block_align and block_align != width * channels:
        raise WavError(f"{name}: block align {block_align} does not match {channels} x {bits}-bit samples")
    usable = len(payload) - len(payload) % (width * channels)
    seconds = usable // (width * channels) / rate
    if seconds > MAX_DURATION_S:
        raise WavError(f"{name}: WAV file holds {seconds / 3600:.1f} hours of audio; voiceivr reads at most "
                       f"{MAX_DURATION_S // 3600} hours")
    raw = payload[:usable]
    samples = _decode(raw, tag, bits, name)
    pcm = samples.reshape(-1, channels) if channels > 1 else samples
    return WavAudio(pcm=pcm, rate=rate, encoding=_FORMAT_NAMES[tag], bits=bits)


def _decode(raw: bytes, tag: int, bits: int, name: str) -> Pcm:
    if tag == WAVE_FORMAT_MULAW and bits == 8:
        return g711.ulaw_decode(raw)
    if tag == WAVE_FORMAT_ALAW and bits == 8:
        return g711.alaw_decode(raw)
    if tag == WAVE_FORMAT_PCM:
        if bits == 8:
            return ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
        if bits == 16:
            return np.frombuffer(raw, dtype="<i2").astype(np.int16)
        if bits == 24:
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
            return (b[:, 2].astype(np.int8).astype(np.int16) << 8 | b[:, 1]).astype(np.int16)
        if bits == 32:
            return (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    if tag == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        f = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
        return np.clip(np.rint(f * 32768.0), -32768, 32767).astype(np.int16)
    raise WavError(f"{name}: {_FORMAT_NAMES[tag]} WAV with {bits} bits per sample is not supported")


def encode_wav(pcm: Pcm, rate: int, encoding: Encoding = "pcm16") -> bytes:
    """The bytes of a WAV file. ``pcm``: int16, shape (n,) or (n, channels) for interleaved multi-channel."""
    if pcm.dtype != np.int16 or pcm.ndim not in (1, 2):
        raise WavError(f"WAV samples must be int16 of shape (n,) or (n, channels), got {pcm.dtype} {pcm.shape}")
    channels = 1 if pcm.ndim == 1 else int(pcm.shape[1])
    if channels < 1:
        raise WavError("WAV samples have zero channels")
    if rate <= 0:
        raise WavError(f"sample rate must be positive, got {rate}")
    flat = np.ascontiguousarray(pcm).reshape(-1)
    frames = len(pcm)
    if encoding == "pcm16":
        body = flat.astype("<i2", copy=False).tobytes()
        fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, channels, rate, rate * channels * 2, channels * 2, 16)
        chunks = [(b"fmt ", fmt)]
    elif encoding in ("mulaw", "alaw"):
        codes = g711.ulaw_encode(flat) if encoding == "mulaw" else g711.alaw_encode(flat)
        body = codes.tobytes()
        tag = WAVE_FORMAT_MULAW if encoding == "mulaw" else WAVE_FORMAT_ALAW
        fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * channels, channels, 8, 0)
        chunks = [(b"fmt ", fmt), (b"fact", struct.pack("<I", frames))]
    else:
        raise WavError(f"unknown WAV encoding {encoding!r}: use pcm16, mulaw or alaw")
    chunks.append((b"data", body))
    out = bytearray(b"RIFF\0\0\0\0WAVE")
    for chunk_id, chunk in chunks:
        out += chunk_id + struct.pack("<I", len(chunk)) + chunk
        if len(chunk) & 1:
            out += b"\0"
    struct.pack_into("<I", out, 4, len(out) - 8)
    return bytes(out)


def write_wav(path: str | Path, pcm: Pcm, rate: int, encoding: Encoding = "pcm16") -> None:
    """Write atomically: a reader sees the old file or the whole new one, never a part."""
    data = encode_wav(pcm, rate, encoding)
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise WavError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WavError(f"{target}: cannot write: {exc.strerror}") from None


def _write_all(f: BinaryIO, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())

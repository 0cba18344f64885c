"""The unit of audio inside voiceivr: a short block of mono int16 PCM with its rate and start time.

Telephony moves 20 ms frames (160 samples at 8 kHz, 320 at 16 kHz). On the media thread audio stays raw
``bytes`` (16-bit little-endian, what pjsua2 hands over); the call worker turns them into :class:`Frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FRAME_MS = 20
SAMPLE_WIDTH = 2  # bytes, int16

Pcm = npt.NDArray[np.int16]


def samples_per_frame(rate: int, frame_ms: int = FRAME_MS) -> int:
    return rate * frame_ms // 1000


def bytes_per_frame(rate: int, frame_ms: int = FRAME_MS) -> int:
    return samples_per_frame(rate, frame_ms) * SAMPLE_WIDTH


@dataclass(frozen=True, slots=True)
class Frame:
    """``pcm`` int16 mono samples; ``rate`` in Hz; ``t`` start time in seconds on the call's clock."""

    pcm: Pcm
    rate: int
    t: float

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError(f"Frame.pcm must be 1-D int16, got {self.pcm.dtype} with shape {self.pcm.shape}")
        if self.rate <= 0:
            raise ValueError(f"Frame.rate must be positive, got {self.rate}")

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.rate

    @property
    def end(self) -> float:
        return self.t + self.duration

    def to_bytes(self) -> bytes:
        return self.pcm.astype("<i2", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, rate: int, t: float) -> Frame:
        if len(data) % SAMPLE_WIDTH:
            raise ValueError(f"PCM buffer of {len(data)} bytes is not whole 16-bit samples")
        return cls(np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False), rate, t)


def split_frames(pcm: Pcm, rate: int, t0: float = 0.0, frame_ms: int = FRAME_MS) -> list[Frame]:
    """Cut a buffer into whole frames, padding the last with silence."""
    n = samples_per_frame(rate, frame_ms)
    if len(pcm) % n:
        pcm = np.concatenate([pcm, np.zeros(n - len(pcm) % n, dtype=np.int16)])
    return [Frame(pcm[i : i + n], rate, t0 + i / rate) for i in range(0, len(pcm), n)]

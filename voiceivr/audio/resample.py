"""Sample-rate conversion between the rates voiceivr meets: 8 kHz (G.711), 16 kHz (STT and VAD models),
22.05 kHz (espeak-ng, piper) and 24 kHz (some neural voices).

A rational polyphase FIR (up by L, down by M) with a Kaiser-windowed sinc whose cutoff sits below the lower
Nyquist frequency, so nothing above it folds back (tested with tones). One implementation serves both the
one-shot :func:`resample` and :class:`StreamResampler`, which keeps the filter history between calls so a
stream converted 20 ms at a time is sample-for-sample the same as the whole buffer converted at once: no
edge clicks at frame boundaries. The stream has a fixed latency of ``delay_out`` output samples (about
1-2 ms); :func:`resample` removes it.

Pure numpy: libsoxr's streaming mode buffers ~100 ms before its first output, too much for a call.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from voiceivr.audio.frames import Pcm

# The filter, as fractions of the lower Nyquist frequency: flat to 0.85 (3.4 kHz of 4 kHz: the telephone
# band), at least STOPBAND_DB down from 1.0 on, so nothing above the new Nyquist frequency folds back.
PASSBAND_EDGE = 0.85
STOPBAND_EDGE = 1.0
STOPBAND_DB = 60.0
_KAISER_BETA = 0.1102 * (STOPBAND_DB - 8.7)
# Kaiser's estimate of the length needed for that attenuation over that transition, per unit of `widest`
_HALF_PER_UNIT = math.ceil((STOPBAND_DB - 8.0) / (2.285 * 2 * math.pi * (STOPBAND_EDGE - PASSBAND_EDGE) / 2) / 2)


@functools.lru_cache(maxsize=32)
def _design(up: int, down: int) -> tuple[npt.NDArray[np.float64], int, int]:
    """Polyphase matrix (up, taps_per_phase), with row r holding h[r + j*up]; and the delay in output samples."""
    widest = max(up, down)
    half = _HALF_PER_UNIT * widest
    half = -(-half // down) * down  # a multiple of `down`, so the delay is a whole number of output samples
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = (PASSBAND_EDGE + STOPBAND_EDGE) / 2 / widest  # in units of the upsampled Nyquist frequency
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(len(n), _KAISER_BETA) * up
    taps_per_phase = math.ceil(len(h) / up)
    padded = np.zeros(taps_per_phase * up)
    padded[: len(h)] = h
    phases = padded.reshape(taps_per_phase, up).T.copy()
    return phases, taps_per_phase, half // down


# The filter grows with the larger term of the reduced ratio: the rates voiceivr meets reduce to small ones
# (44.1 kHz -> 8 kHz is 80/441), but an odd rate does not (44,101 Hz -> 8 kHz is 8000/44101: 270 MB and
# 0.4 s to design; a prime near 192 kHz, 1 GB and 5 s). Past this term the closest ratio with terms no
# larger is used instead: 44,101 Hz is then converted a few parts per million off, far less than two
# sound cards' clocks differ, and inaudible.
MAX_RATIO_TERM = 4000


def _ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    if max(up, down) <= MAX_RATIO_TERM:
        return up, down
    exact = Fraction(rate_out, rate_in)
    # limit_denominator bounds `down`; going up, bound `up` the same way through the inverse ratio.
    near = exact.limit_denominator(MAX_RATIO_TERM) if exact < 1 else 1 / (1 / exact).limit_denominator(MAX_RATIO_TERM)
    if near.numerator == 0 or max(near.numerator, near.denominator) > MAX_RATIO_TERM:
        raise ValueError(f"cannot convert {rate_in} Hz to {rate_out} Hz: the rates are too far apart")
    return near.numerator, near.denominator


class StreamResampler:
    """Converts a stream chunk by chunk; ``process`` returns ``ceil`` of the exact ratio's output on average.

    After N input samples in total, exactly ``ceil(N * rate_out / rate_in)`` output samples have been
    returned, so 20 ms in gives 20 ms out whenever the rates divide evenly (8 k -> 16 k: 160 -> 320). (For an
    odd rate whose ratio is approximated, see MAX_RATIO_TERM, ``up / down`` stands for ``rate_out / rate_in``.)
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.up, self.down = _ratio(rate_in, rate_out)
        self._phases, self._taps, self.delay_out = _design(self.up, self.down)
        self._history = np.zeros(self._taps - 1, dtype=np.float64)
        self._n_in = 0
        self._n_out = 0

    def reset(self) -> None:
        self._history[:] = 0.0
        self._n_in = 0
        self._n_out = 0

    def process_float(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.up == self.down:
            return x.astype(np.float64, copy=True)
        buf = np.concatenate([self._history, x.astype(np.float64, copy=False)])
        first = self._n_in  # global index of x[0]; buf[taps-1] is x[0]
        self._n_in += len(x)
        # outputs n with n*down < n_in*up: all inputs they need have arrived
        end_out = -(-self._n_in * self.up // self.down)
        n = np.arange(self._n_out, end_out, dtype=np.int64)
        self._n_out = end_out
        self._history = buf[len(buf) - (self._taps - 1) :].copy()
        if not len(n):
            return np.zeros(0, dtype=np.float64)
        local_first = n[0] * self.down // self.up - first + (self._taps - 1)
        if len(n) < 4 * self.up:
            pos = n * self.down
            q = pos // self.up  # newest input sample each output needs
            r = pos % self.up  # which polyphase branch
            local = q - first + (self._taps - 1)  # index into buf
            idx = local[:, None] - np.arange(self._taps)[None, :]
            return np.einsum("ij,ij->i", buf[idx], self._phases[r])
        return self._by_phase(buf, n, local_first)

    def _by_phase(
        self, buf: npt.NDArray[np.float64], n: npt.NDArray[np.int64], local_first: int
    ) -> npt.NDArray[np.float64]:
        """Long buffers: outputs n0, n0+up, n0+2*up... share a branch and step `down` inputs apart, so each
        branch is one strided matrix-vector product over a zero-copy window view (no index arrays)."""
        windows = np.lib.stride_tricks.sliding_window_view(buf, self._taps)[:, ::-1]  # row i ends at buf[i+taps-1]
        out = np.empty(len(n), dtype=np.float64)
        base = int(n[0])
        for k in range(min(self.up, len(n))):
            pos = (base + k) * self.down
            q_local = pos // self.up - (base * self.down // self.up) + local_first
            rows = windows[q_local - (self._taps - 1) :: self.down][: len(range(k, len(n), self.up))]
            out[k :: self.up] = rows @ self._phases[pos % self.up]
        return out

    def process(self, pcm: Pcm) -> Pcm:
        return _to_int16(self.process_float(pcm.astype(np.float64)))

    def flush(self) -> Pcm:
        """Push the filter's tail out (``delay_out`` samples' worth) at the end of a stream."""
        pad = -(-self.delay_out * self.down // self.up) + 1
        return self.process(np.zeros(pad, dtype=np.int16))


def _to_int16(y: npt.NDArray[np.float64]) -> Pcm:
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def resample_float(x: npt.NDArray[np.float64], rate_in: int, rate_out: int) -> npt.NDArray[np.float64]:
    """The whole buffer, delay removed: output length is ``ceil(len(x) * rate_out / rate_in)``."""
    if rate_in == rate_out:
        return x.astype(np.float64, copy=True)
    stream = StreamResampler(rate_in, rate_out)
    want = -(-len(x) * stream.up // stream.down)
    pad = -(-stream.delay_out * stream.down // stream.up) + 1
    y = stream.process_float(np.concatenate([x.astype(np.float64, copy=False), np.zeros(pad)]))
    return y[stream.delay_out : stream.delay_out + want]


def resample(pcm: Pcm, rate_in: int, rate_out: int) -> Pcm:
    if rate_in == rate_out:
        return pcm.copy()
    return _to_int16(resample_float(pcm.astype(np.float64), rate_in, rate_out))

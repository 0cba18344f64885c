"""Echo suppression, so the session does not interrupt itself.

On many phone lines the caller's channel carries back part of what we send (line hybrids, speakerphones):
attenuated, delayed, a little filtered, under noise. A VAD hears that as speech and would barge in on our
own prompt. We know exactly what we sent, so we model the echo path and remove it before the VAD listens:

1. *Bulk delay*: cross-correlate the last half second of the caller channel with what we sent (FFT), over
   lags up to ``max_delay_ms``; accept a lag when the normalised peak is clear.
2. *Echo path*: a short FIR filter (``taps``) starting at that lag, solved by regularised least squares on
   the same window. Least squares on a window converges at once (unlike sample-by-sample NLMS), which
   matters because a prompt's first words are the likeliest to be talked over.
3. *Residual*: caller frame minus the predicted echo. The VAD listens to the residual; barge-in also asks
   that the residual be loud relative to the predicted echo (:meth:`EchoCanceller.speech_dominant`), which
   keeps residual echo from counting while real speech over the echo still does.

The model survives between prompts of one call (the echo path of a line does not change much) and is
estimated every ``update_ms`` while we talk until one is found or the first ~0.7 s of our speech showed
none, then every ``refresh_ms``. Cost: one 16k-point FFT pair and a 24x24 solve per estimate (~0.3 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass
class EchoSettings:
    max_delay_ms: int = 400  # longest echo delay we look for (satellite/VoIP chains rarely exceed this)
    taps: int = 24  # length of the modelled echo path after the bulk delay (3 ms at 8 kHz)
    window_ms: int = 600  # how much recent audio each estimate uses
    update_ms: int = 100  # how often the model is estimated while we talk and have no model yet
    refresh_ms: int = 500  # how often an existing model is re-estimated (line echo paths drift slowly)
    min_correlation: float = 0.25  # normalised cross-correlation needed to trust a delay
    dominance: float = 0.25  # residual energy must exceed this fraction of the predicted echo energy


class EchoCanceller:
    """Per call. Feed every inbound frame together with the frame we sent in the same 20 ms tick."""

    def __init__(self, rate: int, settings: EchoSettings | None = None) -> None:
        self.rate = rate
        self.s = settings or EchoSettings()
        self.max_delay = self.s.max_delay_ms * rate // 1000
        self.window = self.s.window_ms * rate // 1000
        self._keep = self.max_delay + self.window + self.s.taps + rate // 10
        # Linear buffers with a write position, compacted now and then (cheaper than rolling every frame).
        self._cap = self._keep * 4
        self._ref_buf = np.zeros(self._cap, dtype=np.float32)  # what we sent
        self._mic_buf = np.zeros(self._cap, dtype=np.float32)  # what the caller channel carried
        self._end = self._keep
        self._since_update = 0
        self._update_every = self.s.update_ms * rate // 1000
        self._refresh_every = self.s.refresh_ms * rate // 1000
        self.delay: int | None = None  # samples
        self.w: F32 | None = None
        self.correlation = 0.0
        self._last_echo_energy = 0.0
        self._last_residual_energy = 0.0
        self._ref_active = 0  # recent samples with our audio in them
        self._quiet_for = self._keep  # samples since we last sent audio
        self._recent_ref_energy = 0.0
        self._active_total = 0  # samples of our own audio sent so far on this call
        self._learning = self.max_delay + self.window // 2  # how long an unseen echo might still appear

    @property
    def _ref(self) -> F32:
        return self._ref_buf[self._end - self._keep : self._end]

    @property
    def _mic(self) -> F32:
        return self._mic_buf[self._end - self.window : self._end]

    def _append(self, x: F32, d: F32) -> None:
        n = len(x)
        if self._end + n > self._cap:
            keep = self._keep
            self._ref_buf[:keep] = self._ref_buf[self._end - keep : self._end]
            self._mic_buf[:keep] = self._mic_buf[self._end - keep : self._end]
            self._end = keep
        self._ref_buf[self._end : self._end + n] = x
        self._mic_buf[self._end : self._end + n] = d
        self._end += n

    # ----------------------------------------------------------------------------------------------------

    def process(self, mic: npt.NDArray[np.int16], sent: npt.NDArray[np.int16] | None) -> npt.NDArray[np.int16]:
        """Returns the caller frame with our echo removed (as int16, same length)."""
        n = len(mic)
        active = sent is not None and int(np.abs(sent).max(initial=0)) > 64
        if active:
            self._quiet_for = 0
        else:
            self._quiet_for += n
        if self._quiet_for > self._keep:
            # Nothing we sent can still be echoing: no work, and the frame passes untouched.
            self._last_echo_energy = 0.0
            self._ref_active = 0
            return mic
        x = np.zeros(n, dtype=np.float32) if sent is None else sent.astype(np.float32)
        d = mic.astype(np.float32)
        self._append(x, d)
        self._ref_active = min(self.window, self._ref_active + n) if active else max(0, self._ref_active - n)
        if active:
            self._active_total += n
            energy = float(np.mean(x * x))
            self._recent_ref_energy = max(energy, 0.95 * self._recent_ref_energy)
        else:
            self._recent_ref_energy *= 0.95

        self._since_update += n
        # Without a model, look every update_ms while an echo could still be on its way; a line that has shown
        # none by then (most digital lines) is only rechecked at the refresh pace, as a modelled one is.
        searching = self.w is None and self._active_total < self._learning
        every = self._update_every if searching else self._refresh_every
        if self._ref_active >= self.window // 6 and self._since_update >= every:
            self._since_update = 0
            self._estimate()

        if self.delay is None or self.w is None:
            # No model yet. While an echo could still be on its way (the first ~0.7 s we talk on a call),
            # assume it may be as loud as what we send: only a caller clearly louder than our prompt counts
            # as speech. After that, no correlated echo means the line returns none worth modelling.
            if self._active_total < self._learning:
                self._last_echo_energy = self._recent_ref_energy / self.s.dominance
            else:
                self._last_echo_energy = 0.0
            self._last_residual_energy = float(np.mean(d * d))
            return mic
        echo = self._predict(n)
        residual = d - echo
        self._last_echo_energy = float(np.mean(echo * echo))
        self._last_residual_energy = float(np.mean(residual * residual))
        return np.clip(np.round(residual), -32768, 32767).astype(np.int16)

    def speech_dominant(self) -> bool:
        """True when the last residual is loud enough, relative to the echo we predicted, to be the caller."""
        if self._last_echo_energy <= 1.0:
            return True
        return self._last_residual_energy > self.s.dominance * self._last_echo_energy

    @property
    def echo_energy(self) -> float:
        return self._last_echo_energy

    @property
    def residual_energy(self) -> float:
        return self._last_residual_energy

    # ----------------------------------------------------------------------------------------------------

    def _matrix(self, length: int) -> F32:
        """Rows: the ``taps`` reference samples that shape each of the last ``length`` mic samples."""
        assert self.delay is not None
        taps = self.s.taps
        ref = self._ref
        total = len(ref)
        # mic sample at index total-1-end_offset-i (in ref coordinates) depends on ref at that index minus
        # (delay + k) for k in 0..taps-1.
        start = total - length - self.delay - taps + 1
        seg = ref[start : start + length + taps - 1]
        view = np.lib.stride_tricks.sliding_window_view(seg, taps)  # (length, taps), oldest tap first
        return np.asarray(view[:, ::-1])

    def _predict(self, n: int) -> F32:
        assert self.w is not None and self.delay is not None
        taps = self.s.taps
        ref = self._ref
        start = len(ref) - n - self.delay - taps + 1
        # same as self._matrix(n) @ self.w, without building the matrix
        return np.convolve(ref[start : start + n + taps - 1], self.w, mode="valid").astype(np.float32)

    def _estimate(self) -> None:
        win = self.window
        mic = self._mic
        ref = self._ref[-(win + self.max_delay) :]
        size = 1 << int(np.ceil(np.log2(len(ref) + win)))
        spec = np.fft.rfft(mic, size) * np.conj(np.fft.rfft(ref, size))
        xc = np.fft.irfft(spec, size)
        # lag L means mic[t] ~ ref[t - L]; mic aligns with the last `win` samples of `ref`
        lags = np.arange(0, self.max_delay + 1)
        idx = (len(ref) - win - lags) % size
        corr = xc[(size - idx) % size]
        mic_energy = float(np.dot(mic, mic))
        if mic_energy <= 0:
            return
        # normalise each lag by the energy of the reference segment it lines up with
        csum = np.concatenate([[0.0], np.cumsum(ref.astype(np.float64) ** 2)])
        seg_start = len(ref) - win - lags
        ref_energy = csum[seg_start + win] - csum[seg_start]
        # a lag whose reference segment is nearly silent cannot explain the mic: don't let it win by division
        floor = 0.2 * float(ref_energy.max()) + 1e-9
        norm = np.abs(corr) / np.sqrt(np.maximum(ref_energy, floor) * mic_energy)
        best = int(np.argmax(norm))
        self.correlation = float(norm[best])
        if self.correlation < self.s.min_correlation:
            return
        self.delay = max(0, best - self.s.taps // 4)
        X = self._matrix(win).astype(np.float64)
        d = mic.astype(np.float64)
        gram = X.T @ X
        reg = 1e-3 * np.trace(gram) / self.s.taps + 1e-6
        w = np.linalg.solve(gram + reg * np.eye(self.s.taps), X.T @ d)
        self.w = w.astype(np.float32)

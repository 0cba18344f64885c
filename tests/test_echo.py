"""The echo canceller on its own: how often it looks for an echo, and that it still finds one that starts late."""

from __future__ import annotations

import numpy as np
import pytest

from voiceivr.call.echo import EchoCanceller

RATE = 8000
FRAME = 160


def our_speech(seconds: float, seed: int = 3) -> np.ndarray:
    """Speech-like audio we send: noise in 150-400 ms bursts with short pauses, about -20 dBFS."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    t = 0
    while t < len(out):
        burst = int(rng.uniform(0.15, 0.4) * RATE)
        out[t : t + burst] = rng.normal(0, 3000, min(burst, len(out) - t))
        t += burst + int(rng.uniform(0.03, 0.1) * RATE)
    return out.astype(np.int16)


def run(sent: np.ndarray, mic: np.ndarray, ec: EchoCanceller) -> list[tuple[float, float]]:
    """Feed frame by frame; returns (echo energy predicted, residual energy) per frame."""
    energies = []
    for i in range(0, len(sent) - FRAME + 1, FRAME):
        ec.process(mic[i : i + FRAME], sent[i : i + FRAME])
        energies.append((ec.echo_energy, ec.residual_energy))
    return energies


def count_estimates(ec: EchoCanceller, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    real = ec._estimate

    def counted() -> None:
        calls[0] += 1
        real()

    monkeypatch.setattr(ec, "_estimate", counted)
    return calls


def test_a_line_without_echo_is_rechecked_at_the_refresh_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = our_speech(10.0)
    mic = np.random.default_rng(1).normal(0, 30, len(sent)).astype(np.int16)  # line noise, no echo
    ec = EchoCanceller(RATE)
    calls = count_estimates(ec, monkeypatch)
    run(sent, mic, ec)
    assert ec.w is None
    s = ec.s
    # every update_ms while an echo could still be arriving (the first ~0.7 s), then every refresh_ms; searching
    # every 100 ms throughout would be ~100 estimates
    learning_s = (s.max_delay_ms + s.window_ms / 2) / 1000
    most = learning_s * 1000 / s.update_ms + 10.0 * 1000 / s.refresh_ms + 2
    assert 10 <= calls[0] <= most, calls[0]


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_an_echo_that_starts_late_is_still_modelled(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = our_speech(8.0)
    delay = int(0.06 * RATE)
    echo = np.zeros(len(sent))
    echo[delay:] = sent[:-delay] * 10 ** (-12 / 20)
    start = 3 * RATE  # the line starts returning our audio 3 s into the call (a speakerphone switched on)
    echo[:start] = 0
    mic = (echo + np.random.default_rng(2).normal(0, 30, len(sent))).astype(np.int16)
    ec = EchoCanceller(RATE)
    energies = run(sent, mic, ec)
    assert ec.delay is not None and abs(ec.delay - delay) <= ec.s.taps
    # within a refresh period and a window of the echo starting, the residual is >= 10 dB under the echo
    settled = start // FRAME + (ec.s.refresh_ms + ec.s.window_ms) * RATE // 1000 // FRAME
    echo_e = np.array([e for e, _ in energies[settled:]])
    resid_e = np.array([r for _, r in energies[settled:]])
    loud = echo_e > 1e4
    assert loud.sum() > 100
    assert 10 * np.log10(echo_e[loud].sum() / resid_e[loud].sum()) >= 10

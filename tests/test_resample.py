"""Resampling: pure tones in the pass band keep their level; tones above the new Nyquist frequency do not
fold back into the output; streaming 20 ms at a time equals the one-shot conversion sample for sample."""

from __future__ import annotations

import numpy as np
import pytest

from voiceivr.audio.resample import StreamResampler, resample

RATES = [8000, 16000, 22050, 24000]
PAIRS = [(a, b) for a in RATES for b in RATES if a != b]


def tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def level_db(x: np.ndarray) -> float:
    core = x.astype(np.float64)[len(x) // 10 : -len(x) // 10]  # skip the edges
    return float(20 * np.log10(np.sqrt(np.mean(core**2)) + 1e-9))


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_pass_band_is_flat(rate_in: int, rate_out: int) -> None:
    for freq in (300.0, 1000.0, 3000.0, 0.85 * min(rate_in, rate_out) / 2):
        x = tone(freq, rate_in)
        y = resample(x, rate_in, rate_out)
        assert len(y) == int(np.ceil(len(x) * rate_out / rate_in))
        assert abs(level_db(y) - level_db(x)) < 0.5, freq


@pytest.mark.parametrize(("rate_in", "rate_out"), [p for p in PAIRS if p[0] > p[1]])
def test_nothing_aliases_when_going_down(rate_in: int, rate_out: int) -> None:
    nyquist_out = rate_out / 2
    for freq in np.linspace(nyquist_out + 50, rate_in / 2 - 50, 7):
        x = tone(freq, rate_in)
        y = resample(x, rate_in, rate_out)
        # 60 dB below the input: an aliased image would come out near full level
        assert level_db(y) - level_db(x) < -55, f"{freq:.0f} Hz leaks through {rate_in}->{rate_out}"


def test_upsampling_makes_no_images() -> None:
    x = tone(1000.0, 8000, seconds=1.0)
    y = resample(x, 8000, 16000).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    image = spectrum[(freqs > 6500) & (freqs < 7500)].max()  # the 7 kHz image of 1 kHz
    assert 20 * np.log10(image / spectrum.max()) < -60


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_streaming_equals_one_shot(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(0, 3000, rate_in // 2), -32768, 32767).astype(np.int16)
    stream = StreamResampler(rate_in, rate_out)
    step = rate_in // 50
    parts = [stream.process(x[i : i + step]) for i in range(0, len(x), step)]
    produced = sum(len(p) for p in parts)
    assert produced == int(np.ceil(len(x) * rate_out / rate_in))
    out = np.concatenate([*parts, stream.flush()])
    whole = resample(x, rate_in, rate_out)
    d = stream.delay_out
    assert np.array_equal(out[d : d + len(whole)], whole)


def test_frames_in_give_frames_out() -> None:
    stream = StreamResampler(8000, 16000)
    assert [len(stream.process(np.zeros(160, np.int16))) for _ in range(5)] == [320] * 5
    down = StreamResampler(22050, 8000)
    assert [len(down.process(np.zeros(441, np.int16))) for _ in range(5)] == [160] * 5


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 8000)


@pytest.mark.parametrize("rate_in", [44_101, 191_999, 4_001])
def test_an_odd_rate_is_converted_through_a_near_ratio_in_little_memory(rate_in: int) -> None:
    # The exact ratio of these to 8 kHz has a term of 4,001 to 191,999; a filter that long took up to 1 GB and
    # 5 s to design. The near ratio keeps a 1 kHz tone at 1 kHz (within a few parts per million) and its level.
    import tracemalloc

    from voiceivr.audio import resample as module

    module._design.cache_clear()
    x = tone(1000.0, rate_in, seconds=1.0)
    tracemalloc.start()
    try:
        y = resample(x, rate_in, 8000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024 * 1024, f"{peak / 1e6:.0f} MB"
    up, down = module._ratio(rate_in, 8000)
    assert max(up, down) <= module.MAX_RATIO_TERM and abs(up / down - 8000 / rate_in) < 1e-4 * 8000 / rate_in
    assert abs(len(y) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64) * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * 8000 / len(y) - 1000.0) < 2.0
    assert abs(level_db(y) - level_db(x)) < 0.5

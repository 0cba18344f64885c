#!/usr/bin/env python3
"""Noise suppressors on 8 kHz telephone audio: CPU per second of audio and what they do to SNR and clean speech.

    .venv/bin/python scripts/bench_noise.py [--engines webrtc1,webrtc2,webrtc3,resample48,rnnoise,dfn3] [--clips 20]
        [--runs 3]

``resample48`` is not an engine: the 8 -> 48 -> 8 kHz round trip alone, what RNNoise and DFN3 pay for their rate.

Clips: the understanding set's dev renders (var/understanding, scripts/make_understanding_set.py), over its line
conditions (clean, pink10, babble10, street10), fed 20 ms at a time as a call feeds them. Figures:
- CPU: thread CPU seconds per second of audio, median and p95 over every clip x run (one thread).
- SNR: the processed clip's level while the caller speaks over its level while they do not (speech frames taken
  from the clean render), before and after; the speech's own level change (dB) on the clean line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import make_understanding_set as uset  # noqa: E402

from voiceivr.audio.resample import StreamResampler  # noqa: E402
from voiceivr.audio.wav import read_wav  # noqa: E402
from voiceivr.speech.denoise import build_denoiser  # noqa: E402

FRAME = 160


def resample_only(x: np.ndarray) -> tuple[np.ndarray, float]:
    """What RNNoise and DFN3 pay before doing anything: 8 kHz -> 48 kHz -> 8 kHz, 20 ms at a time."""
    up, down = StreamResampler(8000, 48000), StreamResampler(48000, 8000)
    t0 = time.thread_time()
    out = np.concatenate([down.process(up.process(x[i : i + FRAME])) for i in range(0, len(x) - FRAME + 1, FRAME)])
    return out, time.thread_time() - t0


def run(engine: str, x: np.ndarray) -> tuple[np.ndarray, float]:
    if engine == "resample48":
        return resample_only(x)
    den = build_denoiser(engine)
    if den is None:
        return x, 0.0
    s = den.stream(8000)
    t0 = time.thread_time()
    out = np.concatenate([s.process(x[i : i + FRAME]) for i in range(0, len(x) - FRAME + 1, FRAME)])
    cpu = time.thread_time() - t0
    s.close()
    return out, cpu


def active_mask(clean: np.ndarray) -> np.ndarray:
    f = clean[: len(clean) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    e = 10 * np.log10(np.mean(f * f, axis=1) + 1.0)
    return e > e.max() - 30


def snr_db(y: np.ndarray, mask: np.ndarray, lag: int) -> float:
    y = y[lag:]
    f = y[: len(y) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    n = min(len(f), len(mask))
    p = np.mean(f[:n] * f[:n], axis=1)
    speech, noise = p[:n][mask[:n]].mean(), max(p[:n][~mask[:n]].mean(), 1e-3)
    return float(10 * np.log10(max(speech - noise, 1e-3) / noise))


def lag_of(engine: str) -> int:
    """The engine's delay in samples, from an impulse-free measure: a click through it."""
    x = np.zeros(8000, dtype=np.int16)
    x[2000:2400] = (8000 * np.sin(np.arange(400) * 2 * np.pi * 500 / 8000)).astype(np.int16)
    y, _ = run(engine, x)
    return int(np.argmax(np.correlate(y.astype(np.float64), x.astype(np.float64)[2000:2400], "valid")) - 2000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="webrtc1,webrtc2,webrtc3,resample48,rnnoise,dfn3")
    ap.add_argument("--conditions", default="clean,pink10,babble10,street10")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default=str(ROOT / "var" / "understanding"))
    args = ap.parse_args()
    cache = Path(args.cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    clips = [c for c in manifest["clips"] if c["set"] == "dev" and c["kind"] != "bad"][: args.clips]
    talkers = uset.load_talkers(cache)
    rows = []
    for engine in ["off", *args.engines.split(",")]:
        lag = lag_of(engine) if engine != "off" else 0
        cpu: list[float] = []
        snr: dict[str, list[float]] = {c: [] for c in args.conditions.split(",")}
        level: list[float] = []
        for clip in clips:
            speech = read_wav(cache / clip["render"]).mono()
            clean = uset.play(speech, "clean", clip["id"], talkers)
            mask = active_mask(clean)
            for cond in snr:
                x = uset.play(speech, cond, clip["id"], talkers)
                for _ in range(args.runs if cond == "pink10" else 1):
                    y, sec = run(engine, x)
                    if cond == "pink10":
                        cpu.append(sec / (len(x) / 8000))
                snr[cond].append(snr_db(y, mask, lag))
                if cond == "clean":
                    a = np.mean(clean[mask.repeat(FRAME)[: len(clean)]].astype(float) ** 2)
                    yy = y[lag:][: len(clean)]
                    m = mask.repeat(FRAME)[: len(yy)]
                    level.append(10 * np.log10(np.mean(yy[m].astype(float) ** 2) / a))
        row = {"engine": engine, "lag_ms": lag / 8, "cpu_ms_per_s_p50": 1000 * float(np.median(cpu)) if cpu else 0.0,
               "cpu_ms_per_s_p95": 1000 * float(np.percentile(cpu, 95)) if cpu else 0.0,
               "speech_level_change_db": float(np.median(level)),
               **{f"snr_{c}": float(np.median(v)) for c, v in snr.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| engine | delay ms | CPU ms per s of audio p50 / p95 | " + " | ".join(
        f"SNR {c} dB" for c in args.conditions.split(",")) + " | clean speech level change dB |")
    print("|---|---:|---:|" + "---:|" * len(args.conditions.split(",")) + "---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['lag_ms']:.1f} | {r['cpu_ms_per_s_p50']:.2f} / {r['cpu_ms_per_s_p95']:.2f} | "
              + " | ".join(f"{r['snr_' + c]:.1f}" for c in args.conditions.split(","))
              + f" | {r['speech_level_change_db']:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

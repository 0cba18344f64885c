"""A cheap stand-in for the MiniLM sentence encoder (tier 2 of the intent router), for tests that need a router
with all its tiers but are not about the embeddings: no model to load (the real one costs ~0.3 s idle, ~3 s on
the shared 2-core machine under load, plus ~2 s to encode the bank's examples for each router).

Each text becomes a unit vector of word counts (each word its own axis, numbered as first seen): texts that
share words are near, others are orthogonal. The real encoder's quality is tests/test_dialplan_router.py's
business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

DIM = 4096  # distinct words one encoder can tell apart; later ones share the last axis


class WordCountEncoder:
    def __init__(self) -> None:
        self._axes: dict[str, int] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9']+", text.lower()):
                out[i, self._axes.setdefault(word, min(len(self._axes), DIM - 1))] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

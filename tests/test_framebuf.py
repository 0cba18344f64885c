"""ctypes access to pjsua2's ByteVector (no endpoint needed: a ByteVector is a plain std::vector)."""

from __future__ import annotations

import pjsua2 as pj
import pytest

from voiceivr.telephony.framebuf import OutBuffer, vector_bytes


def test_read_and_fill_byte_vectors() -> None:
    out = OutBuffer(pj.ByteVector(320), 320)
    pcm = bytes(range(256)) + bytes(64)
    vec = out.fill(pcm)
    assert vector_bytes(vec) == pcm == bytes(vec)
    frame = pj.MediaFrame()
    assert vector_bytes(frame.buf) == b""  # an empty vector has no storage
    frame.buf = vec  # what onFrameRequested does
    assert vector_bytes(frame.buf) == pcm
    with pytest.raises(ValueError, match="frame of 3 bytes"):
        out.fill(b"abc")
    with pytest.raises(ValueError, match="expected 160"):
        OutBuffer(pj.ByteVector(320), 160)

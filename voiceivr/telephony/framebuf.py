"""Fast access to the bytes of a pjsua2 ``MediaFrame`` from Python.

``frame.buf`` is a SWIG proxy of a ``std::vector<unsigned char>``; ``bytes(frame.buf)`` iterates it element by
element (~100-200 µs for 20 ms of audio), which at a few dozen calls eats the clock thread's whole budget.
The proxy's ``this`` is the address of the vector object itself, and libstdc++ lays a vector out as three
pointers (begin, end, end of storage), so ctypes reads the data in ~2 µs. Writing goes the other way: copy
the PCM into a ``ByteVector`` we own (its storage never moves: we never resize it) and assign that vector
to ``frame.buf``, which is one C++ vector copy.

Only the pjsua2 clock thread calls these, on frames pjsua2 lent it for the duration of the callback.
"""

from __future__ import annotations

import ctypes
from typing import Any

_TwoPointers = ctypes.c_void_p * 2


def vector_bytes(vector: Any) -> bytes:
    """The contents of a SWIG ``ByteVector`` (``std::vector<unsigned char>``) as ``bytes``."""
    begin, end = _TwoPointers.from_address(int(vector.this))
    if not begin or not end:
        return b""
    return ctypes.string_at(begin, end - begin)


def vector_data_address(vector: Any) -> int:
    """Where a ``ByteVector``'s storage starts. Stable while the vector is neither resized nor destroyed."""
    begin = _TwoPointers.from_address(int(vector.this))[0]
    if not begin:
        raise ValueError("ByteVector has no storage (size 0)")
    return int(begin)


class OutBuffer:
    """A fixed-size ``ByteVector`` that a frame callback fills with ``memmove`` and hands to pjsua2."""

    __slots__ = ("_addr", "size", "vector")

    def __init__(self, vector: Any, size: int) -> None:
        # The caller builds the vector (``pjsua2.ByteVector(size)``) so this module needs no pjsua2 import.
        if vector.size() != size:
            raise ValueError(f"ByteVector has {vector.size()} bytes, expected {size}")
        self.vector = vector
        self.size = size
        self._addr = vector_data_address(vector)

    def fill(self, pcm: bytes) -> Any:
        """Copy ``pcm`` (exactly ``size`` bytes) into the vector and return the vector."""
        if len(pcm) != self.size:
            raise ValueError(f"frame of {len(pcm)} bytes, expected {self.size}")
        ctypes.memmove(self._addr, pcm, self.size)
        return self.vector

"""G.711 mu-law and A-law, bit-exact with the ITU-T G.191 reference coder.

Encoding is a lookup in a 65,536-entry table indexed by the int16 sample, decoding a lookup in a 256-entry
table: both are built once, vectorised, from the segment/mantissa definition of G.711 (a segment is the
position of the leading one bit of the magnitude). Negative samples use the one's complement, as G.191
does, so ``-1`` codes like ``0`` with the sign bit clear. The tests check both tables against a scalar port
of the G.191 loops, written separately.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voiceivr.audio.frames import Pcm

Codes = npt.NDArray[np.uint8]

_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)


def _bit_length(values: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Number of bits needed for each non-negative value (0 -> 0)."""
    out = np.zeros(values.shape, dtype=np.int32)
    v = values.copy()
    for shift in (8, 4, 2, 1):
        big = v >= (1 << shift)
        out[big] += shift
        v[big] >>= shift
    return out + (v > 0)


def _ulaw_encode_table() -> Codes:
    x = _ALL_INT16
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude; one's complement for negatives
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = _bit_length(biased >> 6) + 1  # 1..8
    mantissa = (biased >> segment) & 0xF
    code = ((8 - segment) << 4) | (0xF - mantissa)
    code = np.where(x >= 0, code | 0x80, code)
    return code.astype(np.uint8)


def _ulaw_decode_table() -> Pcm:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x7
    mantissa = inverted & 0xF
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_encode_table() -> Codes:
    x = _ALL_INT16
    magnitude = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude
    exponent = np.where(magnitude > 15, _bit_length(magnitude) - 4, 0)  # 16..31 -> 1, 32..63 -> 2, ...
    shifted = magnitude >> np.maximum(exponent - 1, 0)
    code = np.where(magnitude > 15, (shifted - 16) + (exponent << 4), magnitude)  # drop the leading one
    code = np.where(x >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)


def _alaw_decode_table() -> Pcm:
    code = np.arange(256, dtype=np.int32)
    toggled = (code ^ 0x55) & 0x7F
    exponent = toggled >> 4
    mantissa = toggled & 0xF
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    value = (mantissa << 4) + 8
    value = np.where(exponent > 1, value << np.maximum(exponent - 1, 0), value)
    return np.where(code > 127, value, -value).astype(np.int16)


ULAW_ENCODE: Codes = _ulaw_encode_table()
ULAW_DECODE: Pcm = _ulaw_decode_table()
ALAW_ENCODE: Codes = _alaw_encode_table()
ALAW_DECODE: Pcm = _alaw_decode_table()

ULAW_SILENCE = 0xFF  # the code of a zero sample: idle telephone lines carry it
ALAW_SILENCE = 0xD5


def _index(pcm: Pcm) -> npt.NDArray[np.int32]:
    return pcm.astype(np.int32) + 32768


def ulaw_encode(pcm: Pcm) -> Codes:
    return ULAW_ENCODE[_index(pcm)]


def ulaw_decode(codes: Codes | bytes) -> Pcm:
    return ULAW_DECODE[np.frombuffer(codes, dtype=np.uint8) if isinstance(codes, bytes | bytearray) else codes]


def alaw_encode(pcm: Pcm) -> Codes:
    return ALAW_ENCODE[_index(pcm)]


def alaw_decode(codes: Codes | bytes) -> Pcm:
    return ALAW_DECODE[np.frombuffer(codes, dtype=np.uint8) if isinstance(codes, bytes | bytearray) else codes]

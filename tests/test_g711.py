"""G.711 tables against a scalar port of the ITU-T G.191 reference loops (g711.c), written independently of
the vectorised tables in voiceivr.audio.g711, for every one of the 65,536 inputs and 256 codes."""

from __future__ import annotations

import numpy as np

from voiceivr.audio import g711


def g191_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    out = (high_nibble << 4) | low_nibble
    if x >= 0:
        out |= 0x0080
    return out


def g191_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def g191_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x0080
    return ix ^ 0x0055


def g191_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def test_ulaw_encode_matches_g191_for_every_sample() -> None:
    reference = np.array([g191_ulaw_compress(x) for x in range(-32768, 32768)], dtype=np.uint8)
    got = g711.ulaw_encode(np.arange(-32768, 32768, dtype=np.int16))
    assert np.array_equal(got, reference)


def test_alaw_encode_matches_g191_for_every_sample() -> None:
    reference = np.array([g191_alaw_compress(x) for x in range(-32768, 32768)], dtype=np.uint8)
    got = g711.alaw_encode(np.arange(-32768, 32768, dtype=np.int16))
    assert np.array_equal(got, reference)


def test_decode_tables_match_g191_for_every_code() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert g711.ulaw_decode(codes).tolist() == [g191_ulaw_expand(c) for c in range(256)]
    assert g711.alaw_decode(codes).tolist() == [g191_alaw_expand(c) for c in range(256)]


def test_well_known_codes() -> None:
    zero = np.zeros(1, dtype=np.int16)
    assert g711.ulaw_encode(zero)[0] == g711.ULAW_SILENCE == 0xFF
    assert g711.alaw_encode(zero)[0] == g711.ALAW_SILENCE == 0xD5
    assert g711.ulaw_decode(bytes([0x00, 0x80]))[0] == -32124
    assert g711.ulaw_decode(bytes([0x80]))[0] == 32124
    assert g711.alaw_decode(bytes([0xAA]))[0] == 32256


def test_every_code_survives_decode_then_encode() -> None:
    codes = np.arange(256, dtype=np.uint8)
    # mu-law has two zeros: 0x7F ("-0") decodes to 0, which encodes as 0xFF ("+0"); no other code moves.
    back = g711.ulaw_encode(g711.ulaw_decode(codes))
    assert [c for c in range(256) if back[c] != c] == [0x7F] and back[0x7F] == 0xFF
    assert np.array_equal(g711.alaw_encode(g711.alaw_decode(codes)), codes)


def test_quantisation_error_is_within_half_a_step() -> None:
    x = np.arange(-32768, 32768, dtype=np.int16)
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        error = np.abs(dec(enc(x)).astype(np.int32) - x)
        # the largest segment's step is 1024 (mu-law) / 1024 (A-law); clipping above 32124 adds up to 644
        assert int(error[np.abs(x.astype(np.int32)) < 32000].max()) <= 512

"""SASLprep (RFC 4013): the stringprep (RFC 3454) profile for user names and passwords."""

from __future__ import annotations

import stringprep
import unicodedata

__all__ = ["saslprep"]

# stringprep's tables are Unicode 3.2 (RFC 3454 §1.3); normalise with the same version.
_UCD = unicodedata.ucd_3_2_0


def _prohibited(ch: str) -> bool:
    # RFC 4013 §2.3: C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.
    # (C.1.1, the ASCII space, is allowed.)
    return (
        stringprep.in_table_c12(ch)
        or stringprep.in_table_c21_c22(ch)
        or stringprep.in_table_c3(ch)
        or stringprep.in_table_c4(ch)
        or stringprep.in_table_c5(ch)
        or stringprep.in_table_c6(ch)
        or stringprep.in_table_c7(ch)
        or stringprep.in_table_c8(ch)
        or stringprep.in_table_c9(ch)
    )


def saslprep(s: str, *, allow_unassigned: bool = False) -> str:
    """Prepare a user name or password with SASLprep (RFC 4013).

    Maps non-ASCII spaces to SPACE and "commonly mapped to nothing" characters to
    nothing (§2.1), normalises with NFKC (§2.2), then refuses prohibited output (§2.3)
    and strings that fail the bidirectional rule (§2.4, RFC 3454 §6). Unassigned code
    points are refused unless ``allow_unassigned`` (a "query" in RFC 3454 §7 terms, as
    SCRAM prepares user names and passwords, RFC 5802 §2.2 and §5.1).

    Raises :class:`ValueError` if the string cannot be prepared.
    """
    # §2.1 Mapping.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in s if not stringprep.in_table_b1(ch)
    )
    # §2.2 Normalization: form KC.
    out = _UCD.normalize("NFKC", mapped)
    # §2.3 Prohibited output; §2.5 unassigned code points.
    for ch in out:
        if _prohibited(ch):
            raise ValueError(f"SASLprep: prohibited character U+{ord(ch):04X}")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError(f"SASLprep: unassigned code point U+{ord(ch):04X}")
    # §2.4 Bidirectional characters (RFC 3454 §6): a string with any RandALCat character
    # must have no LCat character, and must start and end with a RandALCat character.
    if any(stringprep.in_table_d1(ch) for ch in out):
        if any(stringprep.in_table_d2(ch) for ch in out):
            raise ValueError("SASLprep: mixes right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError("SASLprep: right-to-left string must start and end with one")
    return out

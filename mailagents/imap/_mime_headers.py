"""Header field values as the MIME scanner reads them (pure functions, no I/O):
unfolding, cutting a header block into fields, and ``Content-Type``-style values with
their parameters (RFC 2045 §5.1, RFC 2231 continuations merged as Dovecot does).

Split from :mod:`mailagents.imap._mime`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "header_fields",
    "read_quoted",
    "read_token",
    "skip_cfws",
    "merge_rfc2231",
    "parse_content_type",
    "parse_params",
    "unfold",
]


def unfold(value: bytes) -> str:
    """A header field's value as Dovecot hands it on: leading blanks of the first line
    skipped, CR and LF removed (the folding whitespace itself is kept), decoded as
    UTF-8 with ``surrogateescape``."""
    value = value.lstrip(b" \t")
    if b"\n" in value or b"\r" in value:
        value = value.replace(b"\r", b"").replace(b"\n", b"")
    return value.decode("utf-8", "surrogateescape")


def header_fields(block: bytes) -> Iterator[tuple[str, bytes]]:
    """``(lower-case name, raw value)`` of each field of a header block (lines that are
    not fields are skipped; continuation lines belong to the field before)."""
    name: str | None = None
    value: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value.append(line)
            continue
        if name is not None:
            yield name, b"".join(value)
        name = None
        colon = line.find(b":")
        if colon <= 0:
            continue
        raw_name = line[:colon].rstrip(b" \t")
        if not raw_name or any(c <= 32 or c >= 127 for c in raw_name):
            continue
        name = raw_name.decode("ascii").lower()
        value = [line[colon + 1 :]]
    if name is not None:
        yield name, b"".join(value)


_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')


def skip_cfws(s: str, i: int) -> int:
    """Skip blanks and (nested) comments from ``i``."""
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                c = s[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    return i


def read_token(s: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(s) and ord(s[j]) > 32 and s[j] != "\x7f" and ord(s[j]) not in _TSPECIALS:
        j += 1
    return s[i:j], j


def read_quoted(s: str, i: int) -> tuple[str, int]:
    """A quoted-string starting at ``s[i] == '"'``; unquoted, escapes undone."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(s):
            i += 1
            c = s[i]
        out.append(c)
        i += 1
    return "".join(out), i


def parse_params(s: str, i: int) -> list[tuple[str, str]]:
    """The ``; attribute=value`` list from ``s[i:]``, as written (RFC 2045 §5.1); a
    broken parameter is skipped, as Dovecot does."""
    params: list[tuple[str, str]] = []
    n = len(s)
    while True:
        i = skip_cfws(s, i)
        if i >= n:
            return params
        if s[i] != ";":
            # Not a parameter list separator: skip to the next ';'.
            j = s.find(";", i)
            if j < 0:
                return params
            i = j
        i = skip_cfws(s, i + 1)
        key, i = read_token(s, i)
        i = skip_cfws(s, i)
        if not key or i >= n or s[i] != "=":
            continue
        i = skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = read_quoted(s, i)
        else:
            value, i = read_token(s, i)
        params.append((key, value))


def merge_rfc2231(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """RFC 2231 §3-4 continuations merged as Dovecot merges them: plain parameters
    first in their order, then each ``name*n[*]`` group sorted by name, joined into
    ``name*`` (when any segment was extended; the charset and %-escapes are kept,
    not decoded, a plain segment's ``%`` escaped) or ``name``; a group with a missing
    index is left as its separate segments."""
    plain: list[tuple[str, str]] = []
    segments: list[tuple[str, int, bool, str]] = []
    for key, value in params:
        star = key.find("*")
        if star < 0:
            plain.append((key, value))
            continue
        rest = key[star + 1 :]
        extended = rest.endswith("*") or not rest
        digits = rest[:-1] if rest.endswith("*") else rest
        if digits and not digits.isdigit():
            plain.append((key, value))
            continue
        index = int(digits) if digits else 0
        segments.append((key[:star], index, extended, value))
    segments.sort(key=lambda seg: (seg[0].encode("utf-8", "surrogateescape"), seg[1]))
    merged: list[tuple[str, str]] = []
    i = 0
    while i < len(segments):
        j = i
        while j < len(segments) and segments[j][0].lower() == segments[i][0].lower():
            j += 1
        group = segments[i:j]
        if any(seg[1] != k for k, seg in enumerate(group)):
            for name, index, extended, value in group:
                merged.append((f"{name}*{index}{'*' if extended else ''}", value))
        else:
            any_extended = any(seg[2] for seg in group)
            text = "''" if any_extended and not group[0][2] else ""
            for _name, _index, extended, value in group:
                text += value.replace("%", "%25") if any_extended and not extended else value
            merged.append((group[0][0] + ("*" if any_extended else ""), text))
        i = j
    return plain + merged


def parse_content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    """``(type, subtype, params)`` of a ``Content-Type`` value, as written (RFC 2045
    §5.1; params merged per ``merge_rfc2231``). ``None`` when there is no value.
    A broken value gives what Dovecot gives: a lone type token ``(type, "", [])``,
    anything else ``("", "", [])``."""
    if value is None:
        return None
    s = value
    i = skip_cfws(s, 0)
    major, i = read_token(s, i)
    i = skip_cfws(s, i)
    if major and i >= len(s):
        return major, "", []
    if not major or i >= len(s) or s[i] != "/":
        return "", "", []
    i = skip_cfws(s, i + 1)
    minor, i = read_token(s, i)
    if not minor:
        return "", "", []
    return major, minor, merge_rfc2231(parse_params(s, i))

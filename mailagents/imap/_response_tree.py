"""A response's data as a tree of Python values, read with one regex per line.

The speed of the response parser rests here: each physical line of a frame is
tokenised with one compiled pattern (``findall`` in C, not a byte at a time), and one
loop turns the tokens into nested lists with an explicit stack, so nesting depth is
bounded by a parameter, never by Python's recursion limit.

The values: ``list`` for a parenthesised list, ``str`` for an atom or a quoted string
(UTF-8 with surrogateescape, RFC 9051 §4.3 quoting undone), ``int`` for an atom of
digits in canonical form (``007`` stays ``"007"``, so no text is lost), ``None`` for
``NIL``, and the literal's ``bytes`` (or its ``Streamed`` placeholder) where a literal
stood (RFC 9051 §4.3: the announcement ends its line, the octets follow).

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailagents.imap._frame import Frame, Streamed

__all__ = ["ResponseSyntaxError", "fast_tree", "read_tree", "text_tree"]

# RFC 9051 §9: a quoted string (escapes "\" quoted-specials; the unrolled form is the
# fast one), a paren, an atom-like run (atoms, numbers, NIL, flags, sequence sets,
# pieces of BODY[...]), or a lone DQUOTE (an unterminated string). No groups: findall
# then returns plain strings, and the loop tells them apart by their first character.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[()]|[^ ()"]+|"')
_GOOD_ESCAPES = re.compile(r'(?:[^\\]|\\["\\])*')
_UNESCAPE = re.compile(r'\\(["\\])')
_LITERAL = re.compile(r"(~?)\{([0-9]{1,19})(\+?)\}")
_MAX64 = 2**63 - 1


class ResponseSyntaxError(Exception):
    """A response that does not follow the grammar (RFC 9051 §9) or exceeds a limit.

    ``message`` says what was wrong; the client core decides what to do (usually a
    protocol error: a client cannot ask for a response again).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _literal(announcement: str, literal: bytes | Streamed) -> bytes | Streamed:
    m = _LITERAL.fullmatch(announcement)
    if m is None:
        raise ResponseSyntaxError("a line of a response ends without a literal announcement")
    size = int(m.group(2))
    if size > _MAX64:
        raise ResponseSyntaxError("literal size out of range")
    if isinstance(literal, Streamed):
        if literal.size != size:
            raise ResponseSyntaxError("streamed literal's size differs from its announcement")
    else:
        if len(literal) != size:
            raise ResponseSyntaxError("literal's size differs from its announcement")
        if not m.group(1) and b"\x00" in literal:
            raise ResponseSyntaxError("NUL in a literal (only literal8 may hold it)")
    return literal


def _build(
    texts: list[str], literals: tuple[bytes | Streamed, ...], max_depth: int, max_items: int
) -> list[Any]:
    stack: list[list[Any]] = []
    cur: list[Any] = []
    count = 0
    depth = 0
    last = len(texts) - 1
    for index, text in enumerate(texts):
        if "\x00" in text:
            raise ResponseSyntaxError("NUL in a response line")
        tokens = _TOKEN.findall(text)
        count += len(tokens)
        if count > max_items:
            raise ResponseSyntaxError(f"more than {max_items} items in one response")
        literal = None
        if index < last:
            if not tokens:
                raise ResponseSyntaxError("a line of a response ends without a literal")
            literal = _literal(tokens.pop(), literals[index])
        for tok in tokens:
            c = tok[0]
            if c == '"':
                if len(tok) == 1:
                    raise ResponseSyntaxError("unterminated quoted string")
                tok = tok[1:-1]
                if "\\" in tok:
                    if _GOOD_ESCAPES.fullmatch(tok) is None:
                        raise ResponseSyntaxError("bad escape in a quoted string")
                    tok = _UNESCAPE.sub(r"\1", tok)
                cur.append(tok)
            elif c == "(":
                stack.append(cur)
                cur = []
                depth += 1
                if depth > max_depth:
                    raise ResponseSyntaxError(f"lists nested deeper than {max_depth}")
            elif c == ")":
                if not depth:
                    raise ResponseSyntaxError("')' without '('")
                done = cur
                cur = stack.pop()
                cur.append(done)
                depth -= 1
            elif tok == "NIL" or ((c == "N" or c == "n") and tok.upper() == "NIL"):
                cur.append(None)
            elif "0" <= c <= "9" and tok.isdigit() and tok.isascii() and len(tok) < 20:
                # canonical numbers only: "007" stays text, so nothing is lost
                cur.append(int(tok) if c != "0" or len(tok) == 1 else tok)
            else:
                cur.append(tok)
        if literal is not None:
            cur.append(literal)
    if stack:
        raise ResponseSyntaxError("'(' without ')'")
    return cur


def read_tree(
    frame: Frame, first: str, *, max_depth: int = 100, max_items: int = 100_000
) -> list[Any]:
    """The tree of a frame whose first line's remainder (decoded) is ``first``."""
    texts = [first]
    for line in frame.lines[1:]:
        texts.append(line.decode("utf-8", "surrogateescape"))
    return _build(texts, frame.literals, max_depth, max_items)


def text_tree(text: str, *, max_depth: int = 100) -> list[Any]:
    """The tree of a piece of one line (response code arguments)."""
    return _build([text], (), max_depth, 100_000)


# -- the fast path: the same tree built by the json module's C scanner ---------------
#
# A FETCH line is mostly quoted strings, NIL, numbers and parentheses. Rewritten as
# JSON with a handful of C-level string operations (no Python code per token), it is
# read by ``json.loads`` several times faster than by the loop above. The rewrite:
# quoted strings are set aside (RFC 9051 quoted strings whose only escapes are \" and
# \\ are valid JSON strings as they are); in what remains every "(", ")" and SP is
# written with a quote on each side, so that every atom ends up quoted and the empty
# atoms between two delimiters become "" (removed); then ")(" needs its comma and the
# quoted atom NIL becomes null. Literals become {"L":0} objects, replaced by the
# literal itself through ``object_hook`` (called in document order). Numbers stay text
# (the callers accept digits as text), and whatever does not fit (an odd quote, NIL in
# another case, a control character, ")(" inside an atom) makes it return None: the
# caller then uses the loop above, which is the reference.

_JSON_STRINGS = re.compile(r'("[^"\\\x00-\x1f]*(?:\\["\\][^"\\\x00-\x1f]*)*")')
_loads = json.loads


def fast_tree(
    frame: Frame, first: str, *, max_depth: int = 100, max_items: int = 100_000
) -> list[Any] | None:
    """The tree ``read_tree`` would give, with numbers as text; or ``None`` when
    the frame is not of the plain kind this path handles."""
    literals = frame.literals
    tail: bytes | Streamed | None = None
    if literals:
        texts = [first]
        for line in frame.lines[1:]:
            texts.append(line.decode("utf-8", "surrogateescape"))
        for i, literal in enumerate(literals):
            piece = texts[i]
            start = piece.rfind("{")
            if start > 0 and piece[start - 1] == "~":
                start -= 1
            # the announcement is an item of its own: after SP or "(" (or alone)
            if start < 0 or (start > 0 and piece[start - 1] not in " ("):
                return None
            m = _LITERAL.fullmatch(piece, start)
            if m is None:
                return None
            _literal(m.group(), literal)
            texts[i] = piece[:start]
        if len(literals) == 1 and texts[1] == ")" and texts[0][-1:] == " " != texts[0][-2:-1]:
            # the common shape, one literal as the last value (BODY[HEADER] {200}):
            # read the rest without it and append it, no object_hook needed
            tail = literals[0]
            literals = ()
            text = texts[0][:-1] + ")"
            if "\x02" in text:
                return None
        else:
            text = "\x02".join(texts)
            if text.count("\x02") != len(literals):
                return None
    else:
        text = first
        if "\x02" in text:
            return None
    if len(text) > max_items or text.count("(") > max_depth or "\x00" in text or "\x01" in text:
        return None
    parts = _JSON_STRINGS.split(text)
    strings = len(parts) // 2
    outside = '"\x01"'.join(parts[0::2])
    if (
        outside.count('"') != 2 * strings
        or "][" in outside
        or outside.upper().count("NIL") != outside.count("NIL")
    ):
        return None
    if "\\" in outside:
        outside = outside.replace("\\", "\\\\")
    outside = outside.replace("(", '"["').replace(")", '"]"').replace(" ", '","')
    if literals:
        outside = outside.replace("\x02", '"{"L":0}"')
    outside = ('"' + outside + '"').replace('""', "").replace("][", "],[").replace('"NIL"', "null")
    pieces = outside.split("\x01")
    if len(pieces) != strings + 1:
        return None
    parts[0::2] = pieces
    try:
        if literals:
            found = iter(literals)
            value = _loads("".join(parts), object_hook=lambda _: next(found))
        else:
            value = _loads("".join(parts))
    except (ValueError, RecursionError, StopIteration):
        return None
    if tail is not None:
        if type(value) is not list:
            return None
        value.append(tail)
    return [value]

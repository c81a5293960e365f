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

import re
from typing import Any

from mailagents.imap._frame import Frame, Streamed

__all__ = ["ResponseSyntaxError", "read_tree", "text_tree"]

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

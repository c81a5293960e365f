"""ENVELOPE from a message's header (RFC 9051 §7.5.2).

The fields are the unfolded header values (``unfold`` in ``_mime``); of a repeated
field the last counts, but repeated address fields add up (as in Dovecot). RFC 2047
encoded words stay as they are (the client decodes them). Address lists are parsed
by a small RFC 5322 §3.4 parser written to give what Dovecot gives, including for
broken input:

- a group is a start entry (``mailbox`` the group's name, ``host`` NIL), its members,
  and an end entry (all NIL);
- a source route (``<@a,@b:user@host>``) goes to ``adl`` as written (``@a,@b``);
- a missing local part or domain is ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``; a
  display name without an address keeps the name; an empty list entry (``a@b,,c@d``)
  is a missing address; anything that is not followed by ``,`` ends the list, and so
  does an unterminated quoted string;
- the addresses of a repeated address field add up;
- without a display name, the last comment is the name (``a@b (Real Name)``);
- the display name's words are joined by single spaces, the Subject's blank runs
  collapsed and trimmed (Dovecot writes both "for humans").

``sender`` and ``reply_to`` default to ``from_`` (RFC 9051 §7.5.2).

Pure computation, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailagents.imap._body_model import Address, Envelope
from mailagents.imap._mime import ADDRESS_FIELDS, ENVELOPE_FIELDS, header_fields, unfold

__all__ = ["envelope_from_fields", "envelope_from_header", "parse_address_list"]

_ATEXT_SPECIALS = frozenset('()<>[]:;@\\,."')
_BLANKS = re.compile(r"[ \t\r\n]+")
MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"


def _is_atext(c: str) -> bool:
    return (ord(c) > 32 and c != "\x7f" and c not in _ATEXT_SPECIALS) or ord(c) > 127


class _Parser:
    """A cursor over one address list value."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)
        self.comment: str | None = None
        self.broken = False

    def at(self, c: str) -> bool:
        return self.i < self.n and self.s[self.i] == c

    def end(self) -> bool:
        return self.i >= self.n

    def cfws(self) -> None:
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "(":
                depth = 0
                out: list[str] = []
                while self.i < n:
                    c = s[self.i]
                    if c == "\\" and self.i + 1 < n:
                        out.append(s[self.i + 1])
                        self.i += 2
                        continue
                    if c == "(":
                        depth += 1
                        if depth > 1:
                            out.append(c)
                    elif c == ")":
                        depth -= 1
                        if depth == 0:
                            self.i += 1
                            break
                        out.append(c)
                    else:
                        out.append(c)
                    self.i += 1
                self.comment = "".join(out)
            else:
                break

    def atom(self) -> str:
        j = self.i
        while j < self.n and _is_atext(self.s[j]):
            j += 1
        word, self.i = self.s[self.i : j], j
        return word

    def quoted(self) -> str:
        """A quoted-string at ``"``; its content, escapes undone."""
        out: list[str] = []
        self.i += 1
        while self.i < self.n:
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\" and self.i + 1 < self.n:
                self.i += 1
                c = self.s[self.i]
            if c not in "\r\n":
                out.append(c)
            self.i += 1
        self.broken = True  # no closing quote
        return "".join(out)

    def phrase(self) -> str:
        """``phrase`` / ``obs-phrase``: words (atoms, quoted strings, dots) joined by
        single spaces; ``""`` when there is none."""
        words: list[str] = []
        while True:
            self.cfws()
            if self.at('"'):
                words.append(self.quoted())
            elif self.at(".") and words:
                self.i += 1
                words[-1] += "."
                continue
            else:
                word = self.atom()
                if not word:
                    break
                words.append(word)
        return " ".join(w for w in words)

    def local_part(self) -> str:
        """dot-atom or quoted-string words joined by dots (quotes removed, as
        Dovecot writes them)."""
        parts: list[str] = []
        while True:
            self.cfws()
            if self.at('"'):
                parts.append(self.quoted())
            else:
                word = self.atom()
                if not word:
                    break
                parts.append(word)
            self.cfws()
            if self.at("."):
                self.i += 1
                continue
            break
        return ".".join(parts)

    def domain(self) -> str:
        self.cfws()
        if self.at("["):
            j = self.s.find("]", self.i)
            j = self.n if j < 0 else j + 1
            text, self.i = self.s[self.i : j], j
            self.cfws()
            return text
        parts: list[str] = []
        while True:
            self.cfws()
            word = self.atom()
            if not word:
                break
            parts.append(word)
            self.cfws()
            if self.at("."):
                self.i += 1
                continue
            break
        return ".".join(parts)

    def addr_spec(self) -> tuple[str, str, bool]:
        """``(local, domain, ok)``: ok when an ``@`` and a domain followed."""
        local = self.local_part()
        self.cfws()
        if not self.at("@"):
            return local, "", False
        self.i += 1
        dom = self.domain()
        return local, dom, bool(dom) and bool(local)

    def route(self) -> str | None:
        """An obs-route (``@a,@b:``) at ``@``; ``None`` when there is none."""
        start = self.i
        hops: list[str] = []
        while True:
            self.cfws()
            if self.at(","):
                self.i += 1
                continue
            if not self.at("@"):
                break
            self.i += 1
            hops.append("@" + self.domain())
        self.cfws()
        if hops and self.at(":"):
            self.i += 1
            return ",".join(hops)
        self.i = start
        return None

    def mailbox(self, out: list[Address]) -> None:
        start = self.i
        self.comment = None
        name = self.phrase()
        if self.broken:
            # An unterminated quoted string: nothing usable is left (Dovecot).
            self.i = self.n
            out.append(Address(mailbox=MISSING_MAILBOX, host=MISSING_DOMAIN))
            return
        self.cfws()
        if self.at("<"):
            self.i += 1
            self.cfws()
            adl = self.route() if self.at("@") else None
            local, dom, _ok = self.addr_spec()
            self.cfws()
            if self.at(">"):
                self.i += 1
            self.cfws()
            out.append(
                Address(
                    name=_for_humans(name) or None,
                    adl=adl,
                    mailbox=local or MISSING_MAILBOX,
                    host=dom or MISSING_DOMAIN,
                )
            )
            return
        after_phrase = self.i
        self.i = start
        self.comment = None
        local, dom, ok = self.addr_spec()
        self.cfws()
        stop = self.end() or self.at(",") or self.at(";")
        if ok or stop:
            out.append(
                Address(
                    name=self.comment if ok else None,
                    mailbox=local or MISSING_MAILBOX,
                    host=dom or MISSING_DOMAIN,
                )
            )
            return
        if name:
            # A display name without an address.
            self.i = after_phrase
            out.append(
                Address(name=_for_humans(name), mailbox=MISSING_MAILBOX, host=MISSING_DOMAIN)
            )
            return
        out.append(Address(name=None, mailbox=local or MISSING_MAILBOX, host=dom or MISSING_DOMAIN))

    def address(self, out: list[Address]) -> None:
        start = self.i
        name = self.phrase()
        self.cfws()
        if name and self.at(":"):
            self.i += 1
            out.append(Address(mailbox=name))
            self.cfws()
            while not self.end() and not self.at(";"):
                before = self.i
                self.mailbox(out)
                self.cfws()
                if self.at(","):
                    self.i += 1
                    self.cfws()
                    continue
                if self.i == before:
                    break
                break
            if self.at(";"):
                self.i += 1
            out.append(Address())
            return
        self.i = start
        self.mailbox(out)


def parse_address_list(value: str | None) -> tuple[Address, ...] | None:
    """The addresses of an address-list header value (RFC 5322 §3.4), Dovecot's way
    (see the module docstring); ``None`` when there is none. LF separates the values
    of a repeated field (``ADDRESS_FIELDS``), whose addresses add up."""
    if value is None:
        return None
    out: list[Address] = []
    for one in value.split("\n"):
        _parse_one(one, out)
    return tuple(out) or None


def _parse_one(value: str, out: list[Address]) -> None:
    p = _Parser(value)
    p.cfws()
    while not p.end():
        before = p.i
        p.address(out)
        p.cfws()
        if p.end() or not p.at(","):
            break
        p.i += 1
        p.cfws()
        if p.i == before:
            break


def _for_humans(value: str) -> str:
    """Blank runs as one space, no blanks at either end (how Dovecot writes a
    Subject)."""
    return _BLANKS.sub(" ", value).strip(" ")


def envelope_from_fields(fields: Sequence[str | None]) -> Envelope:
    """An ``Envelope`` from the unfolded values of
    ``ENVELOPE_FIELDS`` in their order (``MimePart.envelope`` of a part map)."""
    if len(fields) != len(ENVELOPE_FIELDS):
        raise ValueError("envelope_from_fields needs one value per ENVELOPE_FIELDS entry")
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = fields
    from_list = parse_address_list(from_)
    subject_text = None if subject is None else _for_humans(subject)
    return Envelope(
        date=date,
        subject=subject_text,
        from_=from_list,
        sender=parse_address_list(sender) or from_list,
        reply_to=parse_address_list(reply_to) or from_list,
        to=parse_address_list(to),
        cc=parse_address_list(cc),
        bcc=parse_address_list(bcc),
        in_reply_to=in_reply_to,
        message_id=message_id,
    )


def envelope_from_header(header: bytes) -> Envelope:
    """The ENVELOPE of a header block (the octets up to and with the blank line)."""
    index = {name: i for i, name in enumerate(ENVELOPE_FIELDS)}
    fields: list[str | None] = [None] * len(ENVELOPE_FIELDS)
    for name, value in header_fields(header):
        k = index.get(name)
        if k is not None:
            text = unfold(value)
            previous = fields[k]
            if name in ADDRESS_FIELDS and previous is not None:
                text = previous + "\n" + text
            fields[k] = text
    return envelope_from_fields(fields)

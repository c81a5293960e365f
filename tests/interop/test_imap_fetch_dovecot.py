"""Whole FETCH responses of plan_fetch against Dovecot's, message by message.

The MIME corpus of tests/imap/mime_corpus.py goes into a Maildir that Dovecot serves
and into our stores (Maildir and mbox) with the same INTERNALDATE and ``\\Seen``;
imaplib sends one FETCH with many items per message to Dovecot, and our
``plan_fetch`` answers the same items (parsed by our command parser) over our
folder. Dovecot's response, read by our responses parser, must equal ours item by
item: FLAGS (less Dovecot's ``\\Recent``), INTERNALDATE, RFC822.SIZE, ENVELOPE,
BODY, BODYSTRUCTURE, every body section and partial, RFC822.HEADER, BINARY and
BINARY.SIZE (or both refusing with UNKNOWN-CTE). The differences kept on purpose in
the core are those listed in tests/interop/test_imap_structure_dovecot.py, and are
left out here.
"""

from __future__ import annotations

import datetime
import imaplib
import os
from collections.abc import Iterator

import pytest

from mailagents.agents._imap_fetch import plan_fetch
from mailagents.imap._command_parser import parse_command
from mailagents.imap._commands import Fetch
from mailagents.imap._fetch_data import FetchData
from mailagents.imap._fetch_items import FetchItem
from mailagents.imap._frame import Frame
from mailagents.imap._response_parser import parse_response
from mailagents.store import Folder, MaildirStore, MboxStore

from ..imap.mime_corpus import MESSAGES
from .peers import mail_tree, running_dovecot
from .test_imap_structure_dovecot import KEPT_DIFFERENCES, KEPT_SECTION_DIFFERENCES

pytestmark = pytest.mark.interop

WHEN = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)

ITEMS = (
    "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822.HEADER "
    "BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] "
    "BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[1.1] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] "
    "BODY.PEEK[2.1.MIME] BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] "
    "BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)] BODY.PEEK[]<10.50> "
    "BODY.PEEK[TEXT]<3.20> BODY.PEEK[1]<0.5> BODY.PEEK[HEADER]<30.1000> "
    "BODY.PEEK[]<100000.10>"
)
KEPT_FETCH_DIFFERENCES: dict[tuple[str, str], tuple[bytes, bytes, str]] = {
    # (message, section): (what we send, what Dovecot sends, why)
    ("header_only", "HEADER.FIELDS.NOT (FROM SUBJECT)"): (
        b"\r\n",
        b"",
        "a header without the blank line after it, every field left out: RFC 3501 "
        "§6.4.5 says the blank line is always included in header fetch responses; "
        "Dovecot sends an empty string (it copies the blank line only when the "
        "message has one)",
    ),
}

BINARY_ITEMS = ["BINARY.PEEK[1] BINARY.SIZE[1]", "BINARY.PEEK[2]<1.4> BINARY.SIZE[2]"]


def responses(data: list[bytes | tuple[bytes, bytes]]) -> list[list[bytes | tuple[bytes, bytes]]]:
    """imaplib's pieces cut into responses: one starts with ``n (`` (the pieces after
    a literal go on with a space or the closing parenthesis)."""
    out: list[list[bytes | tuple[bytes, bytes]]] = []
    for piece in data:
        head = piece[0] if isinstance(piece, tuple) else piece
        if head[:1].isdigit() or not out:
            out.append([])
        out[-1].append(piece)
    return out


def as_frame(data: list[bytes | tuple[bytes, bytes]]) -> Frame:
    """imaplib's pieces of one FETCH response as the Frame our parser reads."""
    lines: list[bytes] = []
    literals: list[bytes] = []
    for piece in data:
        if isinstance(piece, tuple):
            lines.append(piece[0])
            literals.append(piece[1])
        else:
            lines.append(piece)
    if len(lines) == len(literals):
        lines.append(b"")
    lines[0] = b"* " + lines[0].replace(b" ", b" FETCH ", 1)
    return Frame(lines=tuple(lines), literals=tuple(literals))


def items_of(spec: str) -> tuple[FetchItem, ...]:
    command = parse_command(Frame(lines=(f"a FETCH 1 ({spec})".encode(),)))
    assert isinstance(command, Fetch) and not isinstance(command.items, str)
    return command.items


@pytest.fixture(scope="module")
def dovecot_answers() -> Iterator[dict[tuple[str, str], FetchData | str]]:
    tree = mail_tree()
    maildir = tree / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    names = list(MESSAGES)
    stamp = WHEN.timestamp()
    for i, name in enumerate(names):
        path = maildir / "cur" / f"{1000 + i}.M{i}P1.test:2,S"
        path.write_bytes(MESSAGES[name])
        os.utime(path, (stamp, stamp))
    answers: dict[tuple[str, str], FetchData | str] = {}
    with running_dovecot(maildir) as dovecot:
        client = imaplib.IMAP4("127.0.0.1", dovecot.imap_port)
        client.login(dovecot.user, dovecot.password)
        client.select("INBOX")
        for i, name in enumerate(names, 1):
            for spec in (ITEMS, *BINARY_ITEMS):
                if spec == ITEMS and name in KEPT_DIFFERENCES:
                    continue  # Dovecot's message/global does not parse as RFC 9051's
                typ, data = client.fetch(str(i), f"({spec})")
                if typ != "OK":
                    text = b" ".join(p for p in data if isinstance(p, bytes))
                    assert b"UNKNOWN-CTE" in text, text
                    answers[name, spec] = "UNKNOWN-CTE"
                    continue
                # Dovecot may send an unsolicited FETCH (UID n) first: take ours.
                mine = max(responses(data), key=len)  # type: ignore[arg-type]
                parsed = parse_response(as_frame(mine))
                assert isinstance(parsed, FetchData)
                answers[name, spec] = parsed
        client.logout()
    yield answers


@pytest.fixture(scope="module", params=["maildir", "mbox"])
def ours(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Folder, object]]:
    root = tmp_path_factory.mktemp(request.param)
    store = MaildirStore(root / "md", fsync=False) if request.param == "maildir" else None
    folder = (store or MboxStore(root / "mb")).folder("INBOX")
    uids = {}
    for name, data in MESSAGES.items():
        uids[name] = folder.append_bytes(data, flags=("\\Seen",), internaldate=WHEN).uid
    folder.refresh()
    return {name: (folder, folder.info(uid)) for name, uid in uids.items() if uid is not None}


def _sections(
    data: FetchData, name: str, binary: bool, *, dovecot: bool
) -> dict[tuple[str, str, int | None], object]:
    out: dict[tuple[str, str, int | None], object] = {}
    for item in data.sections:
        key = f"BINARY {item.section}" if binary else str(item.section)
        if (name, key) in KEPT_SECTION_DIFFERENCES:
            continue
        value = item.data
        if (name, key) in KEPT_FETCH_DIFFERENCES:
            kept = KEPT_FETCH_DIFFERENCES[name, key]
            assert value == kept[1 if dovecot else 0], "kept difference no longer seen"
            value = "kept"
        out[item.name, str(item.section), item.origin] = value
    return out


@pytest.mark.parametrize("name", list(MESSAGES))
def test_fetch_matches_dovecot(
    dovecot_answers: dict[tuple[str, str], FetchData | str],
    ours: dict[str, tuple[Folder, object]],
    name: str,
) -> None:
    folder, info = ours[name]
    for spec in (ITEMS, *BINARY_ITEMS):
        if (name, spec) not in dovecot_answers:
            continue
        theirs = dovecot_answers[name, spec]
        plan = plan_fetch(
            items_of(spec),
            info,
            1,
            folder,
            uid_requested=False,
            modseq=False,
            utf8=False,  # type: ignore[arg-type]
        )
        if theirs == "UNKNOWN-CTE":
            assert plan.error is not None, spec
            continue
        assert isinstance(theirs, FetchData)
        assert plan.error is None and plan.literals == []
        mine = plan.data
        if theirs.flags is not None:
            assert mine.flags == tuple(f for f in theirs.flags if f != "\\Recent")
        assert mine.internaldate == theirs.internaldate
        assert mine.rfc822_size == theirs.rfc822_size
        assert mine.envelope == theirs.envelope
        assert mine.body == theirs.body
        assert mine.bodystructure == theirs.bodystructure
        binary = spec != ITEMS
        ours_ = _sections(mine, name, binary, dovecot=False)
        assert ours_ == _sections(theirs, name, binary, dovecot=True), spec
        if not any(
            (name, "BINARY " + ".".join(map(str, p[0]))) in KEPT_SECTION_DIFFERENCES
            for p in mine.binary_sizes
        ):
            assert mine.binary_sizes == theirs.binary_sizes, spec

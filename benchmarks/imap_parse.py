"""How fast does the IMAP response parser read FETCH responses, ours against imapclient?

20,000 distinct FETCH responses (2,000 with ``--quick``) of the kind a client asks for
to list a mailbox: ``UID``, ``FLAGS``, ``RFC822.SIZE``, ``INTERNALDATE``, ``ENVELOPE``
(four to six addresses) and ``BODYSTRUCTURE`` (a multipart/alternative of text/plain and
text/html, or a multipart/mixed with an attachment); and a second load, the same with a
200-octet ``BODY[HEADER]`` literal in each response.

- ours: ``mailagents.imap._response_parser.parse_response`` on each response's Frame
  (the lines and literals the framing layer hands over), giving ``FetchData`` with
  ``Envelope`` and ``Body`` objects;
- imapclient (``pip install imapclient``, or ``pip install -e '.[bench]'``):
  ``imapclient.response_parser.parse_fetch_response`` on the same responses in the form
  imaplib hands them over (``b'12 (UID ...'``, a literal as a ``(line, octets)`` pair),
  all in one call, the way IMAPClient.fetch uses it. Skipped with a message when
  imapclient is not importable.

Each figure is responses per second, the best of ``--runs`` runs (default 3), our
runs alternating with imapclient's. Ours is measured twice: keeping every result in a
list (as imapclient's one call returns them all: the like-for-like figure) and dropping
each as it is parsed (a client's events consumed as they come). Keeping 20,000 results
costs CPython's cyclic garbage collector dearly (its full collections walk every live
object), so the two differ. The last line is the ratio ours/imapclient with results
kept, the smaller of the two loads' (the goal of issue 14 is 5).

Run: ``python benchmarks/imap_parse.py`` (``--quick``; ``--count N`` sets the number of
responses directly).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mailagents.imap._frame import Frame  # noqa: E402
from mailagents.imap._response_parser import parse_response  # noqa: E402

FIRST = ["Terry", "John", "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret"]
LAST = ["Gray", "Klensin", "Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson"]
DOMAINS = ["cac.washington.edu", "example.org", "mail.example.com", "CNRI.Reston.VA.US"]
WORDS = ["meeting", "minutes", "summary", "IMAP4rev2", "draft", "review", "re:", "lunch"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _address(rng: random.Random) -> bytes:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f'"{first} {last}"' if rng.random() < 0.8 else "NIL"
    return f'({name} NIL "{first.lower()}" "{rng.choice(DOMAINS)}")'.encode()


def _addresses(rng: random.Random, n: int) -> bytes:
    return b"(" + b"".join(_address(rng) for _ in range(n)) + b")"


def _envelope(rng: random.Random, i: int) -> bytes:
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
    sender = _addresses(rng, 1)
    date = f"{rng.randint(1, 28)} {rng.choice(MONTHS)} 2024 12:{i % 60:02d}:07 +0200"
    return b"(%s)" % b" ".join(
        [
            f'"{date}"'.encode(),
            f'"{subject} #{i}"'.encode(),
            sender,
            sender,
            sender,
            _addresses(rng, rng.randint(1, 2)),
            _addresses(rng, rng.randint(0, 1)) if rng.random() < 0.5 else b"NIL",
            b"NIL",
            f'"<{i - 1}@example.org>"'.encode() if rng.random() < 0.4 else b"NIL",
            f'"<{i}.{rng.randint(0, 10**9)}@example.org>"'.encode(),
        ]
    )


def _bodystructure(rng: random.Random) -> bytes:
    plain = (
        b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" %d %d NIL NIL NIL NIL)'
        % (rng.randint(200, 20000), rng.randint(5, 400))
    )
    if rng.random() < 0.6:
        html = (
            b'("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" %d %d NIL NIL NIL NIL)'
            % (rng.randint(500, 50000), rng.randint(10, 900))
        )
        return b'(%s%s "ALTERNATIVE" ("BOUNDARY" "b1_%d") NIL NIL NIL)' % (
            plain,
            html,
            rng.randint(0, 10**9),
        )
    attachment = (
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" %d NIL '
        b'("ATTACHMENT" ("FILENAME" "report.pdf")) NIL NIL)' % rng.randint(10000, 900000)
    )
    return b'(%s%s "MIXED" ("BOUNDARY" "b2_%d") NIL NIL NIL)' % (
        plain,
        attachment,
        rng.randint(0, 10**9),
    )


def _header(rng: random.Random, i: int) -> bytes:
    head = (
        f"From: {rng.choice(FIRST)} <x@{rng.choice(DOMAINS)}>\r\n"
        f"To: someone@example.org\r\nSubject: message {i}\r\n"
        f"Message-ID: <{i}@example.org>\r\n"
    ).encode()
    pad = 200 - len(head) - len(b"X-Pad: \r\n\r\n")
    return head + b"X-Pad: " + b"p" * max(pad, 0) + b"\r\n\r\n"


def responses(count: int, *, header: bool) -> list[tuple[bytes, bytes | None, bytes]]:
    """``count`` FETCH responses as (first line, literal or None, rest of the line)."""
    rng = random.Random(14)
    out = []
    for i in range(1, count + 1):
        flags = rng.choice([b"()", b"(\\Seen)", b"(\\Seen \\Answered)", b"(\\Seen $Forwarded)"])
        date = f'"{rng.randint(1, 28):02d}-{rng.choice(MONTHS)}-2024 {i % 24:02d}:44:25 +0200"'
        head = b"* %d FETCH (UID %d FLAGS %s RFC822.SIZE %d INTERNALDATE %s ENVELOPE %s "
        head %= (
            i,
            1000 + i,
            flags,
            rng.randint(1000, 10**6),
            date.encode(),
            _envelope(rng, i),
        )
        structure = b"BODYSTRUCTURE " + _bodystructure(rng)
        if header:
            literal = _header(rng, i)
            out.append((head + structure + b" BODY[HEADER] {%d}" % len(literal), literal, b")"))
        else:
            out.append((head + structure + b")", None, b""))
    return out


def as_frames(data: list[tuple[bytes, bytes | None, bytes]]) -> list[Frame]:
    """What our framing layer hands the parser."""
    return [
        Frame(lines=(first,))
        if literal is None
        else Frame(lines=(first, rest), literals=(literal,))
        for first, literal, rest in data
    ]


def as_imaplib(data: list[tuple[bytes, bytes | None, bytes]]) -> list[Any]:
    """What imaplib hands imapclient: ``b'12 (UID ...'`` without ``* `` and ``FETCH``;
    a literal as a (line, octets) pair followed by the rest of the line."""
    out: list[Any] = []
    for first, literal, rest in data:
        number, _, tail = first[2:].partition(b" FETCH ")
        line = number + b" " + tail
        if literal is None:
            out.append(line)
        else:
            out.append((line, literal))
            out.append(rest)
    return out


def _rate(work: Callable[[], object], count: int) -> float:
    gc.collect()
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def measure(count: int, runs: int, *, header: bool) -> tuple[float, float, float | None]:
    """Best rates: ours keeping every result (as imapclient does), ours handing each on
    (a client's events, consumed as they come), imapclient's; their runs alternating
    (so that a change in the machine's load falls on all)."""
    data = responses(count, header=header)
    frames = as_frames(data)

    def ours_kept() -> object:
        return [parse_response(f) for f in frames]

    def ours_dropped() -> object:
        for f in frames:
            parse_response(f)
        return None

    parsed = ours_kept()
    assert isinstance(parsed, list) and len(parsed) == count
    del parsed
    try:
        from imapclient.response_parser import parse_fetch_response
    except ImportError:
        best_kept = max(_rate(ours_kept, count) for _ in range(runs))
        return best_kept, max(_rate(ours_dropped, count) for _ in range(runs)), None
    lines = as_imaplib(data)
    theirs = parse_fetch_response(lines)
    assert len(theirs) == count, len(theirs)
    del theirs
    rates: tuple[list[float], list[float], list[float]] = ([], [], [])
    for _ in range(runs):
        rates[0].append(_rate(ours_kept, count))
        rates[1].append(_rate(ours_dropped, count))
        rates[2].append(_rate(lambda: parse_fetch_response(lines), count))
    return max(rates[0]), max(rates[1]), max(rates[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 responses")
    parser.add_argument("--count", type=int, help="number of responses (default 20,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure, best kept")
    args = parser.parse_args()
    count = args.count or (2_000 if args.quick else 20_000)
    runs = max(1, args.runs)
    print(f"Python {sys.version.split()[0]}, {count:,} FETCH responses, best of {runs}")
    ratios = []
    missing = False
    for header, label in (
        (False, "UID FLAGS SIZE DATE ENVELOPE BODYSTRUCTURE"),
        (True, "the same + 200-octet BODY[HEADER] literal"),
    ):
        ours, dropped, theirs = measure(count, runs, header=header)
        print(f"{label}:")
        print(f"    ours, results kept (parse_response):   {ours:10,.0f} responses/s")
        print(f"    ours, each result dropped:             {dropped:10,.0f} responses/s")
        if theirs is None:
            missing = True
            print("    imapclient: not importable (pip install imapclient)")
        else:
            print(f"    imapclient (parse_fetch_response):     {theirs:10,.0f} responses/s")
            print(f"    ratio ours/imapclient, results kept: {ours / theirs:.2f}")
            ratios.append(ours / theirs)
    if missing:
        print("ratio ours/imapclient: not measured (imapclient is not installed)")
    else:
        print(f"ratio ours/imapclient (the smaller of the two loads): {min(ratios):.2f}")


if __name__ == "__main__":
    main()

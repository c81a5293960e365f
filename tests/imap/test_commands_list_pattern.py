"""LIST patterns in the command parser (mailagents/imap/_command_parser.py): ``~`` is
a list-char (RFC 9051 §9 list-char = ATOM-CHAR / list-wildcards / resp-specials),
not the start of a literal8."""

from __future__ import annotations

import pytest

from mailagents.imap import commands as c
from mailagents.imap._command_parser import CommandSyntaxError, parse_command
from mailagents.imap._command_writer import write_command
from mailagents.imap._frame import Frame


@pytest.mark.parametrize("pattern", ["~", "~user/*", "a~b%"])
def test_tilde_patterns_round_trip(pattern: str) -> None:
    command = c.List(tag="a", reference="", patterns=(pattern,))
    frame = write_command(command, literal_plus=True)
    assert frame.lines == (f'a LIST "" {pattern}'.encode(),)
    assert parse_command(frame) == command


def test_a_literal8_is_not_a_pattern() -> None:
    with pytest.raises(CommandSyntaxError):
        parse_command(Frame(lines=(b'a LIST "" ~{1}', b""), literals=(b"x",)))
    # A plain literal still is.
    parsed = parse_command(Frame(lines=(b'a LIST "" {1}', b""), literals=(b"x",)))
    assert isinstance(parsed, c.List) and parsed.patterns == ("x",)

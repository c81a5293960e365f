"""The IMAP server core's rules that depend on what the client enabled, applied to
commands as they arrive and to the application's answers (see
:mod:`mailagents.imap._server_rules` for the rules themselves): which commands the
session refuses, CONDSTORE turned on by any CONDSTORE enabling command, untagged
responses written and checked for the session, and the new UIDs of an APPEND into the
selected mailbox.
"""

from __future__ import annotations

from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import Append, Command, Enable, Examine, Search, Select
from mailagents.imap._events import Untagged
from mailagents.imap._frame import Frame
from mailagents.imap._response_writer import write_response
from mailagents.imap._responses import IdData
from mailagents.imap._server_auth import Authorization
from mailagents.imap._server_core import view_response
from mailagents.imap._server_rules import (
    UTF8_ONLY_COMMANDS,
    appenduid,
    check_frame,
    condstore_enabling,
    convert_response,
    same_mailbox,
)

__all__ = ["SessionRules"]


def _same_exists(frame: Frame, count: int) -> bool:
    """``* n EXISTS`` that repeats the count the client knows: harmless (RFC 2177's
    example sends one after an EXPUNGE), so the application may send it."""
    words = frame.lines[0].split(b" ")
    return len(words) == 3 and words[2].upper() == b"EXISTS" and words[1] == b"%d" % count


class SessionRules(Authorization):
    """The enabled-extension rules of ``ServerConnection`` (see the module)."""

    def _done(self, text: str, code: str | None = None) -> None:  # pragma: no cover
        """Complete the command in progress with OK (``ServerConnection`` defines it)."""
        raise NotImplementedError

    def _admit(self, command: Command, verb: str) -> bool:
        """Refuse a command the session rules out, else note what it turns on."""
        refusal = self._session_refusal(command, verb)
        if refusal is not None:
            self._reject(command.tag, *refusal)
            return False
        if condstore_enabling(command) and not isinstance(command, (Select, Examine)):
            self._condstore_on()
        view, name = self._mailbox, self._selected_name
        if (
            isinstance(command, Append)
            and view is not None
            and name is not None
            and same_mailbox(command.mailbox, name)
        ):
            self._append_watch = view.highest_uid
        return True

    def _session_refusal(
        self, command: object, verb: str
    ) -> tuple[str, str] | tuple[str, str, str] | None:
        """The answer to a command that what the client enabled rules out."""
        if verb == "LSUB" and self._rev2:
            # RFC 9051 Appendix E: LSUB is deprecated; rev2 clients use LIST (SUBSCRIBED).
            return ("BAD", "LSUB is not part of IMAP4rev2: use LIST (SUBSCRIBED)")
        if self.config.utf8_only and not self._utf8 and verb in UTF8_ONLY_COMMANDS:
            # RFC 6855 §6: refused with NO [CANNOT] until ENABLE UTF8=ACCEPT.
            return ("NO", "ENABLE UTF8=ACCEPT first", "CANNOT")
        if isinstance(command, Search) and command.charset and "UTF8=ACCEPT" in self._enabled:
            # RFC 6855 §3: after ENABLE UTF8=ACCEPT a SEARCH with CHARSET SHOULD be BAD.
            return ("BAD", "No CHARSET in SEARCH after ENABLE UTF8=ACCEPT")
        return None

    def _untagged(self, decision: Untagged) -> None:
        """An untagged response of the application's: for the command in progress, or
        unsolicited (RFC 9051 §5.3: any but EXPUNGE while no command is in progress).
        While a mailbox is selected, its EXISTS, EXPUNGE and VANISHED go through the
        view (``mailbox``), which alone keeps the numbers right. A response object is
        written for the session (``_server_rules.convert_response``); either form is
        checked against what the client enabled (``_server_rules.check_frame``)."""
        frame = decision.frame
        if decision.response is not None:
            response = convert_response(decision.response, self._command, rev2=self._rev2)
            frame = write_response(response, utf8=self._utf8)
        assert frame is not None
        check_frame(frame, rev2=self._rev2, utf8=self._utf8)
        if self._select_name is not None and frame.lines[0].upper().startswith(
            (b"* OK [HIGHESTMODSEQ ", b"* OK [NOMODSEQ]")
        ):
            self._modseq_told = True
        name = view_response(frame)
        view = self._mailbox
        if view is not None and name is not None and not _same_exists(frame, view.exists):
            raise LocalProtocolError(
                f"{name} of the selected mailbox: tell the SelectedMailbox view and call refresh()"
            )
        self._write_frame(frame)

    def _appended_to_view(self, code: str | None, before: int) -> None:
        """An APPEND into the selected mailbox completed with OK: its new UIDs come
        from the ``APPENDUID`` code (RFC 4315 §3) unless the application told the view
        itself (``mailbox.appended()``); with neither, the client would never get the
        EXISTS (RFC 9051 §6.3.12), so the core refuses the answer."""
        view = self._mailbox
        assert view is not None
        uids = appenduid(code)
        if uids is not None:
            view.appended(u for u in uids if u > view.highest_uid)
        if view.highest_uid == before:
            raise LocalProtocolError(
                "an APPEND into the selected mailbox: complete it with code='APPENDUID v uid'"
                " or call mailbox.appended() first"
            )

    def _do_id(self, command: object) -> None:
        # RFC 2971 §3.2: the server's own fields (config.server_id), or NIL.
        frame = write_response(IdData(params=self.config.server_id), utf8=self._utf8)
        self._write_frame(frame)
        self._done("ID completed")

    def _do_enable(self, command: Enable) -> None:
        allowed = self.config.enableable()
        # ENABLED names each as the capability list spells it (RFC 9051 §8: IMAP4rev2).
        spelled = {e.upper(): e for e in self.config.extensions}
        new: list[str] = []
        for name in command.capabilities:
            if name in allowed and name not in self._enabled:
                new.append(spelled.get(name, name))
                self._enabled.add(name)
        if "QRESYNC" in self._enabled and "CONDSTORE" not in self._enabled:
            self._enabled.add("CONDSTORE")  # RFC 7162 §3.2.3: ENABLE QRESYNC enables it too
        if self._enabled & {"IMAP4REV2", "UTF8=ACCEPT"}:
            self._utf8 = True  # RFC 9051 §6.3.1, RFC 6855 §3
        self._line(("* ENABLED " + " ".join(new)).rstrip().encode() + b"\r\n")
        self._done("ENABLE completed")

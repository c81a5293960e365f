"""BDAT (RFC 3030 CHUNKING) in the SMTP server core: the command, its octets counted
off the input, and the end of each chunk."""

from __future__ import annotations

from mailagents.smtp._events import DataChunk
from mailagents.smtp._replies import BDAT_UNAVAILABLE, reply
from mailagents.smtp._reply import Reply
from mailagents.smtp._server_core import S_CONNECTED, S_RCPT, S_REFUSED, ServerCore

__all__ = ["Chunking"]

_BDAT_SIZE_DIGITS = 20  # a size that does not fit in 20 digits cannot be meant


class Chunking(ServerCore):
    """The BDAT command of :class:`~mailagents.smtp.ServerConnection`."""

    def _bdat(self, arg: str) -> None:
        offered = self.config.chunking and "CHUNKING" in self._extensions
        parts = arg.split(" ")
        last = len(parts) == 2 and parts[1].upper() == "LAST"
        if not (
            parts[0].isascii()
            and parts[0].isdigit()
            and len(parts[0]) <= _BDAT_SIZE_DIGITS
            and (len(parts) == 1 or last)
        ):
            if not offered:
                self._reject("BDAT", BDAT_UNAVAILABLE)
                return
            # The octet count cannot be read, so neither can the rest of the stream
            # (RFC 3030 §3 syntax): answer 501 and end the session.
            self._fatal(reply(501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection"))
        size = int(parts[0])
        rejection: Reply | None = None
        if self._state in (S_CONNECTED, S_REFUSED):
            rejection = self._sequence_error("BDAT")
        elif not offered:
            rejection = BDAT_UNAVAILABLE
        elif "BDAT" not in self._row:
            rejection = self._sequence_error("BDAT")
        # A refused BDAT still has its octets consumed (RFC 3030 §2), then it is answered;
        # its state does not change meanwhile.
        self._bdat_remaining = size
        self._bdat_last = last
        self._bdat_rejected = rejection
        if rejection is None:
            if self._state is S_RCPT:
                self._bdat_size = 0
                self._bdat_error = None
            self._transition("BDAT")
        if size == 0:
            self._finish_chunk()

    def _process_bdat(self) -> None:
        """Take the chunk's octets that have arrived (or skip a refused chunk's)."""
        buf = self._in
        take = min(len(buf), self._bdat_remaining)
        if take == 0:
            return
        if self._bdat_rejected is None:
            if self._bdat_error is None:
                limit = self.config.max_message_size
                if limit is not None and self._bdat_size + take > limit:
                    self._bdat_error = reply(
                        552, "5.3.4", "Message size exceeds fixed maximum message size"
                    )
                else:
                    self._events.append(DataChunk(data=bytes(buf[:take])))
            self._bdat_size += take
        del buf[:take]
        self._bdat_remaining -= take
        if self._bdat_remaining == 0:
            self._finish_chunk()

    def _finish_chunk(self) -> None:
        rejection = self._bdat_rejected
        if rejection is not None:
            # The octets of a refused BDAT are consumed, then it is answered (RFC 3030 §2).
            self._bdat_rejected = None
            self._reject("BDAT", rejection)
            return
        if self._bdat_error is not None:
            self._message_failed(self._bdat_error, final=self._bdat_last)
            self._bdat_error = None
            return
        if self._bdat_last:
            self._complete(self._bdat_size, chunked=True)
        else:
            self._transition("CHUNK_END")
            self._queue(reply(250, "2.0.0", f"{self._bdat_size} octets received"))

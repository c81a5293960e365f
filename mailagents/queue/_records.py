"""The queue file: versioned, typed records ending in an END record.

::

    MAILAGENTS-QUEUE 1
    M {"id": ..., "sender": ..., "arrival": ..., ...}
    R {"address": ..., "state": "queued", "attempts": 0, ...}
    R {...}
    END 1a2b3c4d

Each record is one line: its type (``M`` the message, ``R`` a recipient), a space and
a JSON object written with ASCII only (so no record holds a raw line end). The file
ends with ``END`` and the CRC-32 of every octet before it: a file cut short, or
damaged, is never taken for a message (Postfix's queue files end the same way, with
an end record). A reader refuses a version, a record type or a field it does not know
(:class:`QueueFileError`), rather than guess.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from mailagents._protocol import LocalProtocolError
from mailagents.queue._model import QueuedMessage, QueuedRecipient
from mailagents.smtp import Reply

__all__ = ["MAGIC", "VERSION", "QueueFileError", "decode", "encode"]

MAGIC = b"MAILAGENTS-QUEUE"
VERSION = 1
_HEADER = MAGIC + b" %d\n" % VERSION
_STATES = frozenset({"queued", "delivered", "transferred", "relayed", "failed"})
_KINDS = frozenset({"failure", "delay", "success"})
_NOTIFY = frozenset({"NEVER", "SUCCESS", "FAILURE", "DELAY"})
MAX_FILE = 1 << 24
"""The largest queue file read (16 MiB: some 50,000 recipients)."""


class QueueFileError(ValueError):
    """A queue file that is not whole, not ours, or of a version this code does not
    know."""


def _reply(reply: Reply | None) -> list[Any] | None:
    if reply is None:
        return None
    return [reply.code, reply.enhanced, list(reply.lines)]


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def encode(message: QueuedMessage) -> bytes:
    """The queue file of ``message``."""
    out = bytearray(_HEADER)
    head = {
        "id": message.id,
        "sender": message.sender,
        "arrival": message.arrival,
        "size": message.size,
        "body": message.body,
        "smtputf8": message.smtputf8,
        "requiretls": message.requiretls,
        "ret": message.ret,
        "envid": message.envid,
        "identity": message.identity,
        "client": message.client,
        "notice": message.notice,
    }
    out += b"M " + _json(head) + b"\n"
    for r in message.recipients:
        record = {
            "address": r.address,
            "orcpt": list(r.orcpt) if r.orcpt is not None else None,
            "notify": sorted(r.notify) if r.notify is not None else None,
            "state": r.state,
            "attempts": r.attempts,
            "next": r.next_attempt,
            "last": r.last_attempt,
            "reply": _reply(r.reply),
            "remote": r.remote_mta,
            "expired": r.expired,
            "notified": sorted(r.notified),
        }
        out += b"R " + _json(record) + b"\n"
    out += b"END %08x\n" % zlib.crc32(out)
    return bytes(out)


# --- reading ------------------------------------------------------------------------


class _Fields:
    """The fields of one record, taken one by one with their types checked."""

    def __init__(self, kind: str, data: object) -> None:
        if not isinstance(data, dict):
            raise QueueFileError(f"a {kind} record is not an object")
        self.kind = kind
        self.data: dict[str, Any] = dict(data)

    def take(self, name: str, *types: type, optional: bool = False) -> Any:
        if name not in self.data:
            raise QueueFileError(f"the {self.kind} record lacks {name!r}")
        value = self.data.pop(name)
        if value is None and optional:
            return None
        # bool is an int: accept it only where bool is asked for.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise QueueFileError(f"{name!r} of the {self.kind} record has the wrong type")
        return value

    def end(self) -> None:
        if self.data:
            raise QueueFileError(f"unknown fields in the {self.kind} record: {sorted(self.data)}")


def _decode_reply(value: object) -> Reply | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
        or not (value[1] is None or isinstance(value[1], str))
        or not isinstance(value[2], list)
        or not all(isinstance(line, str) for line in value[2])
    ):
        raise QueueFileError("a malformed reply")
    try:
        return Reply(code=value[0], enhanced=value[1], lines=tuple(value[2]))
    except (ValueError, LocalProtocolError) as error:
        raise QueueFileError(f"a malformed reply: {error}") from None


def _number(value: Any) -> float:
    return float(value)


def _recipient(data: object) -> QueuedRecipient:
    f = _Fields("R", data)
    address = f.take("address", str)
    orcpt = f.take("orcpt", list, optional=True)
    if orcpt is not None and (len(orcpt) != 2 or not all(isinstance(x, str) for x in orcpt)):
        raise QueueFileError("a malformed ORCPT")
    notify = f.take("notify", list, optional=True)
    if notify is not None and not all(isinstance(n, str) and n in _NOTIFY for n in notify):
        raise QueueFileError("a malformed NOTIFY")
    state = f.take("state", str)
    if state not in _STATES:
        raise QueueFileError(f"unknown recipient state {state!r}")
    attempts = f.take("attempts", int)
    if attempts < 0:
        raise QueueFileError("a negative attempt count")
    next_attempt = _number(f.take("next", int, float))
    last = f.take("last", int, float, optional=True)
    reply = _decode_reply(f.take("reply", list, optional=True))
    remote = f.take("remote", str, optional=True)
    expired = f.take("expired", bool)
    notified = f.take("notified", list)
    if not all(isinstance(k, str) and k in _KINDS for k in notified):
        raise QueueFileError("unknown notice kinds")
    f.end()
    return QueuedRecipient(
        address=address,
        orcpt=(orcpt[0], orcpt[1]) if orcpt is not None else None,
        notify=frozenset(notify) if notify is not None else None,
        state=state,  # checked against _STATES
        attempts=attempts,
        next_attempt=next_attempt,
        last_attempt=_number(last) if last is not None else None,
        reply=reply,
        remote_mta=remote,
        expired=expired,
        notified=frozenset(notified),
    )


def decode(data: bytes) -> QueuedMessage:
    """The message a queue file holds; :class:`QueueFileError` when it is not whole."""
    if len(data) > MAX_FILE:
        raise QueueFileError("the queue file is too large")
    # The END record and its checksum first: nothing of a damaged file is parsed.
    if not data.endswith(b"\n"):
        raise QueueFileError("the file is cut short (no END record)")
    cut = data.rfind(b"\n", 0, len(data) - 1) + 1
    end = data[cut:-1]
    if not end.startswith(b"END "):
        raise QueueFileError("the file is cut short (no END record)")
    payload = end[4:]
    try:
        crc = int(payload, 16)
    except ValueError:
        raise QueueFileError("a malformed END record") from None
    if len(payload) != 8 or crc != zlib.crc32(data[:cut]):
        raise QueueFileError("the checksum does not match (a damaged file)")
    lines = data[:cut].split(b"\n")[:-1]
    magic, _, version = (lines[0] if lines else b"").partition(b" ")
    if magic != MAGIC:
        raise QueueFileError("not a mailagents queue file")
    if version != str(VERSION).encode():
        raise QueueFileError(f"queue file version {version.decode('ascii', 'replace')!r} "
                             f"is not {VERSION}")
    head: QueuedMessage | None = None
    recipients: list[QueuedRecipient] = []
    for line in lines[1:]:
        kind, _, text = line.partition(b" ")
        name = kind.decode("ascii", "replace")
        if kind not in (b"M", b"R"):
            raise QueueFileError(f"unknown record type {name!r}")
        try:
            record = json.loads(text)
        except ValueError:
            raise QueueFileError(f"a malformed {name} record") from None
        if kind == b"M":
            if head is not None:
                raise QueueFileError("two M records")
            head = _head(record)
        else:
            if head is None:
                raise QueueFileError("an R record before the M record")
            recipients.append(_recipient(record))
    if head is None or not recipients:
        raise QueueFileError("no message or no recipient")
    return head.with_recipients(tuple(recipients))


def _head(data: object) -> QueuedMessage:
    f = _Fields("M", data)
    message = QueuedMessage(
        id=f.take("id", str),
        sender=f.take("sender", str),
        recipients=(),
        arrival=_number(f.take("arrival", int, float)),
        size=f.take("size", int),
        body=f.take("body", str, optional=True),
        smtputf8=f.take("smtputf8", bool),
        requiretls=f.take("requiretls", bool),
        ret=f.take("ret", str, optional=True),
        envid=f.take("envid", str, optional=True),
        identity=f.take("identity", str, optional=True),
        client=f.take("client", str, optional=True),
        notice=f.take("notice", str, optional=True),
    )
    f.end()
    if message.notice not in (None, "dsn", "postmaster"):
        raise QueueFileError(f"unknown notice kind {message.notice!r}")
    if not _valid_id(message.id):
        raise QueueFileError(f"a malformed queue id {message.id!r}")
    return message


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isalnum()

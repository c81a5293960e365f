"""Helpers for tests/interop/test_imap_sync_clients.py: our store-backed IMAP server in
a thread of its own (its own event loop), a quickly made account, and the two sides'
state (the server's store and a client's local Maildir) as comparable dictionaries."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import email.parser
import email.policy
import hashlib
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailagents import sasl
from mailagents._mutf7 import decode_mutf7, encode_mutf7
from mailagents.agents._imap_session import StoreIMAPHandler, imap_config
from mailagents.aio import ListenerLimits
from mailagents.aio.imap import IMAPServer
from mailagents.store import Store

USER = "user"
PASSWORD = "secret"
SECRETS = sasl.scram_secrets(PASSWORD)
QUICK = ListenerLimits(auth_failure_delay=0.01, max_auth_failure_delay=0.01)

# Flags as a Maildir info part ("2,FS") names them (the maildir(5) letters).
LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
SYSTEM = frozenset(LETTERS.values())
KEYWORDS = {"a": "$Forwarded", "b": "Work"}
"""The keywords some messages carry, and the letters offlineimap is told to give them
in the local Maildir (its customflag_a...; mbsync 1.4 does not sync keywords)."""
LETTERS.update(KEYWORDS)

State = dict[str, dict[str, frozenset[str]]]
"""Folder name → Message-ID → flags (system flags and keywords)."""
Contents = dict[str, dict[str, str]]
"""Folder name → Message-ID → SHA-256 of the message's :func:`content`."""


class Users:
    async def answer_async(self, request: sasl.NeedCredentials) -> sasl.CredentialsAnswer:
        if request.authcid == USER:
            if request.password is None:
                return SECRETS
            return sasl.PasswordVerdict(valid=request.password == PASSWORD)
        return sasl.NoSuchUser()


@contextlib.contextmanager
def server_thread(
    store: Store,
    *,
    ssl_context: ssl.SSLContext | None = None,
    starttls: bool = False,
    timeout: float = 30.0,
) -> Iterator[int]:
    """Serve ``store`` (user ``user``, password ``secret``) on 127.0.0.1, port 0, from
    a thread with its own event loop; yields the port and stops the server (and the
    thread) on the way out. Without ``ssl_context`` plain LOGIN is allowed; with it
    the sessions start in TLS, or with ``starttls`` offer STARTTLS and refuse logins
    before it (LOGINDISABLED)."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[int] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def main() -> None:
        async def stores(identity: str) -> Store:
            return store

        handler = StoreIMAPHandler(Users(), stores)
        options: dict[str, object] = {}
        if ssl_context is not None:
            options = {"ssl_context": ssl_context, "implicit_tls": not starttls}
        config = imap_config(allow_plaintext_login=ssl_context is None)
        try:
            async with IMAPServer(handler, config, limits=QUICK, **options) as server:  # type: ignore[arg-type]
                started.set_result(server.port)
                await stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
            raise

    def run() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(Exception):
            loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, name="imap-sync-server", daemon=True)
    thread.start()
    try:
        yield started.result(timeout)
    finally:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        assert not thread.is_alive(), "the IMAP server thread did not stop"


def message(folder: str, n: int, *, tag: str = "") -> bytes:
    """A small message whose Message-ID names its folder and number; some numbers get
    awkward contents, which must arrive unchanged (but for line ends): a 200 KB
    attachment, body lines starting with "From " and ">From " (mbox quoting), 8-bit
    UTF-8 in the header and body, LF line ends, no line end after the last line."""
    mid = message_id(folder, n, tag=tag)
    kind = n % 100
    header = (
        f"From: sender{n}@example.test\r\nTo: user@example.test\r\n"
        f"Subject: {folder} message {n}{tag}\r\nMessage-ID: {mid}\r\n"
        f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n"
    )
    body = f"Body of message {n} in {folder}{tag}.\r\n"
    if n % 250 == 3 and not tag:
        line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
        header += 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
        body = (
            f"--b\r\nContent-Type: text/plain\r\n\r\n{body}--b\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + line * 2600
            + "--b--\r\n"
        )
    elif kind == 6:
        body += "From the start of a line.\r\n>From quoted once.\r\n>>From twice.\r\nFrom\r\n"
    elif kind == 9:
        header = header.replace("Subject: ", "Subject: Grüße ")
        header += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        body += "Schöne Grüße, ½ €.\r\n"
    data = (header + "\r\n" + body).encode()
    if kind == 12:
        data = data.replace(b"\r\n", b"\n")
    elif kind == 15:
        data += b"No line end after this line."
    return data


def content(data: bytes) -> bytes:
    """A message as both sides must agree on it: LF line ends, without the headers a
    client may add to find the messages it uploaded (X-TUID, X-OfflineIMAP)."""
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    lines = [
        line
        for line in head.split(b"\n")
        if not line.lower().startswith((b"x-tuid:", b"x-offlineimap:"))
    ]
    return b"\n".join(lines) + sep + body


def message_id(folder: str, n: int, *, tag: str = "") -> str:
    safe = re.sub(r"[^A-Za-z0-9]", "-", folder.encode("ascii", "backslashreplace").decode())
    return f"<{safe}.{n}{tag}@example.test>"


def flags_for(n: int) -> frozenset[str]:
    """The flags message ``n`` starts with: most seen, some flagged, answered or draft,
    some with keywords, a few deleted (but not expunged: the clients must carry
    \\Deleted as a flag)."""
    flags = set()
    if n % 19 == 0:
        flags.add("\\Draft")
    if n % 13 == 0:
        flags.add("Work")
    if n % 17 == 0:
        flags.add("$Forwarded")
    if n % 3:
        flags.add("\\Seen")
    if n % 7 == 0:
        flags.add("\\Flagged")
    if n % 11 == 0:
        flags.add("\\Answered")
    if n % 97 == 0:
        flags.add("\\Deleted")
    return frozenset(flags)


ARRIVAL = datetime.datetime(
    2024, 3, 1, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
)


def arrival(n: int) -> datetime.datetime:
    """Message ``n``'s INTERNALDATE (whole seconds, in +01:00)."""
    return ARRIVAL + datetime.timedelta(minutes=n, seconds=n % 60)


@dataclass(frozen=True)
class Account:
    folders: dict[str, int]
    """Folder name → messages made in it."""
    expunged: int
    """Messages expunged (in all folders) after they were made."""


def populate(store: Store, folders: dict[str, int]) -> Account:
    """Fill ``store``: ``folders`` maps each name to its message count; each folder
    loses every 50th message to an expunge afterwards (so that its UIDs have gaps)."""
    expunged = 0
    for name, count in folders.items():
        if name != "INBOX":
            store.create_folder(name)
            store.subscribe(name)
        with store.folder(name) as folder:
            uids = []
            for n in range(1, count + 1):
                flags = flags_for(n)
                if n % 50 == 0:
                    flags = flags | {"\\Deleted"}
                data = message(name, n)
                when = arrival(n)
                uids.append(folder.append_bytes(data, flags=flags, internaldate=when).uid)
            gone = folder.expunge([uid for n, uid in enumerate(uids, 1) if n % 50 == 0])
            expunged += len(gone)
    return Account(folders=dict(folders), expunged=expunged)


def expected(account: Account) -> State:
    """The state ``populate`` made."""
    return {
        name: {message_id(name, n): flags_for(n) for n in range(1, count + 1) if n % 50}
        for name, count in account.folders.items()
    }


def expected_contents(account: Account) -> Contents:
    """The digests of the messages ``populate`` made."""
    return {
        name: {message_id(name, n): digest(message(name, n)) for n in range(1, count + 1) if n % 50}
        for name, count in account.folders.items()
    }


_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def _mid(data: bytes) -> str:
    header = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    value = _PARSER.parsebytes(header).get("Message-ID")
    assert value is not None, header
    return str(value).strip()


def digest(data: bytes) -> str:
    return hashlib.sha256(content(data)).hexdigest()


def server_state(store: Store, contents: Contents | None = None) -> State:
    """Each folder of ``store``: Message-ID → flags; and
    into ``contents`` if given, each message's digest."""
    state: State = {}
    for info in store.list_folders():
        if "\\Noselect" in info.attributes or "\\NonExistent" in info.attributes:
            continue
        with store.folder(info.name) as folder:
            folder.refresh()
            box: dict[str, frozenset[str]] = {}
            digests = {}
            for meta in folder.messages():
                data = folder.read_message(meta.uid)
                assert len(data) == meta.size, f"{info.name} UID {meta.uid}: size"
                mid = _mid(data)
                assert mid not in box, f"{mid} twice in {info.name} on the server"
                box[mid] = frozenset(meta.flags - {"\\Recent"})
                digests[mid] = digest(data)
            state[info.name] = box
            if contents is not None:
                contents[info.name] = digests
    return state


def server_uids(store: Store) -> dict[str, dict[int, tuple[frozenset[str], int]]]:
    """Each folder: UID → (flags, MODSEQ); two equal results mean nothing changed."""
    out: dict[str, dict[int, tuple[frozenset[str], int]]] = {}
    for info in store.list_folders():
        if "\\Noselect" in info.attributes or "\\NonExistent" in info.attributes:
            continue
        with store.folder(info.name) as folder:
            folder.refresh()
            out[info.name] = {m.uid: (m.flags, m.modseq) for m in folder.messages()}
    return out


def maildir_flags(filename: str) -> frozenset[str]:
    """The flags in a Maildir file name's info part (``...:2,FS``)."""
    if ":2," not in filename:
        return frozenset()
    letters = filename.rsplit(":2,", 1)[1]
    return frozenset(LETTERS[c] for c in letters if c in LETTERS)


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def maildir_folder(path: Path, digests: dict[str, str] | None = None) -> dict[str, frozenset[str]]:
    """One local Maildir folder: Message-ID → flags (and → digest into ``digests``)."""
    box: dict[str, frozenset[str]] = {}
    for sub in ("new", "cur"):
        for entry in os.scandir(path / sub):
            if entry.name.startswith("."):
                continue
            with open(entry.path, "rb") as f:
                data = f.read()
            mid = _mid(data)
            assert mid not in box, f"{mid} twice in {path}"
            box[mid] = maildir_flags(entry.name)
            if digests is not None:
                digests[mid] = digest(data)
    return box


def maildir_files(root: Path) -> dict[str, tuple[int, str]]:
    """Every message file under ``root`` (relative path → (inode, name)), to tell
    that a run moved, renamed or wrote nothing."""
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) not in ("cur", "new"):
            continue
        for name in files:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = (os.stat(path).st_ino, name)
    return out


def find_message(folder: Path, mid: str) -> Path:
    """The file of message ``mid`` in a local Maildir folder."""
    for sub in ("cur", "new"):
        for entry in os.scandir(folder / sub):
            with open(entry.path, "rb") as f:
                if _mid(f.read(4096)) == mid:
                    return Path(entry.path)
    raise KeyError(mid)


def set_local_flags(path: Path, flags: frozenset[str]) -> Path:
    """Rename a local message file so that its info part says ``flags`` (moving it
    to cur/ as a mail reader does); returns the new path."""
    letters = "".join(sorted(k for k, v in LETTERS.items() if v in flags))
    assert len(letters) == len(flags), flags
    base = path.name.split(":2,", 1)[0]
    new = path.parent.parent / "cur" / f"{base}:2,{letters}"
    os.rename(path, new)
    return new


_local_counter = 0


def add_local(folder: Path, data: bytes, flags: frozenset[str] = frozenset()) -> Path:
    """Deliver a message into a local Maildir folder as a mail reader would."""
    global _local_counter
    _local_counter += 1
    name = f"1700000000.M{_local_counter}P{os.getpid()}.testhost"
    tmp = folder / "tmp" / name
    tmp.write_bytes(data)
    letters = "".join(sorted(k for k, v in LETTERS.items() if v in flags))
    target = folder / "cur" / f"{name}:2,{letters}"
    os.rename(tmp, target)
    return target


def local_state(
    root: Path, *, mutf7_names: bool = False, contents: Contents | None = None
) -> State:
    """Each Maildir folder under ``root`` (nested as directories, ``Archive/2024``):
    Message-ID → flags; ``mutf7_names`` when the client names the folders in
    modified UTF-7 (mbsync does)."""
    state: State = {}
    for dirpath, dirs, _files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("cur", "new", "tmp") and not d.startswith(".")]
        path = Path(dirpath)
        if path == root or not is_maildir(path):
            continue
        name = path.relative_to(root).as_posix()
        if mutf7_names:
            name = decode_mutf7(name)
        digests: dict[str, str] = {}
        state[name] = maildir_folder(path, digests)
        if contents is not None:
            contents[name] = digests
    return state


Dates = dict[str, dict[str, float]]
"""Folder name → Message-ID → a time stamp (INTERNALDATE or a file's mtime)."""


def server_dates(store: Store) -> Dates:
    """Each message's INTERNALDATE on the server."""
    out: Dates = {}
    for info in store.list_folders():
        if "\\Noselect" in info.attributes or "\\NonExistent" in info.attributes:
            continue
        with store.folder(info.name) as folder:
            folder.refresh()
            out[info.name] = {
                _mid(folder.read_message(m.uid)): m.internaldate.timestamp()
                for m in folder.messages()
            }
    return out


def local_dates(root: Path, *, mutf7_names: bool = False) -> Dates:
    """Each local message file's mtime (where the clients keep INTERNALDATE)."""
    out: Dates = {}
    for dirpath, dirs, _files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("cur", "new", "tmp") and not d.startswith(".")]
        path = Path(dirpath)
        if path == root or not is_maildir(path):
            continue
        name = path.relative_to(root).as_posix()
        box = out.setdefault(decode_mutf7(name) if mutf7_names else name, {})
        for sub in ("cur", "new"):
            for entry in os.scandir(path / sub):
                with open(entry.path, "rb") as f:
                    box[_mid(f.read(4096))] = entry.stat().st_mtime
    return out


def change_flags_behind(store: Store, mid: str, add: str) -> None:
    """As another program would (a mail reader on the server's Maildir): add flag
    letter ``add`` to the info part of INBOX message ``mid``'s file in cur/."""
    root = Path(store.root)  # type: ignore[attr-defined]
    for entry in os.scandir(root / "cur"):
        with open(entry.path, "rb") as f:
            if _mid(f.read(4096)) != mid:
                continue
        base, _, info = entry.name.partition(":2,")
        os.rename(entry.path, root / "cur" / f"{base}:2,{''.join(sorted(set(info + add)))}")
        return
    raise KeyError(mid)


_UNTAGGED = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH|RECENT)\b(.*)")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


class Observer:
    """A mail reader left in IDLE on INBOX (plain sockets, no TLS) while a sync
    client works: it applies every EXISTS, EXPUNGE and FETCH it is told to its view
    of the mailbox (sequence number → UID, flags) and, at :meth:`finish`, checks that
    view against a fresh FETCH 1:* (the RFC 9051 §7.4 and §7.5 rules: sequence
    numbers and UIDs agree, UIDs ascend) and returns it."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.errors: list[str] = []
        self.view: list[list[Any]] = []
        self.told: collections.Counter[str] = collections.Counter()
        """How many EXISTS, EXPUNGE and FETCH responses came during IDLE."""
        self._idling = False
        self._sock = socket.create_connection(("127.0.0.1", port), timeout)
        self._buffer = b""
        self._line()  # the greeting
        self._command(b"a1", f"LOGIN {USER} {PASSWORD}".encode())
        self._command(b"a2", b"SELECT INBOX")
        self._command(b"a3", b"FETCH 1:* (UID FLAGS)")
        self._check_view("after SELECT")
        self._sock.sendall(b"a4 IDLE\r\n")
        while not (line := self._line()).startswith(b"+"):
            self._apply(line)
        self._idling = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._idle, name="imap-observer", daemon=True)
        self._thread.start()

    def _line(self) -> bytes:
        """The next line (a timeout loses nothing: what came stays in the buffer)."""
        while b"\r\n" not in self._buffer:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the observer's connection")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _command(self, tag: bytes, command: bytes) -> None:
        self._sock.sendall(tag + b" " + command + b"\r\n")
        while not (line := self._line()).startswith(tag + b" "):
            self._apply(line)
        assert line.startswith(tag + b" OK"), line

    def _apply(self, line: bytes) -> None:
        match = _UNTAGGED.match(line)
        if match is None:
            return
        n, kind, rest = int(match[1]), match[2], match[3]
        if self._idling:
            self.told[kind.decode()] += 1
        if kind == b"EXISTS":
            if n < len(self.view):
                self.errors.append(f"EXISTS {n} below {len(self.view)} without EXPUNGE")
            self.view += [[None, None] for _ in range(n - len(self.view))]
        elif kind == b"EXPUNGE":
            if not 1 <= n <= len(self.view):
                self.errors.append(f"EXPUNGE {n} of {len(self.view)} messages")
            else:
                del self.view[n - 1]
        elif kind == b"FETCH":
            if not 1 <= n <= len(self.view):
                self.errors.append(f"FETCH {n} of {len(self.view)} messages")
                return
            entry = self.view[n - 1]
            if (uid := _UID.search(rest)) is not None:
                if entry[0] is not None and entry[0] != int(uid[1]):
                    self.errors.append(f"message {n} was UID {entry[0]}, now UID {uid[1]!r}")
                entry[0] = int(uid[1])
            if (flags := _FLAGS.search(rest)) is not None:
                entry[1] = frozenset(f.decode() for f in flags[1].split()) - {"\\Recent"}

    def _check_view(self, when: str) -> None:
        uids = [entry[0] for entry in self.view]
        if None in uids:
            self.errors.append(f"{when}: a message without its UID after FETCH 1:*")
        elif uids != sorted(set(uids)):
            self.errors.append(f"{when}: UIDs do not ascend: {uids[:20]}")

    def _idle(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                line = self._line()
            except TimeoutError:
                continue
            except (OSError, ValueError) as error:
                self.errors.append(f"observer: {error!r}")
                return
            self._apply(line)

    def snapshot(self) -> list[tuple[Any, Any]]:
        return [(uid, flags) for uid, flags in self.view]

    def finish(self, quiet: float = 2.0, limit: float = 20.0) -> dict[int, frozenset[str]]:
        """Wait until the view has not changed for ``quiet`` seconds (at most
        ``limit``), end IDLE, refresh (NOOP, FETCH 1:*) and check that nothing was left
        untold: the refreshed view is the one IDLE had built. Returns it as UID →
        flags."""
        deadline = time.monotonic() + limit
        last, since = self.snapshot(), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            time.sleep(0.1)
            if (now := self.snapshot()) != last:
                last, since = now, time.monotonic()
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()
        told = self.snapshot()
        self._idling = False
        self._sock.settimeout(30)
        self._sock.sendall(b"DONE\r\n")
        while not (line := self._line()).startswith(b"a4 "):
            self._apply(line)
        assert line.startswith(b"a4 OK"), line
        self._command(b"a5", b"NOOP")
        self._command(b"a6", b"FETCH 1:* (UID FLAGS)")
        self._check_view("after the sync")
        # A message told by EXISTS alone has no UID or flags yet (the client FETCHes
        # them): only what IDLE told must agree.
        now = self.snapshot()
        lost = [(a, b) for a, b in zip(told, now, strict=False) if a != (None, None) and a != b]
        if lost or len(told) != len(now):
            self.errors.append(
                f"IDLE left changes untold ({len(told)} then {len(self.view)} messages): {lost[:5]}"
            )
        self._sock.sendall(b"a7 LOGOUT\r\n")
        self._sock.close()
        return {entry[0]: entry[1] for entry in self.view}


@dataclass(frozen=True)
class Mark:
    """A folder as a QRESYNC client last saw it (RFC 7162 §3.2.5)."""

    uidvalidity: int
    highestmodseq: int
    messages: dict[int, frozenset[str]]


def marks(store: Store) -> dict[str, Mark]:
    """Every folder's mark, read from the store."""
    out = {}
    for name, messages in server_uids(store).items():
        status = store.status(name)
        flags = {uid: fl - {"\\Recent"} for uid, (fl, _modseq) in messages.items()}
        out[name] = Mark(status.uidvalidity, status.highestmodseq, flags)
    return out


def _uid_set(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition(":")
        low, high = sorted((int(first), int(last or first)))
        out.update(range(low, high + 1))
    return out


_VANISHED = re.compile(rb"\* VANISHED \(EARLIER\) ([0-9:,]+)$")
_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")


def qresync_check(port: int, before: dict[str, Mark]) -> list[str]:
    """Select each folder of ``before`` as a QRESYNC client that last saw it so
    (``SELECT name (QRESYNC (uidvalidity modseq))``) and check what the server says
    changed against a full ``UID FETCH 1:*`` afterwards: every expunged UID in
    VANISHED (EARLIER) and none that still exists; every message new or with other
    flags in the FETCH responses, with a MODSEQ above the mark; nothing above the
    mark left out; HIGHESTMODSEQ not below any MODSEQ."""
    errors: list[str] = []
    with socket.create_connection(("127.0.0.1", port), 30) as sock:
        buffer = b""

        def command(tag: str, text: str) -> list[bytes]:
            nonlocal buffer
            sock.sendall(f"{tag} {text}\r\n".encode())
            lines = []
            while True:
                while b"\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    buffer += data
                line, buffer = buffer.split(b"\r\n", 1)
                if line.startswith(tag.encode() + b" "):
                    assert line.startswith(tag.encode() + b" OK"), (text, line)
                    return lines
                lines.append(line)

        while b"\r\n" not in buffer:
            buffer += sock.recv(65536)
        buffer = buffer.split(b"\r\n", 1)[1]
        command("q1", f"LOGIN {USER} {PASSWORD}")
        command("q2", "ENABLE QRESYNC")
        for n, (name, mark) in enumerate(before.items()):
            mailbox = encode_mutf7(name)
            told = command(
                f"s{n}", f'SELECT "{mailbox}" (QRESYNC ({mark.uidvalidity} {mark.highestmodseq}))'
            )
            vanished: set[int] = set()
            fetched: dict[int, tuple[frozenset[str], int]] = {}
            highest = 0
            for line in told:
                if (match := _VANISHED.match(line)) is not None:
                    vanished |= _uid_set(match[1].decode())
                elif (match := _HIGHEST.search(line)) is not None:
                    highest = int(match[1])
                elif (uid := _UID.search(line)) is not None and b" FETCH " in line:
                    flags, modseq = _FLAGS.search(line), _MODSEQ.search(line)
                    assert flags is not None and modseq is not None, line
                    words = frozenset(f.decode() for f in flags[1].split()) - {"\\Recent"}
                    fetched[int(uid[1])] = (words, int(modseq[1]))
            current: dict[int, tuple[frozenset[str], int]] = {}
            for line in command(f"f{n}", "UID FETCH 1:* (FLAGS MODSEQ)"):
                uid, flags, modseq = _UID.search(line), _FLAGS.search(line), _MODSEQ.search(line)
                if uid is None or flags is None or modseq is None:
                    continue
                words = frozenset(f.decode() for f in flags[1].split()) - {"\\Recent"}
                current[int(uid[1])] = (words, int(modseq[1]))
            expunged = set(mark.messages) - set(current)
            changed = {
                uid for uid, (flags, _) in current.items() if mark.messages.get(uid) != flags
            }
            above = {uid for uid, (_, modseq) in current.items() if modseq > mark.highestmodseq}
            where = f"{name} since MODSEQ {mark.highestmodseq}"
            if not expunged <= vanished:
                errors.append(f"{where}: VANISHED misses {sorted(expunged - vanished)[:10]}")
            if vanished & set(current):
                errors.append(
                    f"{where}: VANISHED has live UIDs {sorted(vanished & set(current))[:10]}"
                )
            if not changed <= above:
                errors.append(
                    f"{where}: changed without a new MODSEQ: {sorted(changed - above)[:10]}"
                )
            if set(fetched) != above:
                errors.append(
                    f"{where}: FETCH told {sorted(fetched)[:10]}, "
                    f"MODSEQ above the mark: {sorted(above)[:10]}"
                )
            for uid, value in fetched.items():
                if current.get(uid) != value:
                    errors.append(f"{where}: UID {uid} told {value}, is {current.get(uid)}")
            if current and highest < max(modseq for _, modseq in current.values()):
                errors.append(f"{where}: HIGHESTMODSEQ {highest} below a message's MODSEQ")
        command("q9", "LOGOUT")
    return errors

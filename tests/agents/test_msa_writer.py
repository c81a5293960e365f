"""``MaildirDelivery(writer="process")`` and its writer process
(``mailagents/agents/_writer.py``): framing, durable deliveries, failures, restart,
back-pressure, close."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailagents.agents import _writer
from mailagents.agents.msa import MSA, MaildirDelivery, Submission
from mailagents.aio import make_self_signed
from mailagents.delivery import Message
from mailagents.smtp import Envelope, Mailbox, Recipient
from mailagents.smtp import Path as SMTPPath
from mailagents.smtp._params import MailParameters
from mailagents.userdb import PasswordFile

MESSAGE = b"Subject: hi\r\n\r\nline one\r\nline two\r\n"
ON_DISK = MESSAGE.replace(b"\r\n", b"\n")


def locations(results: Any) -> list[str | None]:
    """Where each recipient's copy went (the delivery's per-recipient results)."""
    return [r.location for r in results]


def submission(*locals_: str, message: bytes = MESSAGE) -> Submission:
    envelope = Envelope(
        mail_from=SMTPPath(Mailbox("a", "example.test")),
        mail_parameters=MailParameters(),
        recipients=tuple(
            Recipient(path=SMTPPath(Mailbox(local, "example.test"))) for local in locals_
        ),
        size=len(message),
    )
    return Submission(
        id="id1", identity="a", envelope=envelope, message=Message.from_bytes(message)
    )


def new_files(root: Path, user: str, *, tmp_empty: bool = True) -> list[bytes]:
    """The messages delivered to ``user`` (new/ and cur/: opening the store's INBOX, as
    the thread path does, moves new/ to cur/); tmp/ must be empty."""
    found = []
    for sub in ("new", "cur"):
        directory = root / user / sub
        if directory.exists():
            found += [(directory / name).read_bytes() for name in os.listdir(directory)]
    tmp = root / user / "tmp"
    assert not tmp_empty or not tmp.is_dir() or os.listdir(tmp) == []
    return sorted(found)


def run(coro: Any, timeout: float = 10) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers signal 0: look at its state.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def delivery(tmp_path: Path, **options: Any) -> MaildirDelivery:
    options.setdefault("fsync", False)
    return MaildirDelivery(str(tmp_path / "{local}"), writer="process", **options)


# --- framing ----------------------------------------------------------------------------

REQUESTS = [
    (1, b"/tmp/a", b""),
    (2**64 - 1, b"/x" * 100, b"hello\r\n"),
    (7, b"/m", bytes(range(256)) * 40),
]


def request_bytes() -> bytes:
    return b"".join(b"".join(_writer.encode_request(*r)) for r in REQUESTS)


@pytest.mark.parametrize("step", [None, 1, 7])
def test_request_frames_whole_and_in_pieces(step: int | None) -> None:
    data = request_bytes()
    decoder = _writer.RequestDecoder(max_message=1 << 20)
    got = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        decoder.feed(piece)
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    assert got == REQUESTS
    assert decoder.buffered == 0


@pytest.mark.parametrize("step", [None, 1])
def test_ack_frames_whole_and_in_pieces(step: int | None) -> None:
    acks = [(1, None), (2, "OSError: [Errno 20] Not a directory: 'x'"), (3, "é" * 2000)]
    data = b"".join(_writer.encode_ack(mid, error) for mid, error in acks)
    decoder = _writer.AckDecoder()
    got = []
    pieces = [data] if step is None else [data[i : i + 1] for i in range(len(data))]
    for piece in pieces:
        decoder.feed(piece)
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    assert got[:2] == acks[:2]
    assert got[2][0] == 3 and got[2][1] is not None
    assert len(got[2][1].encode()) <= _writer.MAX_ERROR  # truncated (maybe mid-character)


def test_oversized_frames_are_refused_from_the_header_alone() -> None:
    decoder = _writer.RequestDecoder(max_message=10)
    head, _ = _writer.encode_request(1, b"/d", b"x" * 11)
    decoder.feed(head[: _writer.REQUEST.size])
    with pytest.raises(_writer.FrameError):
        decoder.next_frame()
    decoder = _writer.RequestDecoder(max_message=10)
    decoder.feed(_writer.REQUEST.pack(1, _writer.MAX_DIRECTORY + 1, 0))
    with pytest.raises(_writer.FrameError):
        decoder.next_frame()
    decoder = _writer.RequestDecoder(max_message=10)
    decoder.feed(_writer.REQUEST.pack(1, 0, 0))
    with pytest.raises(_writer.FrameError):
        decoder.next_frame()
    acks = _writer.AckDecoder()
    acks.feed(_writer.ACK.pack(1, 2, 0))
    with pytest.raises(_writer.FrameError):
        acks.next_frame()
    with pytest.raises(ValueError):
        _writer.encode_request(1, b"/" * (_writer.MAX_DIRECTORY + 1), b"")


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    for decoder in (_writer.RequestDecoder(max_message=64), _writer.AckDecoder()):
        decoder.feed(data)
        try:
            while decoder.next_frame() is not None:
                pass
        except _writer.FrameError:
            pass


def test_serve_loop_over_a_socketpair(tmp_path: Path) -> None:
    """The writer's loop in a thread: batches, per-message errors, end of stream."""
    ours, theirs = socket.socketpair()
    thread = threading.Thread(
        target=_writer.serve, args=(theirs,), kwargs={"max_message": 1 << 20, "fsync": False}
    )
    thread.start()
    try:
        (tmp_path / "file").write_bytes(b"")
        good = os.fsencode(tmp_path / "box")
        bad = os.fsencode(tmp_path / "file")
        data = b""
        for mid in range(40):
            data += b"".join(_writer.encode_request(mid, bad if mid % 10 == 3 else good, MESSAGE))
        for i in range(0, len(data), 1000):
            ours.sendall(data[i : i + 1000])
        ours.shutdown(socket.SHUT_WR)
        ours.settimeout(5)
        decoder = _writer.AckDecoder()
        acks: dict[int, str | None] = {}
        while len(acks) < 40:
            chunk = ours.recv(65536)
            assert chunk
            decoder.feed(chunk)
            while (ack := decoder.next_frame()) is not None:
                acks[ack[0]] = ack[1]
        thread.join(5)
        assert not thread.is_alive()
    finally:
        ours.close()
        theirs.close()
    failed = sorted(mid for mid, error in acks.items() if error is not None)
    assert failed == [3, 13, 23, 33]
    assert new_files(tmp_path, "box") == [ON_DISK] * 36


# --- deliveries through the writer process ----------------------------------------------


def test_single_recipient_deliveries_land_through_the_writer(tmp_path: Path) -> None:
    mda = delivery(tmp_path)

    async def main() -> tuple[list[str], int | None]:
        try:
            result = await mda(submission("alice"))
            pid = mda.writer_pid()
            assert pid is not None and pid != os.getpid()
            return result, pid
        finally:
            await mda.aclose(5)

    result, pid = run(main())
    assert locations(result) == [str(tmp_path / "alice")]
    assert new_files(tmp_path, "alice") == [ON_DISK]
    assert pid is not None and gone(pid)
    assert not mda._inboxes  # nothing opened in this process


def test_concurrent_deliveries_to_several_maildirs(tmp_path: Path) -> None:
    mda = delivery(tmp_path)
    users = ["u0", "u1", "u2", "u3"]

    async def main() -> None:
        try:
            await asyncio.gather(
                *(
                    mda(submission(users[i % 4], message=MESSAGE + b"%d\r\n" % i))
                    for i in range(200)
                )
            )
            # Several recipients: the thread path, beside the writer.
            await mda(submission("u0", "u1"))
        finally:
            await mda.aclose(5)

    run(main())
    for n, user in enumerate(users):
        expected = sorted(
            [ON_DISK + b"%d\n" % i for i in range(n, 200, 4)]
            + ([ON_DISK] if user in ("u0", "u1") else [])
        )
        assert new_files(tmp_path, user) == expected


def test_failing_append_is_a_per_message_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a Maildir")
    mda = delivery(tmp_path)

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(
                mda(submission("alice")),
                mda(submission("file")),
                mda(submission("bob")),
                return_exceptions=True,
            )
        finally:
            await mda.aclose(5)

    outcomes = run(main())
    assert locations(outcomes[0]) == [str(tmp_path / "alice")]
    assert locations(outcomes[2]) == [str(tmp_path / "bob")]
    assert isinstance(outcomes[1], _writer.WriterError)
    assert "could not deliver" in str(outcomes[1])
    assert new_files(tmp_path, "alice") == new_files(tmp_path, "bob") == [ON_DISK]


def test_message_over_the_limit_is_refused_before_sending(tmp_path: Path) -> None:
    mda = delivery(tmp_path, max_message_size=100)

    async def main() -> None:
        try:
            with pytest.raises(_writer.WriterError, match="exceeds"):
                await mda(submission("alice", message=b"x" * 101))
            await mda(submission("alice"))
        finally:
            await mda.aclose(5)

    run(main())
    assert new_files(tmp_path, "alice") == [ON_DISK]


def test_large_message_round_trips_under_back_pressure(tmp_path: Path) -> None:
    big = b"Subject: big\r\n\r\n" + (b"0123456789" * 7 + b"\r\n") * 280_000  # ~20 MB
    mda = delivery(tmp_path)

    async def main() -> None:
        try:
            await asyncio.gather(
                mda(submission("alice", message=big)),
                mda(submission("alice", message=big)),
                mda(submission("bob")),
            )
        finally:
            await mda.aclose(5)

    run(main(), timeout=20)
    assert len(big) > 20_000_000
    assert new_files(tmp_path, "alice") == [big.replace(b"\r\n", b"\n")] * 2
    assert new_files(tmp_path, "bob") == [ON_DISK]


def test_writer_killed_mid_stream_fails_pending_and_restarts(tmp_path: Path) -> None:
    mda = delivery(tmp_path)

    async def main() -> tuple[list[Any], int, int]:
        try:
            await mda(submission("alice"))  # started
            first = mda.writer_pid()
            assert first is not None
            tasks = [
                asyncio.ensure_future(mda(submission("alice", message=MESSAGE + b"%d\r\n" % i)))
                for i in range(300)
            ]
            # Let some be acknowledged, then kill the writer while others wait.
            while sum(t.done() for t in tasks) < 20:
                await asyncio.sleep(0.001)
            os.kill(first, signal.SIGKILL)
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            assert any(isinstance(o, _writer.WriterError) for o in outcomes)
            await mda(submission("alice", message=b"after\r\n"))  # a new writer
            second = mda.writer_pid()
            assert second is not None and second != first
            return outcomes, first, second
        finally:
            await mda.aclose(5)

    outcomes, first, second = run(main())
    acked = {MESSAGE.replace(b"\r\n", b"\n") + b"%d\n" % i for i, o in enumerate(outcomes)
             if isinstance(o, list)}
    # (a SIGKILL may leave files in tmp/, never acknowledged: a Maildir reader ignores
    # them and a cleaner removes them after 36 hours)
    on_disk = set(new_files(tmp_path, "alice", tmp_empty=False))
    assert acked <= on_disk  # nothing acknowledged is missing
    assert ON_DISK in on_disk and b"after\n" in on_disk
    assert len(acked) >= 20
    assert gone(first) and gone(second)


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone altogether (not even a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_hung_writer_is_killed_after_ack_timeout_and_replaced(tmp_path: Path) -> None:
    mda = delivery(tmp_path, ack_timeout=0.5)

    async def main() -> tuple[float, int, int]:
        first: int | None = None
        try:
            await mda(submission("alice"))  # started
            first = mda.writer_pid()
            assert first is not None
            os.kill(first, signal.SIGSTOP)  # alive, but answers nothing
            for _ in range(200):
                if process_state(first) == "T":
                    break
                await asyncio.sleep(0.01)
            assert process_state(first) == "T"
            started = time.monotonic()
            with pytest.raises(_writer.WriterError, match="hung"):
                await asyncio.wait_for(mda(submission("alice", message=b"lost\r\n")), 10)
            waited = time.monotonic() - started
            for _ in range(200):  # killed, then reaped by the child watcher
                if reaped(first):
                    break
                await asyncio.sleep(0.01)
            assert reaped(first)
            await mda(submission("alice", message=b"after\r\n"))  # a new writer
            second = mda.writer_pid()
            assert second is not None and second != first
            return waited, first, second
        finally:
            if first is not None and not reaped(first):
                os.kill(first, signal.SIGKILL)  # the test failed: leave nothing stopped
            await mda.aclose(5)

    waited, first, second = run(main(), timeout=30)
    assert 0.45 <= waited < 10
    assert gone(first) and gone(second)
    # The request the hung writer never read is not on disk; the next one is.
    assert new_files(tmp_path, "alice") == sorted([ON_DISK, b"after\n"])


def test_ack_timeout_counts_from_the_oldest_pending_delivery(tmp_path: Path) -> None:
    # A writer that keeps acknowledging is never taken for hung, however long it runs
    # with deliveries always in flight (the timer re-arms for the oldest one's deadline).
    # ack_timeout is well above one loaded batch, and the run lasts three of them.
    mda = delivery(tmp_path, ack_timeout=1.0)

    async def main() -> tuple[int, int | None, int]:
        try:
            await mda(submission("alice"))
            pid = mda.writer_pid()
            assert pid is not None
            end = time.monotonic() + 3.0
            count = 0

            async def worker() -> None:
                nonlocal count
                while time.monotonic() < end:
                    await mda(submission("bob"))
                    count += 1

            await asyncio.gather(*(worker() for _ in range(4)))
            return pid, mda.writer_pid(), count
        finally:
            await mda.aclose(5)

    pid, still, count = run(main(), timeout=30)
    assert still == pid
    assert new_files(tmp_path, "bob") == [ON_DISK] * count


def test_ack_timeout_fails_every_pending_delivery(tmp_path: Path) -> None:
    mda = delivery(tmp_path, ack_timeout=1.0)

    async def main() -> list[Any]:
        first: int | None = None
        try:
            await mda(submission("alice"))
            first = mda.writer_pid()
            assert first is not None
            os.kill(first, signal.SIGSTOP)
            tasks = [asyncio.ensure_future(mda(submission("bob"))) for _ in range(5)]
            await asyncio.sleep(0.2)  # later ones: they fail with the oldest
            tasks += [asyncio.ensure_future(mda(submission("carol"))) for _ in range(5)]
            done, _ = await asyncio.wait(tasks, timeout=10)
            assert len(done) == len(tasks)
            return [t.exception() for t in tasks]
        finally:
            if first is not None and not reaped(first):
                os.kill(first, signal.SIGKILL)
            await mda.aclose(5)

    errors = run(main(), timeout=30)
    assert all(isinstance(e, _writer.WriterError) for e in errors)


def test_a_slow_start_is_not_taken_for_a_hung_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (issue 10): the ack deadline ran during the writer's start-up, so on a
    # loaded machine the first delivery through a new writer failed as "hung". Here the
    # start-up takes longer than ack_timeout on purpose; the deadline counts from the
    # ready frame.
    monkeypatch.setattr(_writer, "_ENTRY", "import time; time.sleep(1.0); " + _writer._ENTRY)
    mda = delivery(tmp_path, ack_timeout=0.5)

    async def main() -> tuple[int | None, int | None]:
        try:
            await mda(submission("alice"))
            first = mda.writer_pid()
            await mda(submission("bob"))
            return first, mda.writer_pid()
        finally:
            await mda.aclose(5)

    first, second = run(main(), timeout=60)
    assert first is not None and second == first
    assert new_files(tmp_path, "alice") == new_files(tmp_path, "bob") == [ON_DISK]


def test_a_writer_never_ready_is_killed_after_start_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that never sends its ready frame (here: it never even runs the writer).
    monkeypatch.setattr(_writer, "_ENTRY", "import time; time.sleep(120)")
    mda = delivery(tmp_path, start_timeout=1.0)

    async def main() -> tuple[str, int | None]:
        try:
            with pytest.raises(_writer.WriterError, match="not ready within 1 s") as info:
                await mda(submission("alice"))
            stuck = mda.writer_pid()
            # Once the writer can start again, the next delivery gets a new one (with
            # time to start: a real writer may take more than 1 s on a loaded machine).
            monkeypatch.undo()
            mda._client().start_timeout = 60.0
            await mda(submission("alice", message=b"after\r\n"))
            return str(info.value), stuck
        finally:
            await mda.aclose(5)

    message, stuck = run(main(), timeout=60)
    assert "killed" in message and stuck is None
    assert new_files(tmp_path, "alice") == [b"after\n"]


def test_start_timeout_must_be_positive(tmp_path: Path) -> None:
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="start_timeout"):
            MaildirDelivery(str(tmp_path), writer="process", start_timeout=bad)


def test_cancelled_delivery_does_not_break_the_stream(tmp_path: Path) -> None:
    mda = delivery(tmp_path)

    async def main() -> None:
        try:
            task = asyncio.ensure_future(mda(submission("alice")))
            others = [asyncio.ensure_future(mda(submission("bob"))) for _ in range(5)]
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(*others)
            await mda(submission("carol"))
        finally:
            await mda.aclose(5)

    run(main())
    assert new_files(tmp_path, "bob") == [ON_DISK] * 5
    assert new_files(tmp_path, "carol") == [ON_DISK]


def test_writer_that_cannot_start_fails_with_back_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mda = delivery(tmp_path)
    monkeypatch.setattr(_writer.sys, "executable", str(tmp_path / "no-such-python"))

    async def main() -> float:
        try:
            with pytest.raises(_writer.WriterError, match="could not start"):
                await mda(submission("alice"))
            started = time.monotonic()
            with pytest.raises(_writer.WriterError):
                await mda(submission("alice"))
            return time.monotonic() - started
        finally:
            await mda.aclose(5)

    assert run(main()) >= 0.04  # waited for the back-off


def test_close_stops_the_writer(tmp_path: Path) -> None:
    mda = delivery(tmp_path)

    async def main() -> int:
        await mda(submission("alice"))
        pid = mda.writer_pid()
        assert pid is not None and not gone(pid)
        mda.close()  # the blunt one: SIGTERM
        for _ in range(300):
            if gone(pid):
                break
            await asyncio.sleep(0.01)
        await mda.aclose(5)
        return pid

    pid = run(main())
    assert gone(pid)


def test_bad_writer_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MaildirDelivery(str(tmp_path), writer="fork")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MaildirDelivery(str(tmp_path), writer="process", max_message_size=0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            MaildirDelivery(str(tmp_path), writer="process", ack_timeout=bad)


# --- through the MSA ----------------------------------------------------------------------


def test_msa_over_smtplib_with_the_writer_process(tmp_path: Path) -> None:
    cert = make_self_signed(["localhost"])
    users = PasswordFile(tmp_path / "users", scrypt_n=2**8)
    users.set_password("alice@example.test", "secret one")
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "bob@example.test").write_bytes(b"a file, not a Maildir")
    deliver = MaildirDelivery(mail / "{user}", writer="process", fsync=False)
    msa = MSA(
        "mx.example.test",
        users,
        local_domains={"example.test"},
        ssl_context=cert.server_context(),
        deliver=deliver,
    )
    text = "From: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", msa.submission_port, timeout=5) as smtp:
            smtp.starttls(context=cert.client_context())
            smtp.login("alice@example.test", "secret one")
            assert smtp.sendmail("alice@example.test", ["alice@example.test"], text) == {}
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail("alice@example.test", ["bob@example.test"], text)
            assert failed.value.smtp_code == 451
            assert smtp.sendmail("alice@example.test", ["alice@example.test"], text) == {}

    async def main() -> int | None:
        try:
            async with msa:
                await msa.serve("127.0.0.1", 0, 0)
                await asyncio.to_thread(client)
                return deliver.writer_pid()
        finally:
            await deliver.aclose(5)

    try:
        pid = run(main(), timeout=20)
    finally:
        users.close()
    assert pid is not None and gone(pid)
    stored = new_files(mail, "alice@example.test")
    assert len(stored) == 2
    assert all(m.startswith(b"Received: ") and m.endswith(b"\n\nHello.\n") for m in stored)

"""Fixtures shared by the store tests: one ``store`` fixture parametrised over the
formats, so that the same behavioural suite runs against Maildir and mbox.

The store classes are imported lazily: while a format is being written, its tests skip
with a clear reason instead of breaking the collection of the whole suite.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailagents.store import Store

FORMATS = ["maildir", "mbox"]

_CLASSES = {
    "maildir": ("mailagents.store.maildir", "MaildirStore"),
    "mbox": ("mailagents.store.mbox", "MboxStore"),
}


def store_class(kind: str) -> type[Store]:
    """The store class of a format; skips the calling test if it is not importable."""
    module_name, class_name = _CLASSES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name} is not importable yet ({exc})")
    cls = getattr(module, class_name, None)
    if cls is None:
        pytest.skip(f"{module_name}.{class_name} does not exist yet")
    assert isinstance(cls, type) and issubclass(cls, Store)
    return cls


class _Made:
    """How a live store was made, so that reopen() can make it again."""

    def __init__(self, kind: str, root: str, kwargs: dict[str, Any]) -> None:
        self.kind = kind
        self.root = root
        self.kwargs = kwargs


_LIVE: dict[int, tuple[Store, _Made]] = {}


def open_store(kind: str, root: str | os.PathLike[str], **kwargs: Any) -> Store:
    """Construct a store of ``kind`` on ``root``."""
    store = store_class(kind)(root, **kwargs)
    _LIVE[id(store)] = (store, _Made(kind, os.fspath(root), kwargs))
    return store


def store_kind(store: Store) -> str:
    return _LIVE[id(store)][1].kind


def store_root(store: Store) -> Path:
    return Path(_LIVE[id(store)][1].root)


def reopen(store: Store) -> Store:
    """Close ``store`` and construct it again on the same path (persistence checks)."""
    _, made = _LIVE.pop(id(store))
    store.close()
    return open_store(made.kind, made.root, **made.kwargs)


def close_all(root: str | os.PathLike[str]) -> None:
    """Close every live store on ``root`` (fixture teardown)."""
    root = os.fspath(root)
    for key, (obj, made) in list(_LIVE.items()):
        if made.root == root:
            del _LIVE[key]
            obj.close()


@pytest.fixture(params=FORMATS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(kind: str, root: Path) -> Iterator[Store]:
    """A fresh store of each format in ``tmp_path/store``; closed at teardown, with any
    store that the test reopened on the same path."""
    s = open_store(kind, root)
    yield s
    close_all(root)


_FILLER = (
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    b"incididunt ut labore."
)


def make_message(
    subject: str = "Hello",
    body: bytes | str = b"Hi there.\r\n",
    *,
    size: int | None = None,
    sender: str = "alice@example.test",
    to: str = "bob@example.test",
) -> bytes:
    """A realistic RFC 5322 message with CRLF line ends.

    The body always carries the lines that mbox formats must quote and unquote: one
    beginning with ``From ``, one with ``>From `` and one with ``>>From ``, and one
    beginning with ``.`` (SMTP dot-stuffing's concern). With ``size`` the body is padded
    with ordinary text lines until the message is exactly ``size`` octets.
    """
    if isinstance(body, str):
        body = body.encode()
    head = (
        f"Return-Path: <{sender}>\r\n"
        f"Received: from client.example.test (client.example.test [192.0.2.1])\r\n"
        f"\tby mx.example.test with ESMTPS; Tue, 3 Mar 2026 10:00:00 +0000\r\n"
        f"From: Alice <{sender}>\r\n"
        f"To: Bob <{to}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Tue, 3 Mar 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{hashlib.sha1(subject.encode() + body).hexdigest()}@example.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
    ).encode()
    tricky = (
        b"From the desk of Alice: this line begins with From and a space.\r\n"
        b">From here it is quoted once.\r\n"
        b">>From here twice.\r\n"
        b".A line that begins with a dot.\r\n"
        b".\r\n"
        b"..\r\n"
    )
    message = head + body + tricky
    if size is not None:
        if size < len(message) + 2:
            raise ValueError(f"size {size} is below the minimum {len(message) + 2}")
        pad = size - len(message)
        lines = []
        while pad > 0:
            n = min(pad, len(_FILLER) + 2)
            if n == 1:  # cannot be a line of its own: lengthen the previous one
                lines[-1] = lines[-1][:-2] + b"x\r\n"
                break
            lines.append(_FILLER[: n - 2] + b"\r\n")
            pad -= n
        message += b"".join(lines)
        assert len(message) == size, (len(message), size)
    return message


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def chunks(data: bytes, *sizes: int) -> list[bytes]:
    """Cut ``data`` into pieces of the given sizes (cycled), the rest last."""
    out = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)] if sizes else len(data)
        out.append(data[i : i + n])
        i += n
        k += 1
    return out

"""Pull new mail from a POP3 account into a Maildir, the way fetchmail does.

    POP3_PASSWORD=secret python examples/fetchmail.py pop.example.org alice \\
        --tls --maildir ~/Maildir

Only messages whose unique id (UIDL) is not in the state file are downloaded. Each is
written durably into the Maildir first, then its UIDL is remembered, and without
``--keep`` it is marked for deletion on the server (removed when the session ends with
QUIT). A crash in between means a message may come twice, never that one is lost.

TLS: ``--tls`` is implicit TLS (port 995); otherwise STLS is used when the server offers
it (``--stls`` requires it). The certificate is verified unless ``--insecure`` (for a
test server with a self-signed certificate only). The password comes from the
environment variable named by ``--password-env`` (default ``POP3_PASSWORD``), or is
asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

from mailagents.aio.pop3_client import POP3Client, POP3Error
from mailagents.store import MaildirStore


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fetch new POP3 mail into a Maildir.")
    parser.add_argument("host")
    parser.add_argument("user")
    parser.add_argument("--port", type=int, help="default 995 with --tls, else 110")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="implicit TLS (RFC 8314)")
    tls.add_argument("--stls", action="store_true", help="require STLS")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument(
        "--allow-plaintext", action="store_true", help="allow a cleartext password without TLS"
    )
    parser.add_argument("--password-env", default="POP3_PASSWORD", metavar="VAR")
    parser.add_argument("--keep", action="store_true", help="leave the messages on the server")
    parser.add_argument("--maildir", default="Maildir", metavar="DEST")
    parser.add_argument("--state", help="the UIDL state file (default: in DEST)")
    return parser.parse_args(argv)


def load_seen(path: Path) -> set[str]:
    try:
        return set(json.loads(path.read_text("utf-8")))
    except FileNotFoundError:
        return set()


def save_seen(path: Path, seen: set[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(sorted(seen), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic: the old list or the new one, never half of one


async def fetchmail(args: argparse.Namespace, password: str) -> int:
    store = MaildirStore(args.maildir)
    inbox = store.folder("INBOX", deliver_only=True)  # an MDA leaves new/ alone
    state = Path(args.state or Path(store.root, f".pop3-uidl-{args.user}@{args.host}"))
    seen = load_seen(state)

    async def deliver(uid: str, message: bytes) -> None:
        await store.run(inbox.append_bytes, message, assign_uid=False)
        save_seen(state, seen | {uid})  # only once the message is safely stored

    try:
        async with POP3Client.connect(
            args.host,
            args.port,
            implicit_tls=args.tls,
            stls=True if args.stls else None,
            verify=not args.insecure,
        ) as client:
            await client.login(args.user, password, allow_plaintext=args.allow_plaintext)
            result = await client.fetch(deliver, seen=seen, delete=not args.keep)
        # Forget what the server no longer had, so that the state file stays small
        # (this session's deletions go next time, once the server surely removed them).
        save_seen(state, seen & result.present)
    except POP3Error as exc:
        print(f"fetchmail: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    deleted = "" if args.keep else f", {len(result.deleted)} deleted"
    print(f"{len(result.fetched)} new message(s) for {args.user} at {args.host}{deleted}")
    return 0


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    password = os.environ.get(args.password_env) or getpass.getpass(f"{args.user}'s password: ")
    return await fetchmail(args, password)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

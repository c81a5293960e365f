"""The command line: ``python -m mailagents``.

``python -m mailagents [--host H] [--submission-port P] [--submissions-port P]
[--pop3-port P] [--pop3s-port P] [--imap-port P] [--imaps-port P] [--dir DIR]
[--user ADDRESS] [--max-size N]`` runs the demo, the first whole chain on loopback: an
MSA (:class:`mailagents.agents.MSA`) with STARTTLS (port 10587) and implicit TLS (port
10465) that delivers into Maildirs under ``DIR`` (``./demo-mail`` by default), and an
MAA (:class:`mailagents.agents.MAA`) serving the same Maildirs over POP3 with STLS
(port 10110) and implicit TLS (port 10995) and over IMAP with STARTTLS (port 10143) and
implicit TLS (port 10993); a self-signed certificate in ``DIR/tls/`` and one user with a
new random password at each start. It prints the ports, the user, the password, an
smtplib one-liner to submit a message and poplib and imaplib one-liners to read it
back, then a line for each message delivered. Stop it with Ctrl-C (SIGINT) or SIGTERM.

``python -m mailagents smtp-sink [--host H] [--port P] [--lmtp] [--max-size N]`` runs
a plain SMTP (or LMTP) server on loopback that accepts every recipient and prints each
message it receives.

``python -m mailagents passwd FILE USER [--password-stdin] [--legacy-secret]
[--act-as NAME ...] [--delete] [--check]`` manages a password file
(:class:`mailagents.userdb.PasswordFile`): sets a user's password (asked twice on the
terminal, or read as one line from standard input), deletes a user, or checks a
password (exit status 0 when it is right, 1 otherwise).

``python -m mailagents deliver -d USER ...`` delivers the message on standard input to
local users (exit 0, 67 for an unknown user, 75 to defer) and ``python -m mailagents
lmtp`` runs an LMTP server in front of the same MDA (see ``mailagents._cli_mda``).

``python -m mailagents queue [--queue DIR] list|show ID|retry [ID...]|delete ID...``
looks at and acts on the MTA's outbound queue (see ``mailagents._cli_queue``).

``python -m mailagents serve --config FILE`` runs any set of agents from one TOML file,
``python -m mailagents check-config FILE`` checks such a file (see
``mailagents._cli_serve`` and docs/configuration.rst); ``python -m mailagents demo`` is
the demo.

``python -m mailagents sendmail [-t] [-i] [-f SENDER] [RECIPIENT ...]`` puts the
message on standard input into the MTA's queue (see ``mailagents._cli_sendmail``).

``python -m mailagents fetch --config FILE [--daemon]`` fetches mail from remote POP3
and IMAP accounts, as fetchmail does (:class:`mailagents.agents.MRA`; see
``mailagents._cli_fetch``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import getpass
import os
import secrets
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from mailagents import __version__, _cli_fetch, _cli_mda, _cli_queue, _cli_sendmail, _cli_serve
from mailagents._cli_demo import write_clients
from mailagents._serve_config import LocalSection, MAASection, MSASection, MTASection, ServeConfig
from mailagents.aio import Session, SMTPHandler, make_self_signed, serve_smtp, server_context
from mailagents.delivery import Handoff, RecipientResult
from mailagents.smtp import Accept, Envelope, LMTPReplies, Reject, ServerConfig
from mailagents.userdb import PasswordFile

__all__ = [
    "PrintingHandler",
    "describe",
    "main",
    "parse_args",
    "parse_passwd_args",
    "parse_sink_args",
    "passwd",
    "imaplib_one_liner",
    "poplib_one_liner",
    "smtplib_one_liner",
]

DEMO_USER = "demo@example.test"
"""The demo's user (its domain is the demo's local domain)."""
DEMO_SUBMISSION_PORT = 10587
"""The demo's submission (STARTTLS) port: a free high port instead of 587."""
DEMO_SUBMISSIONS_PORT = 10465
"""The demo's submissions (implicit TLS) port: a free high port instead of 465."""
DEMO_POP3_PORT = 10110
"""The demo's POP3 (STLS) port: a free high port instead of 110."""
DEMO_POP3S_PORT = 10995
"""The demo's POP3S (implicit TLS) port: a free high port instead of 995."""
DEMO_IMAP_PORT = 10143
"""The demo's IMAP (STARTTLS) port: a free high port instead of 143."""
DEMO_IMAPS_PORT = 10993
"""The demo's IMAPS (implicit TLS) port: a free high port instead of 993."""
DEMO_MTA_PORT = 10025
"""The demo's MTA (SMTP) port: a free high port instead of 25."""

BODY_LINES = 10
"""How many lines of each message body the demo prints."""


class PrintingHandler(SMTPHandler):
    """Accept every recipient and print each message: envelope, headers, first lines."""

    async def on_message(
        self, session: Session, envelope: Envelope, message: bytes
    ) -> Accept | Reject | LMTPReplies:
        """Print the message and accept it."""
        print(describe(envelope, message), flush=True)
        return Accept()


def describe(envelope: Envelope, message: bytes) -> str:
    """The text the demo prints for one message."""
    recipients = ", ".join(str(r.path) for r in envelope.recipients)
    out = [
        "-" * 72,
        f"From:     {envelope.mail_from}",
        f"To:       {recipients}",
        f"Size:     {envelope.size} octets{' (BDAT)' if envelope.chunked else ''}",
        "",
    ]
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    for name, value in parsed.items():
        out.append(f"{name}: {value}")
    _, sep, body = message.partition(b"\r\n\r\n")
    if sep:
        lines = body.split(b"\r\n")
        out.append("")
        out.extend(line.decode("utf-8", "replace") for line in lines[:BODY_LINES])
        if len(lines) > BODY_LINES and any(lines[BODY_LINES:]):
            out.append(f"[... {len(lines) - BODY_LINES} more lines]")
    out.append("-" * 72)
    return "\n".join(out)


def _add_max_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-size",
        type=int,
        default=ServerConfig().max_message_size,
        metavar="N",
        help="largest message accepted, in octets (default: %(default)s)",
    )


def _check_max_size(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.max_size is not None and args.max_size < 1:
        parser.error("--max-size must be positive")


def parse_sink_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the arguments of the ``smtp-sink`` sub-command (those after it)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents smtp-sink",
        description="mailagents smtp-sink: an SMTP server on loopback that accepts every "
        "recipient and prints each message it receives.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=2525, help="port to listen on (0: any free port)"
    )
    parser.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033)")
    _add_max_size(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    _check_max_size(parser, args)
    return args


async def _serve_sink(args: argparse.Namespace) -> None:
    config = ServerConfig(lmtp=args.lmtp, max_message_size=args.max_size)
    server = await serve_smtp(PrintingHandler(), config, host=args.host, port=args.port)
    stop = _stop_on_signals()
    async with server:
        kind = "LMTP" if args.lmtp else "SMTP"
        host = f"[{args.host}]" if ":" in args.host else args.host
        port = server.port
        print(
            f"mailagents smtp-sink: {kind} server listening on {host}:{port} (Ctrl-C to stop)",
            flush=True,
        )
        client = "LMTP" if args.lmtp else "SMTP"
        print(
            "Send a test message: python -c \"import smtplib; "
            f"smtplib.{client}('{args.host}', {port}).sendmail('me@example.test', "
            "['you@example.test'], 'Subject: hello\\r\\n\\r\\nHi!\\r\\n')\""
            + ("" if args.lmtp else f"  or: swaks --server {host}:{port} --to you@example.test"),
            flush=True,
        )
        await stop.wait()
        print("mailagents smtp-sink: stopping", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the demo's command line (``python -m mailagents [options]``)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents",
        description="mailagents demo: an MSA (RFC 6409) and a POP3 (RFC 1939) and IMAP "
        "(RFC 9051) server on loopback over the same Maildirs, with a self-signed "
        "certificate and one user. "
        "Other commands: "
        "'python -m mailagents smtp-sink --help', 'python -m mailagents passwd --help', "
        "'python -m mailagents deliver --help', 'python -m mailagents lmtp --help', "
        "'python -m mailagents fetch --help'.",
    )
    parser.add_argument("--version", action="version", version=f"mailagents {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--submission-port",
        type=int,
        default=DEMO_SUBMISSION_PORT,
        metavar="P",
        help="port of submission with STARTTLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--submissions-port",
        type=int,
        default=DEMO_SUBMISSIONS_PORT,
        metavar="P",
        help="port of submission with implicit TLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--mta-port",
        type=int,
        default=DEMO_MTA_PORT,
        metavar="P",
        help="port of the MTA's SMTP (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--pop3-port",
        type=int,
        default=DEMO_POP3_PORT,
        metavar="P",
        help="port of POP3 with STLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--pop3s-port",
        type=int,
        default=DEMO_POP3S_PORT,
        metavar="P",
        help="port of POP3 with implicit TLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--imap-port",
        type=int,
        default=DEMO_IMAP_PORT,
        metavar="P",
        help="port of IMAP with STARTTLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--imaps-port",
        type=int,
        default=DEMO_IMAPS_PORT,
        metavar="P",
        help="port of IMAP with implicit TLS (default: %(default)s; 0: any free port)",
    )
    parser.add_argument(
        "--dir",
        default="demo-mail",
        help="folder of the certificate, the password file and the Maildirs "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--user", default=DEMO_USER, metavar="ADDRESS", help="the demo user (default: %(default)s)"
    )
    _add_max_size(parser)
    args = parser.parse_args(argv)
    for option in (
        "submission_port",
        "submissions_port",
        "mta_port",
        "pop3_port",
        "pop3s_port",
        "imap_port",
        "imaps_port",
    ):
        if not 0 <= getattr(args, option) <= 65535:
            parser.error(f"--{option.replace('_', '-')} must be between 0 and 65535")
    _check_max_size(parser, args)
    local, at, domain = args.user.rpartition("@")
    if not (local and at and domain) or any(c.isspace() or c in ":'\"\\" for c in args.user):
        parser.error("--user must be an address such as demo@example.test")
    return args


def smtplib_one_liner(host: str, port: int, user: str, password: str) -> str:
    """A shell command that submits a message with smtplib: STARTTLS (certificate not
    verified: the demo's is self-signed), login, send to the user itself."""
    message = f"From: {user}\\r\\nTo: {user}\\r\\nSubject: hello\\r\\n\\r\\nHi!\\r\\n"
    return (
        'python3 -c "import smtplib, ssl; '
        f"s = smtplib.SMTP('{host}', {port}); "
        "s.starttls(context=ssl._create_unverified_context()); "
        f"s.login('{user}', '{password}'); "
        f"s.sendmail('{user}', ['{user}'], '{message}'); "
        's.quit()"'
    )


def poplib_one_liner(host: str, port: int, user: str, password: str) -> str:
    """A shell command that reads the user's mail with poplib: STLS (certificate not
    verified: the demo's is self-signed), login, print each message, leave them there."""
    return (
        'python3 -c "import poplib, ssl; '
        f"p = poplib.POP3('{host}', {port}); "
        "p.stls(context=ssl._create_unverified_context()); "
        f"p.user('{user}'); p.pass_('{password}'); "
        "[print(b'\\n'.join(p.retr(i + 1)[1]).decode(), '\\n' + '-' * 40) "
        "for i in range(p.stat()[0])]; "
        'p.quit()"'
    )


def imaplib_one_liner(host: str, port: int, user: str, password: str) -> str:
    """A shell command that reads the user's INBOX with imaplib: STARTTLS (certificate
    not verified: the demo's is self-signed), login, print each message (BODY.PEEK, so
    nothing is marked seen), log out."""
    return (
        'python3 -c "import imaplib, ssl; '
        f"m = imaplib.IMAP4('{host}', {port}); "
        "m.starttls(ssl._create_unverified_context()); "
        f"m.login('{user}', '{password}'); m.select('INBOX', readonly=True); "
        "[print(m.fetch(n, '(BODY.PEEK[])')[1][0][1].decode(), '\\n' + '-' * 40) "
        "for n in m.search(None, 'ALL')[1][0].split()]; "
        'm.logout()"'
    )


def _demo_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """The demo's server context: ``folder/cert.pem`` and ``key.pem``, made (self-signed,
    for localhost, 127.0.0.1 and ::1) when missing or unusable."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.is_file() and key.is_file():
        try:
            return server_context(cert, key), cert
        except (OSError, ssl.SSLError):
            pass
    cert, key = make_self_signed(["localhost"]).write(folder)
    return server_context(cert, key), cert


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - Windows
            loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve_demo(args: argparse.Namespace) -> None:
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _context, cert = await asyncio.to_thread(_demo_tls, folder / "tls")
    password = secrets.token_urlsafe(12)
    with PasswordFile(folder / "users") as users:
        await asyncio.to_thread(users.set_password, args.user, password)
    domain = args.user.rpartition("@")[2]
    # postmaster must reach someone in the local domain (RFC 5321 §4.5.1).
    (folder / "aliases").write_text(f"postmaster: {args.user}\n", encoding="utf-8")
    hosts = (args.host,)
    config = ServeConfig(
        path="<demo>",
        base=str(folder),
        hostname="localhost",
        log_level="warning",
        tls=(str(cert), str(cert.with_name("key.pem"))),
        passwords=str(folder / "users"),
        local=LocalSection(domains=(domain,), users=None, aliases=str(folder / "aliases"),
                           mailboxes=str(folder / "{user}" / "Maildir"), format="maildir",
                           delimiter="+"),
        queue=str(folder / "queue"),
        # The MSA takes local recipients only: the demo never sends mail out.
        msa=MSASection(host=hosts, submission=args.submission_port,
                       submissions=args.submissions_port, relay=False,
                       max_message_size=args.max_size),
        mta=MTASection(host=hosts, port=args.mta_port, relay_domains=(), relay_networks=(),
                       nameservers=None, dns_port=53, outbound_port=25, auth=False,
                       max_message_size=args.max_size),
        lmtp=None,
        maa=MAASection(host=hosts, pop3=args.pop3_port, pop3s=args.pop3s_port,
                       imap=args.imap_port, imaps=args.imaps_port, allow_plaintext=False),
        fetch=None,
    )

    def delivered(handoff: Handoff, results: Sequence[RecipientResult]) -> None:
        mda, stores = agents.mda, agents.stores
        assert mda is not None and stores is not None
        places = []
        for result in results:
            mailbox = result.recipient.path.mailbox
            if result.delivered and mailbox is not None:
                for target in mda.recipients.resolve(mailbox) or ():
                    places.append(os.path.join(stores.path(target.identity), "new", ""))
        where = ", ".join(dict.fromkeys(places))
        print(f"mailagents demo: delivered {handoff.id} from {handoff.envelope.mail_from}"
              f" into {where}", flush=True)

    agents = _cli_serve.Agents(config, observe=delivered)
    stop = _stop_on_signals()
    try:
        await agents.start()
        msa, mta, maa = agents.msa, agents.mta, agents.maa
        assert msa is not None and mta is not None and maa is not None
        host = f"[{args.host}]" if ":" in args.host else args.host
        maildir = os.path.join(folder, args.user, "Maildir", "")
        clients = await asyncio.to_thread(
            write_clients, folder, host=args.host, user=args.user, password=password,
            cert=cert, submission_port=msa.submission_port, mta_port=mta.port,
            imaps_port=maa.imaps_port,
        )
        print(
            f"mailagents demo: an MSA (RFC 6409), an MTA for {domain}, and an MAA (POP3 and "
            f"IMAP) on {host}, Ctrl-C to stop\n"
            f"  submission:  {host}:{msa.submission_port} (STARTTLS, then AUTH)\n"
            f"  submissions: {host}:{msa.submissions_port} (implicit TLS)\n"
            f"  smtp (MTA):  {host}:{mta.port} (mail for @{domain} from anywhere)\n"
            f"  pop3:        {host}:{maa.pop3_port} (STLS, then USER/PASS or AUTH)\n"
            f"  pop3s:       {host}:{maa.pop3s_port} (implicit TLS)\n"
            f"  imap:        {host}:{maa.imap_port} (STARTTLS, then LOGIN or AUTHENTICATE)\n"
            f"  imaps:       {host}:{maa.imaps_port} (implicit TLS)\n"
            f"  user:        {args.user}\n"
            f"  password:    {password} (a new one at each start)\n"
            f"  Maildir:     {maildir}\n"
            f"  certificate: {cert} (self-signed)\n"
            "Submit a message (paste into a shell):\n"
            f"  {smtplib_one_liner(args.host, msa.submission_port, args.user, password)}\n"
            "Read it back with POP3:\n"
            f"  {poplib_one_liner(args.host, maa.pop3_port, args.user, password)}\n"
            "Or with IMAP:\n"
            f"  {imaplib_one_liner(args.host, maa.imap_port, args.user, password)}\n"
            "With other programs:\n"
            f"  {clients.swaks_submission}\n"
            f"  {clients.swaks_mta}\n"
            f"  {clients.snail}\n"
            f"  {clients.fetchmail}\n"
            f"  {clients.mbsync}",
            flush=True,
        )
        await stop.wait()
        print("mailagents demo: stopping", flush=True)
    finally:
        await agents.close()


def parse_passwd_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the arguments of the ``passwd`` sub-command (those after ``passwd``)."""
    parser = argparse.ArgumentParser(
        prog="python -m mailagents passwd",
        description="Set, check or delete a user's password in a mailagents password "
        "file (scrypt and SCRAM-SHA-256 secrets, never the password itself).",
    )
    parser.add_argument("file", metavar="FILE", help="the password file (created if missing)")
    parser.add_argument("user", metavar="USER", help="the user name")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input instead of the terminal",
    )
    parser.add_argument(
        "--legacy-secret",
        action="store_true",
        help="also store the password itself (plaintext-equivalent!) so that the user "
        "can log in with CRAM-MD5 or POP3 APOP",
    )
    parser.add_argument(
        "--act-as",
        action="append",
        metavar="NAME",
        help="an identity the user may act as (repeat for several; replaces the list; "
        "without it an existing user's list is kept)",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true", help="remove the user")
    action.add_argument(
        "--check",
        action="store_true",
        help="check a password: exit status 0 if it is right, 1 if not",
    )
    args = parser.parse_args(argv)
    if (args.delete or args.check) and (args.legacy_secret or args.act_as is not None):
        parser.error("--legacy-secret and --act-as only apply when setting a password")
    if args.delete and args.password_stdin:
        parser.error("--delete reads no password")
    return args


def _read_password(args: argparse.Namespace) -> str | None:
    """The password from standard input or the terminal; None (after a message) if none."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            print("mailagents passwd: no password on standard input", file=sys.stderr)
            return None
        return password
    password = getpass.getpass("Password: ")
    if not args.check and getpass.getpass("Password (again): ") != password:
        print("mailagents passwd: the passwords do not match", file=sys.stderr)
        return None
    if not password:
        print("mailagents passwd: empty password", file=sys.stderr)
        return None
    return password


def passwd(argv: Sequence[str]) -> int:
    """The ``passwd`` sub-command; returns the exit status. Prints nothing secret."""
    args = parse_passwd_args(argv)
    store = PasswordFile(args.file)
    try:
        if args.delete:
            if not store.delete(args.user):
                print(f"mailagents passwd: no user {args.user!r}", file=sys.stderr)
                return 1
            print(f"mailagents passwd: user {args.user!r} deleted")
            return 0
        password = _read_password(args)
        if password is None:
            return 1
        if args.check:
            ok = store.verify_password(args.user, password)
            print(f"mailagents passwd: password {'right' if ok else 'wrong'} for {args.user!r}")
            return 0 if ok else 1
        entry = store.set_password(
            args.user, password, legacy=args.legacy_secret, may_act_as=args.act_as
        )
    except ValueError as exc:
        print(f"mailagents passwd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mailagents passwd: {args.file}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    extra = " (with a plaintext-equivalent legacy secret)" if entry.legacy_secret else ""
    print(f"mailagents passwd: password set for {entry.name!r}{extra}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["passwd"]:
        return passwd(arguments[1:])
    if arguments[:1] == ["deliver"]:
        return _cli_mda.deliver(arguments[1:])
    if arguments[:1] == ["lmtp"]:
        return _cli_mda.lmtp(arguments[1:])
    if arguments[:1] == ["queue"]:
        return _cli_queue.main(arguments[1:])
    if arguments[:1] == ["fetch"]:
        return _cli_fetch.main(arguments[1:])
    if arguments[:1] == ["sendmail"]:
        return _cli_sendmail.main(arguments[1:])
    if arguments[:1] == ["serve"]:
        return _cli_serve.serve(arguments[1:])
    if arguments[:1] == ["check-config"]:
        return _cli_serve.check_config(arguments[1:])
    if arguments[:1] == ["demo"]:
        arguments = arguments[1:]
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    if arguments[:1] == ["smtp-sink"]:
        args = parse_sink_args(arguments[1:])
        serve = _serve_sink(args)
        failure = f"cannot listen on {args.host}:{args.port}: "
    else:
        args = parse_args(arguments)
        serve = _serve_demo(args)
        failure = ""
    try:
        asyncio.run(serve)
    except OSError as exc:
        print(f"mailagents: {failure}{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - a signal before the handler was set
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the demo (``python -m mailagents``) writes and prints for the mail clients that
talk to it (layer 5): a ``swaks`` command for each of the MSA and the MTA, an s-nail
command over IMAPS, a ``fetchmailrc`` and an ``mbsyncrc`` in the demo's folder.

Every client is told to trust exactly the demo's self-signed certificate (its file,
or for s-nail its SHA-256 fingerprint), never to skip verification.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoClients", "write_clients"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoClients:
    """The commands the demo prints, one per client."""

    swaks_submission: str
    """swaks submitting over the MSA: STARTTLS, AUTH."""
    swaks_mta: str
    """swaks delivering to the MTA on its SMTP port, as another MTA would."""
    snail: str
    """s-nail listing the INBOX over IMAPS (headless: ``-#``, commands on stdin)."""
    fetchmail: str
    """fetchmail fetching over IMAPS with the written ``fetchmailrc`` (keep mode)."""
    mbsync: str
    """mbsync copying every folder over IMAPS with the written ``mbsyncrc``."""


def _fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate as s-nail writes it: upper-case hex pairs, colons."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text("ascii"))
    text = hashlib.sha256(der).hexdigest().upper()
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def write_clients(
    folder: Path,
    *,
    host: str,
    user: str,
    password: str,
    cert: Path,
    submission_port: int,
    mta_port: int,
    imaps_port: int,
) -> DemoClients:
    """Write ``folder/fetchmailrc`` (mode 0600, as fetchmail requires) and
    ``folder/mbsyncrc``, and return the commands."""
    name = "localhost"  # the name in the demo's certificate
    fetchmailrc = folder / "fetchmailrc"
    fetched = folder / "fetched" / "{user}" / "Maildir"
    # fetchmail hands each message to our MDA, into a second Maildir.
    mda = f"{sys.executable} -m mailagents deliver -d %T --mail {fetched}"
    content = (
        f"poll {host} with proto IMAP service {imaps_port} auth password timeout 30\n"
        f'  user "{user}" there with password "{password}" is "{user}" here\n'
        f'  ssl sslcertck sslcertfile "{cert}" sslcommonname {name}\n'
        f'  keep fetchall mda "{mda}"\n'
    )
    fd = os.open(fetchmailrc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(fetchmailrc, 0o600)
    copy = folder / "mbsync-copy"
    copy.mkdir(exist_ok=True)  # mbsync does not make its store's folder
    mbsyncrc = folder / "mbsyncrc"
    # mbsync checks the certificate against the host it is given: the name in it.
    server = name if host in ("127.0.0.1", "::1") else host
    mbsyncrc.write_text(
        f"IMAPAccount demo\nHost {server}\nPort {imaps_port}\nUser {user}\nPass {password}\n"
        f"SSLType IMAPS\nCertificateFile {cert}\n\n"
        "IMAPStore demo-far\nAccount demo\n\n"
        f"MaildirStore demo-near\nPath {copy}/\nInbox {copy}/INBOX\nSubFolders Verbatim\n\n"
        "Channel demo\nFar :demo-far:\nNear :demo-near:\nPatterns *\nCreate Near\n"
        "Sync Pull\nSyncState *\n",
        encoding="utf-8",
    )
    mbsyncrc.chmod(0o600)
    account = f"imaps://{user.replace('@', '%40')}@{host}:{imaps_port}"
    snail = (
        "echo headers | s-nail -N -n -# -S v15-compat "
        f"-S {_quote(f'password-{user}@{host}:{imaps_port}={password}')} "
        f"-S tls-fingerprint-digest=SHA256 -S tls-fingerprint={_fingerprint(cert)} "
        f"-S tls-verify=strict -S {_quote('folder=' + account)} -f {_quote(account + '/INBOX')}"
    )
    return DemoClients(
        swaks_submission=(
            f"swaks --server {host}:{submission_port} --tls --auth-user {_quote(user)} "
            f"--auth-password {_quote(password)} --from {_quote(user)} --to {_quote(user)}"
        ),
        swaks_mta=f"swaks --server {host}:{mta_port} --from someone@elsewhere.test "
        f"--to {_quote(user)}",
        snail=snail,
        fetchmail=f"fetchmail -f {_quote(str(fetchmailrc))}    # into "
        f"{str(fetched).replace('{user}', user)}/",
        mbsync=f"mbsync -c {_quote(str(mbsyncrc))} -a    # into {copy}/",
    )

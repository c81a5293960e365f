"""The login commands of the POP3 server core: USER/PASS and APOP (RFC 1939 §7), AUTH
(RFC 5034) on the shared SASL exchange driver
(:class:`mailagents.sasl._exchange.ServerExchange`), and opening the maildrop after a
successful login (RFC 1939 §4)."""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import b64encode

from mailagents import sasl
from mailagents._protocol import LocalProtocolError
from mailagents.pop3._events import (
    Authenticated,
    AuthenticationFailed,
    Maildrop,
    OpenMaildrop,
    Reject,
)
from mailagents.pop3._response import Response
from mailagents.pop3._server_core import Decision, ServerCore, err, multiline, n_messages, ok
from mailagents.sasl._exchange import ANSWERS, ExchangeFailure, ExchangeStep, ServerExchange

__all__ = ["Authorization"]

_DIGEST = re.compile(r"[0-9a-fA-F]{32}")
# Mechanisms that send the password itself: only over TLS unless allowed (RFC 2595 §2.3).
_PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})
# RFC 5034 §4: a cancelled exchange MUST get -ERR; RFC 3206 §4: [AUTH] says the
# credentials, not the server, were at fault; [SYS/TEMP] that it may pass.
_AUTH_FAILURES = {
    ExchangeFailure.CANCELLED: err("Authentication cancelled"),
    ExchangeFailure.BAD_BASE64: err("Invalid base64 in response"),
    ExchangeFailure.CREDENTIALS: err("Authentication failed", "AUTH"),
    ExchangeFailure.TEMPORARY: err("Temporary authentication failure", "SYS/TEMP"),
}


class Authorization(ServerCore):
    """The login commands of :class:`~mailagents.pop3.ServerConnection` (see the module)."""

    def _plaintext_ok(self) -> bool:
        return self._tls or self.config.allow_plaintext_login

    def _usable_mechanisms(self) -> list[str]:
        return [
            m.upper()
            for m in self.config.auth_mechanisms
            if self._plaintext_ok() or m.upper() not in _PLAINTEXT_MECHANISMS
        ]

    def _login_refused(self, verb: str) -> bool:
        if self._plaintext_ok():
            return False
        self._reject(
            verb,
            err("Clear-text login needs TLS: use STLS first", "AUTH"),
        )
        return True

    def _check_text(self, verb: str, what: str, text: str) -> bool:
        if not text:
            self._reject(verb, err(f"Syntax: {verb} {what}"))
            return False
        if not text.isascii() and not self._utf8:
            # RFC 6856 §2: UTF-8 user names and passwords only after UTF8.
            self._reject(verb, err(f"Non-ASCII {what}: send UTF8 first"))
            return False
        return True

    def _cmd_user(self, arg: str) -> None:
        if self._login_refused("USER"):
            return
        name = arg.strip(" ")
        if not self._check_text("USER", "name", name):
            return
        self._user = name
        self._queue(ok("Send PASS"))

    def _cmd_pass(self, arg: str, user: str | None) -> None:
        if self._login_refused("PASS"):
            return
        if user is None:
            self._reject("PASS", err("Send USER first"))
            return
        # RFC 1939 §7: PASS has exactly one argument, so spaces belong to the password.
        if not self._check_text("PASS", "password", arg):
            return
        # USER/PASS runs as SASL PLAIN with its initial response (no challenge, so the
        # session stays in AUTHORIZATION), so the application answers one request type.
        self._sasl = exchange = ServerExchange(sasl.server_mechanism("PLAIN"))
        self._auth_label = "USER"
        message = b"\x00" + user.encode("utf-8") + b"\x00" + arg.encode("utf-8")
        self._auth_step(exchange.start(message))

    def _cmd_apop(self, arg: str) -> None:
        if not (self.config.allow_apop and self._challenge is not None):
            self._reject("APOP", err("APOP not available"))
            return
        parts = self._args(arg)
        if len(parts) != 2 or not _DIGEST.fullmatch(parts[1]):
            self._reject("APOP", err("Syntax: APOP name digest"))
            return
        name, digest = parts
        if not self._check_text("APOP", "name", name):
            return
        self._sasl = None
        self._auth_label = "APOP"
        self._apop_digest = digest.lower()
        self._emit(sasl.NeedCredentials(mechanism="APOP", authcid=name, authzid=None))

    def _cmd_auth(self, arg: str) -> None:
        mechs = self._usable_mechanisms()
        args = self._args(arg)
        if not args:
            # RFC 5034's grammar needs a mechanism; listing them for a bare AUTH is
            # what the RFC 1734-era clients probing for SASL expect (CAPA is the RFC way).
            self._out += multiline(ok("Mechanisms follow"), mechs)
            return
        if len(args) > 2:
            self._reject("AUTH", err("Syntax: AUTH mechanism [initial-response]"))
            return
        name = args[0].upper()
        if name not in mechs:
            if name in (m.upper() for m in self.config.auth_mechanisms):
                self._reject("AUTH", err(f"{name} needs TLS: use STLS first", "AUTH"))
            else:
                self._reject("AUTH", err("Unrecognized authentication mechanism"))
            return
        initial: bytes | None = None
        if len(args) == 2:
            initial = ServerExchange.decode_initial(args[1])
            if initial is None:
                self._reject("AUTH", err("Invalid base64 in initial response"))
                return
        try:
            mech = sasl.server_mechanism(name, allow_legacy=self.config.allow_legacy_auth)
        except KeyError:
            self._reject("AUTH", err("Unrecognized authentication mechanism"))
            return
        self._start_exchange(mech, initial)

    def _start_exchange(self, mech: sasl.ServerMechanism, initial: bytes | None) -> None:
        self._sasl = exchange = ServerExchange(mech)
        self._auth_label = mech.name
        self._transition("AUTH")
        self._auth_step(exchange.start(initial))

    def _auth_line(self, raw: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._auth_step(exchange.receive_line(raw.decode("ascii", "replace")))

    def _auth_step(self, step: ExchangeStep) -> None:
        if isinstance(step, sasl.Challenge):
            # RFC 5034 §4: "+" SP base64 (an empty challenge is "+ ").
            self._out += b"+ " + b64encode(step.data) + b"\r\n"
        elif isinstance(step, sasl.NeedCredentials):
            self._emit(step)
        elif isinstance(step, sasl.Success):
            self._auth_success(step)
        else:
            self._auth_end(_AUTH_FAILURES[step.failure])

    def _auth_success(self, step: sasl.Success) -> None:
        self._sasl = None
        self._transition("AUTH_END")
        self._emit(OpenMaildrop(identity=step.identity, mechanism=self._auth_label))

    def _auth_end(self, response: Response) -> None:
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(response)
        self._emit(AuthenticationFailed(mechanism=self._auth_label, reply=response))

    def _answer_credentials(self, decision: Decision) -> None:
        event = self._pending
        assert isinstance(event, sasl.NeedCredentials)
        if isinstance(decision, Reject):
            self._pending = None
            self._auth_end(decision.reply)
            return
        if not isinstance(decision, ANSWERS):
            raise LocalProtocolError("answer NeedCredentials with a sasl answer or Reject")
        if self._auth_label == "APOP":
            self._pending = None
            self._apop_verdict(event.authcid, decision)
            return
        exchange = self._sasl
        assert exchange is not None
        step = exchange.provide(decision)  # raises LocalProtocolError for a wrong answer
        self._pending = None
        self._auth_step(step)

    def _apop_verdict(self, name: str, answer: sasl.Answer) -> None:
        if isinstance(answer, sasl.LegacySecret):
            secret = answer.secret
            raw = secret.encode("utf-8") if isinstance(secret, str) else secret
            assert self._challenge is not None
            expected = hashlib.md5(self._challenge.encode("ascii") + raw).hexdigest()
            # RFC 1939 §7: the digest is MD5(timestamp + secret), in lower-case hex.
            if hmac.compare_digest(expected, self._apop_digest):
                self._auth_success(sasl.Success(identity=name, authcid=name))
                return
        # Any other answer (NoSuchUser, a verdict that cannot check a digest) fails.
        self._auth_end(err("Authentication failed", "AUTH"))

    def _decide_open(self, event: OpenMaildrop, decision: Decision) -> None:
        if isinstance(decision, Reject):
            # The credentials were right (no AuthenticationFailed), but the maildrop
            # cannot be opened: [IN-USE], [LOGIN-DELAY], [SYS/TEMP] (RFC 2449 §8, 3206).
            self._pending = None
            self._queue(decision.reply)
            return
        if not isinstance(decision, Maildrop):
            raise LocalProtocolError("answer OpenMaildrop with Maildrop or Reject")
        self._pending = None
        self._messages = decision.messages
        self._deleted = set()
        self._identity = event.identity
        self._transition("MAILDROP_OPEN")
        count, size = self._totals()
        self._queue(ok(f"maildrop locked and ready, {n_messages(count)} ({size} octets)"))
        self._emit(Authenticated(identity=event.identity, mechanism=event.mechanism))


"""The login commands of the IMAP server core: LOGIN (RFC 9051 §6.2.3) and AUTHENTICATE
(§6.2.2, SASL-IR RFC 4959) on the shared SASL exchange driver
(``mailagents.sasl._exchange.ServerExchange``), and STARTTLS (§6.2.1).

LOGIN runs as SASL PLAIN with its initial response, so the application answers one
kind of request (``sasl.NeedCredentials``) whichever way the client logs in.
"""

from __future__ import annotations

from base64 import b64encode

from mailagents import sasl
from mailagents._protocol import LocalProtocolError
from mailagents.imap._commands import Authenticate, Login
from mailagents.imap._events import Authenticated, AuthenticationFailed, Complete, StartTLS
from mailagents.imap._server_core import ServerCore
from mailagents.imap._state import State
from mailagents.sasl._exchange import ANSWERS, ExchangeFailure, ExchangeStep, ServerExchange

__all__ = ["Authorization"]

# RFC 9051 §6.2.2: a cancelled exchange or a malformed response MUST get BAD; wrong
# credentials NO [AUTHENTICATIONFAILED], a passing failure NO [UNAVAILABLE] (RFC 5530).
_FAILURES = {
    ExchangeFailure.CANCELLED: ("BAD", "Authentication cancelled", None),
    ExchangeFailure.BAD_BASE64: ("BAD", "Invalid base64 in response", None),
    ExchangeFailure.CREDENTIALS: ("NO", "Authentication failed", "AUTHENTICATIONFAILED"),
    ExchangeFailure.TEMPORARY: ("NO", "Temporary authentication failure", "UNAVAILABLE"),
}


class Authorization(ServerCore):
    """LOGIN, AUTHENTICATE and STARTTLS of ``ServerConnection`` (see the module)."""

    def _cmd_login(self, command: Login) -> None:
        if not self._plaintext_ok():
            # RFC 9051 §6.2.3: with LOGINDISABLED announced, LOGIN is refused.
            self._reject(
                command.tag, "NO", "LOGIN needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
            )
            return
        self._sasl = exchange = ServerExchange(sasl.server_mechanism("PLAIN"))
        self._auth_label = "LOGIN"
        message = b"\x00" + command.user.encode("utf-8", "surrogateescape") + b"\x00"
        message += command.password.encode("utf-8", "surrogateescape")
        self._auth_step(exchange.start(message))

    def _cmd_authenticate(self, command: Authenticate) -> None:
        name = command.mechanism
        if name not in self._mechanisms():
            if name in (m.upper() for m in self.config.auth_mechanisms):
                self._reject(
                    command.tag, "NO", f"{name} needs TLS: use STARTTLS first", "PRIVACYREQUIRED"
                )
            else:
                self._reject(command.tag, "NO", "Unsupported authentication mechanism", "CANNOT")
            return
        try:
            mech = sasl.server_mechanism(name, allow_legacy=self.config.allow_legacy_auth)
        except KeyError:
            self._reject(command.tag, "NO", "Unsupported authentication mechanism", "CANNOT")
            return
        self._sasl = exchange = ServerExchange(mech)
        self._auth_label = mech.name
        self._transition("AUTHENTICATE")
        self._auth_step(exchange.start(command.initial_response))

    def _auth_line(self, line: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._auth_step(exchange.receive_line(line.decode("ascii", "replace")))

    def _auth_step(self, step: ExchangeStep) -> None:
        if isinstance(step, sasl.Challenge):
            # RFC 9051 §6.2.2: "+" SP base64; the next line is the client's response.
            self._line(b"+ " + b64encode(step.data) + b"\r\n")
            self._reader.read_raw_line()
        elif isinstance(step, sasl.NeedCredentials):
            self._emit(step)
        elif isinstance(step, sasl.Success):
            self._auth_success(step)
        else:
            status, text, code = _FAILURES[step.failure]
            self._auth_end(status, text, code, step.reason)

    def _auth_success(self, step: sasl.Success) -> None:
        self._sasl = None
        self._identity = step.identity
        self._transition("AUTH_OK" if self._state is State.AUTHENTICATING else "LOGIN")
        # RFC 9051 §6.2.2: the capabilities may change; send them with the OK.
        self._status("OK", "Logged in", "CAPABILITY " + " ".join(self.capabilities()))
        self._events.append(Authenticated(identity=step.identity, mechanism=self._auth_label))
        self._command = None

    def _auth_end(self, status: str, text: str, code: str | None, reason: str) -> None:
        self._sasl = None
        if self._state is State.AUTHENTICATING:
            self._transition("AUTH_FAILED")
        self._events.append(AuthenticationFailed(mechanism=self._auth_label, reason=reason))
        tag = self._tag
        self._command = None
        self._reject(tag, status, text, code)

    def _answer_credentials(self, decision: object) -> None:
        if isinstance(decision, Complete):
            if decision.status == "OK":
                raise LocalProtocolError("answer NeedCredentials with a sasl answer")
            self._pending = None
            self._auth_end(
                decision.status,
                decision.text or "Authentication failed",
                decision.code,
                "refused by the application",
            )
            return
        if not isinstance(decision, ANSWERS):
            raise LocalProtocolError("answer NeedCredentials with a sasl answer or Complete")
        exchange = self._sasl
        assert exchange is not None
        step = exchange.provide(decision)  # LocalProtocolError for a wrong answer
        self._pending = None
        self._auth_step(step)

    def _cmd_starttls(self, tag: str) -> None:
        if not self.config.tls_available or self._tls:
            self._reject(tag, "BAD", "STARTTLS not available")
            return
        self._status("OK", "Begin TLS negotiation now")
        self._command = None
        # RFC 9051 §6.2.1: nothing the client sent after the command counts.
        self._reader.clear()
        self._tls_pending = True
        self._transition("STARTTLS")
        self._events.append(StartTLS())

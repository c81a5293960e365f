"""AUTH (RFC 4954) in the SMTP server core, on the shared SASL exchange driver
(:class:`mailagents.sasl._exchange.ServerExchange`)."""

from __future__ import annotations

from base64 import b64encode

from mailagents import sasl
from mailagents._protocol import LocalProtocolError
from mailagents.sasl._exchange import ANSWERS, ExchangeStep, ServerExchange
from mailagents.smtp._events import Authenticated, AuthenticationFailed, Reject
from mailagents.smtp._replies import AUTH_FAILURES, reply
from mailagents.smtp._reply import Reply
from mailagents.smtp._server_core import Decision, ServerCore

__all__ = ["Authentication"]


class Authentication(ServerCore):
    """The AUTH command of :class:`~mailagents.smtp.ServerConnection` and its exchange."""

    def _cmd_auth(self, arg: str) -> None:
        cfg = self.config
        if not cfg.auth_mechanisms or "AUTH" not in self._extensions:
            if cfg.auth_mechanisms and not self._tls:
                # RFC 4954 §6: 538 when the mechanism needs an encrypted session.
                answer = reply(
                    538, "5.7.11", "Encryption required for requested authentication mechanism"
                )
            else:
                answer = reply(502, "5.5.1", "AUTH not available")
            self._reject("AUTH", answer)
            return
        if self._identity is not None:
            self._reject("AUTH", reply(503, "5.5.1", "Already authenticated"))
            return
        name, _, initial_text = arg.strip(" ").partition(" ")
        name = name.upper()
        if name not in (m.upper() for m in cfg.auth_mechanisms):
            self._reject("AUTH", reply(504, "5.5.4", "Unrecognized authentication type"))
            return
        initial: bytes | None = None
        if initial_text:
            initial = ServerExchange.decode_initial(initial_text)
            if initial is None:
                self._reject("AUTH", reply(501, "5.5.2", "Invalid base64 in initial response"))
                return
        try:
            mech = sasl.server_mechanism(name, allow_legacy=cfg.allow_legacy_auth)
        except KeyError:
            self._reject("AUTH", reply(504, "5.5.4", "Unrecognized authentication type"))
            return
        self._sasl = exchange = ServerExchange(mech)
        self._transition("AUTH")
        self._auth_step(exchange.start(initial))

    def _auth_line(self, raw: bytes) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._auth_step(exchange.receive_line(raw.decode("ascii", "replace")))

    def _auth_step(self, step: ExchangeStep) -> None:
        if isinstance(step, sasl.Challenge):
            self._queue(reply(334, None, b64encode(step.data).decode("ascii")))
        elif isinstance(step, sasl.NeedCredentials):
            self._emit(step)
        elif isinstance(step, sasl.Success):
            self._auth_success(step)
        else:
            self._auth_end(AUTH_FAILURES[step.failure])

    def _auth_success(self, step: sasl.Success) -> None:
        exchange = self._sasl
        assert exchange is not None
        self._identity = step.identity
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(reply(235, "2.7.0", "Authentication successful"))
        self._emit(
            Authenticated(mechanism=exchange.name, identity=step.identity, authcid=step.authcid)
        )

    def _auth_end(self, answer: Reply) -> None:
        exchange = self._sasl
        name = exchange.name if exchange is not None else ""
        self._sasl = None
        self._transition("AUTH_END")
        self._queue(answer)
        self._emit(AuthenticationFailed(mechanism=name, reply=answer))

    def _answer_credentials(self, decision: Decision) -> None:
        exchange = self._sasl
        assert exchange is not None
        if isinstance(decision, Reject):
            self._pending = None
            self._auth_end(decision.reply)
            return
        if not isinstance(decision, ANSWERS):
            raise LocalProtocolError("answer NeedCredentials with a sasl credentials answer")
        self._pending = None
        self._auth_step(exchange.provide(decision))

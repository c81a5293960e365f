"""The registry, the public names, and the purity of the SASL layer."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import mailagents.sasl as sasl
from mailagents._protocol import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailagents.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    AuthenticationError,
    Challenge,
    CramMd5Client,
    Failure,
    LoginClient,
    NeedCredentials,
    NoSuchUser,
    OAuthBearerClient,
    PasswordVerdict,
    PlainClient,
    PlainServer,
    ScramSecrets,
    ScramSha256Client,
    ScramSha256Server,
    Success,
    server_mechanism,
)


def test_server_registry() -> None:
    assert list(SERVER_MECHANISMS) == ["SCRAM-SHA-256", "OAUTHBEARER", "PLAIN", "LOGIN"]
    assert SERVER_MECHANISMS["PLAIN"] is PlainServer
    assert SERVER_MECHANISMS["SCRAM-SHA-256"] is ScramSha256Server
    for name, cls in SERVER_MECHANISMS.items():
        assert cls.name == name


def test_client_registry() -> None:
    assert dict(CLIENT_MECHANISMS) == {
        "SCRAM-SHA-256": ScramSha256Client,
        "OAUTHBEARER": OAuthBearerClient,
        "PLAIN": PlainClient,
        "LOGIN": LoginClient,
        "CRAM-MD5": CramMd5Client,
    }


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("PLAIN", PlainServer),
        ("plain", PlainServer),
        ("Scram-Sha-256", ScramSha256Server),
        ("SCRAM-SHA-256", ScramSha256Server),
    ],
)
def test_server_mechanism(name: str, cls: type) -> None:
    first, second = server_mechanism(name), server_mechanism(name)
    assert type(first) is cls
    assert first is not second  # single-use objects: a fresh one each time


@pytest.mark.parametrize("name", ["CRAM-MD5", "SCRAM-SHA-256-PLUS", "", "PLAIN "])
def test_unknown_mechanism(name: str) -> None:
    with pytest.raises(KeyError):
        server_mechanism(name)


def test_registries_are_read_only() -> None:
    with pytest.raises(TypeError):
        SERVER_MECHANISMS["X"] = PlainServer  # type: ignore[index]


def test_errors() -> None:
    assert sasl.LocalProtocolError is LocalProtocolError
    assert sasl.RemoteProtocolError is RemoteProtocolError
    assert issubclass(AuthenticationError, ProtocolError)


def test_public_names_are_exported_and_documented() -> None:
    for name in sasl.__all__:
        obj = getattr(sasl, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name
    assert sorted(sasl.__all__) == sorted(set(sasl.__all__))


@pytest.mark.parametrize(
    "cls", [Challenge, NeedCredentials, Success, Failure, PasswordVerdict, ScramSecrets, NoSuchUser]
)
def test_steps_and_answers_are_frozen_slotted_keyword_only(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen
    assert "__slots__" in cls.__dict__
    if dataclasses.fields(cls):
        with pytest.raises(TypeError):
            cls(*[b"x"] * len(dataclasses.fields(cls)))


def test_steps_are_immutable() -> None:
    step = Challenge(data=b"")
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.data = b"x"  # type: ignore[misc]


FORBIDDEN = {"asyncio", "socket", "ssl", "os", "time", "logging", "select", "threading"}


def test_the_layer_is_pure() -> None:
    package = Path(sasl.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                assert top != "mailagents" or name.startswith(
                    ("mailagents.sasl", "mailagents._protocol")
                ), f"{path.name} imports {name}"

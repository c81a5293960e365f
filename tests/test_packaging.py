"""Packaging promises: typed, one version, and a documented public API."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path

import pytest

import mailagents

ROOT = Path(__file__).resolve().parent.parent

# Public packages; those not written yet are skipped, except the first two, which exist.
REQUIRED_PACKAGES = ["mailagents.smtp", "mailagents.sasl"]
OPTIONAL_PACKAGES = [
    "mailagents.aio",
    "mailagents.pop3",
    "mailagents.imap",
    "mailagents.store",
    "mailagents.queue",
    "mailagents.agents",
]


def test_py_typed_marker() -> None:
    assert (ROOT / "mailagents" / "py.typed").is_file()


def test_version_matches_pyproject() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert mailagents.__version__ == version


def _own_docstring(obj: object) -> str | None:
    doc = obj.__doc__
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        # dataclasses fill in a missing docstring with the signature, "Name(a: int, ...)"
        if doc and doc.startswith(f"{obj.__name__}(") and "__dataclass_fields__" in vars(obj):
            return None
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def _packages() -> list[str]:
    # A package is present once it has an __init__.py (an empty folder is not one).
    return REQUIRED_PACKAGES + [
        name
        for name in OPTIONAL_PACKAGES
        if (ROOT.joinpath(*name.split(".")) / "__init__.py").is_file()
    ]


@pytest.mark.parametrize("name", ["mailagents", *_packages()])
def test_public_names_are_exported_and_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert _own_docstring(module), f"{name} has no module docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert isinstance(exported, list | tuple), f"{name}.__all__ is not a list"
    assert all(isinstance(item, str) for item in exported)
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    if name != "mailagents":
        assert exported, f"{name}.__all__ is empty"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what {name} does not define: {missing}"
    undocumented = [
        item
        for item in exported
        if (inspect.isclass(obj := getattr(module, item)) or inspect.isroutine(obj))
        and not _own_docstring(obj)
    ]
    assert not undocumented, f"{name} exports names without a docstring: {undocumented}"

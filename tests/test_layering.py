"""The layering of docs/design.rst, enforced.

A module imports only from layers with a smaller number:

1. protocol cores ``smtp``, ``pop3``, ``imap``, ``sasl`` (plus the shared private
   top-level modules such as ``_protocol`` and the root ``__init__``, which every core
   import runs): sans-I/O, so no sockets, asyncio, ssl, clock, filesystem, threads,
   processes or logging either;
2. ``store``, ``dns``, ``queue``, ``userdb``, ``delivery``;
3. ``aio``;
4. ``agents``;
5. ``__main__``.

Checked two ways: an ``ast`` walk over the source here (which also sees imports hidden
under ``if TYPE_CHECKING:`` or inside functions), and import-linter's contract in
pyproject.toml when ``lint-imports`` is installed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailagents"

CORES = frozenset({"smtp", "pop3", "imap", "sasl"})

# Layer number of each top-level component of the package.
LAYER: dict[str, int] = {
    **dict.fromkeys(CORES, 1),
    "store": 2,
    "dns": 2,
    "queue": 2,
    "userdb": 2,
    "delivery": 2,
    "aio": 3,
    "agents": 4,
    "__main__": 5,
    "_cli_mda": 5,
    "_cli_queue": 5,
    "_cli_fetch": 5,
    "_cli_sendmail": 5,
    "_cli_serve": 5,
    "_cli_demo": 5,
    "_serve_config": 5,
    "_fetch_config": 5,
    "_config_keys": 5,
}

# Standard library (and third-party) modules that a protocol core must not import:
# I/O, event loops, TLS, clocks, the filesystem, threads and processes, logging, DNS.
CORE_FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "concurrent",
        "dns",
        "fcntl",
        "glob",
        "importlib",
        "logging",
        "mmap",
        "multiprocessing",
        "os",
        "pathlib",
        "selectors",
        "shutil",
        "signal",
        "socket",
        "socketserver",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
    }
)
# Built-ins that do I/O.
CORE_FORBIDDEN_CALLS = frozenset({"open", "print", "input", "__import__", "breakpoint"})


def component_of(path: Path) -> str:
    """The top-level component a source file belongs to: ``smtp`` for
    mailagents/smtp/_reply.py, ``dns`` for mailagents/dns.py, ``_protocol`` for
    mailagents/_protocol.py and ``__init__`` for the root package."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def layer_of(component: str) -> int:
    # Shared private top-level modules and the root __init__ are imported by the
    # cores, so they are held to the cores' rules.
    return LAYER.get(component, 1)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Violation:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module name an import statement in ``tree`` may load, absolute."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from mailagents import aio` loads mailagents.aio
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def check_source(source: str, path: Path) -> list[Violation]:
    """The layering violations in ``source``, read as if it were the file ``path``
    (which must lie under mailagents/)."""
    component = component_of(path)
    layer = layer_of(component)
    is_package = path.name == "__init__.py"
    tree = ast.parse(source, filename=str(path))
    violations: list[Violation] = []
    for line, name in _imported(tree, module_name(path), is_package):
        parts = name.split(".")
        if parts[0] == "mailagents":
            if len(parts) < 2:
                continue
            target = parts[1]
            if target in LAYER and LAYER[target] > layer:
                violations.append(
                    Violation(
                        line,
                        f"{component} (layer {layer}) imports {name} (layer {LAYER[target]})",
                    )
                )
        elif layer == 1 and parts[0] in CORE_FORBIDDEN_MODULES:
            violations.append(
                Violation(line, f"protocol core {component} imports {name}: cores are sans-I/O")
            )
    if layer == 1:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in CORE_FORBIDDEN_CALLS
            ):
                violations.append(
                    Violation(node.lineno, f"protocol core {component} calls {node.func.id}()")
                )
    return violations


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", _sources(), ids=_id)
def test_module_respects_layers(path: Path) -> None:
    violations = check_source(path.read_text(encoding="utf-8"), path)
    assert not violations, f"{_id(path)} breaks the layering:\n" + "\n".join(map(str, violations))


def test_cores_are_checked() -> None:
    cores = [p for p in _sources() if component_of(p) in CORES]
    assert any(component_of(p) == "smtp" for p in cores)
    assert any(component_of(p) == "sasl" for p in cores)


# --- the checker itself must be able to fail -------------------------------------------

SMTP_MODULE = PACKAGE / "smtp" / "_example.py"
SMTP_INIT = PACKAGE / "smtp" / "__init__.py"


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("import socket\n", SMTP_MODULE),
        ("import asyncio.streams\n", SMTP_MODULE),
        ("from ssl import SSLContext\n", SMTP_MODULE),
        ("from os import urandom\n", PACKAGE / "sasl" / "_scram.py"),
        ("import time\n", PACKAGE / "imap" / "_state.py"),
        ("import logging\n", PACKAGE / "pop3" / "__init__.py"),
        ("if TYPE_CHECKING:\n    import ssl\n", SMTP_MODULE),
        ("def f():\n    import threading\n", SMTP_MODULE),
        ("print('hello')\n", SMTP_MODULE),
        ("open('x')\n", SMTP_MODULE),
        ("import mailagents.aio\n", SMTP_MODULE),
        ("from mailagents import store\n", SMTP_MODULE),
        ("from mailagents.agents import MTA\n", SMTP_MODULE),
        ("from mailagents.dns import resolve_mx\n", SMTP_MODULE),
        ("from ..aio import listener\n", SMTP_MODULE),
        ("from .. import queue\n", SMTP_MODULE),
        ("from ..queue import Spool\n", SMTP_INIT),
        ("from mailagents import __main__\n", SMTP_MODULE),
        ("from mailagents.aio import serve\n", PACKAGE / "_protocol.py"),
        ("import socket\n", PACKAGE / "__init__.py"),
        ("from mailagents.aio import Listener\n", PACKAGE / "store" / "_maildir.py"),
        ("from ..agents import MDA\n", PACKAGE / "queue" / "__init__.py"),
        ("from . import aio\n", PACKAGE / "dns.py"),
        ("from mailagents.agents import MTA\n", PACKAGE / "aio" / "_listener.py"),
        ("from mailagents.__main__ import main\n", PACKAGE / "agents" / "mta.py"),
    ],
)
def test_checker_flags_forbidden_imports(source: str, path: Path) -> None:
    assert check_source(source, path), f"not flagged: {source!r} in {path.name}"


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("import re\nfrom dataclasses import dataclass\n", SMTP_MODULE),
        ("from mailagents._protocol import LocalProtocolError\n", SMTP_MODULE),
        ("from mailagents.sasl import Plain\n", SMTP_MODULE),
        ("from ._reply import Reply\n", SMTP_MODULE),
        ("from .. import _protocol\n", SMTP_MODULE),
        ("import hashlib, hmac, secrets, base64\n", PACKAGE / "sasl" / "_scram.py"),
        (
            "import os\nimport logging\nfrom mailagents.smtp import Reply\n",
            PACKAGE / "store" / "_maildir.py",
        ),
        (
            "import asyncio, ssl\nfrom mailagents import store, dns, smtp\n",
            PACKAGE / "aio" / "_listener.py",
        ),
        (
            "from mailagents.aio import serve\nfrom mailagents.store import Maildir\n",
            PACKAGE / "agents" / "mta.py",
        ),
        ("from mailagents.agents import MTA\n", PACKAGE / "__main__.py"),
    ],
)
def test_checker_allows_permitted_imports(source: str, path: Path) -> None:
    assert check_source(source, path) == []


# --- import-linter ---------------------------------------------------------------------


def _lint_imports() -> str | None:
    beside = Path(sys.executable).parent / "lint-imports"
    if beside.exists():
        return str(beside)
    return shutil.which("lint-imports")


def test_import_linter_contract() -> None:
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        "lint-imports failed (contract in pyproject.toml [tool.importlinter]; a layer "
        "whose package does not exist yet must be written in parentheses, optional):\n"
        + result.stdout
        + result.stderr
    )

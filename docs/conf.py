"""Sphinx configuration for the mailagents documentation.

Build with ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html``; the
test suite (tests/test_docs.py) and .ci/run build with the same flags, so a warning or
a broken cross-reference fails CI. There is no network here, so no intersphinx: names
from the standard library that appear in signatures are listed in ``nitpick_ignore_regex``.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

with (ROOT / "pyproject.toml").open("rb") as f:
    _project = tomllib.load(f)["project"]

project = "mailagents"
author = "The mailagents developers"
copyright = "The mailagents developers"
release = _project["version"]
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "statemachine",  # docs/_ext: state diagrams drawn from the cores' tables
]
graphviz_output_format = "svg"

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

html_theme = "furo"
html_title = f"mailagents {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True}

# Nitpicky mode (-n) flags every unresolved reference. Without intersphinx the
# standard library cannot be resolved (builtins and typing are handled by Sphinx
# itself), so ignore references into these stdlib modules. Add to the list rather than
# dropping -n; a reference to a mailagents name that fails is a real documentation bug.
_STDLIB = (
    "abc",
    "asyncio",
    "collections",
    "concurrent",
    "contextlib",
    "dataclasses",
    "datetime",
    "email",
    "enum",
    "hashlib",
    "hmac",
    "ipaddress",
    "os",
    "pathlib",
    "re",
    "socket",
    "ssl",
    "types",
    "typing",
    "typing_extensions",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_STDLIB)})(\..*)?"),
    # Private modules are not documented, but a public class may name a private base
    # (show-inheritance), e.g. mailagents._protocol.ProtocolError.
    (r"py:class", r"mailagents\.(.*\.)?_[a-z][a-z0-9_]*\..*"),
    # Recursive type aliases (a value holding lists of itself) are written as strings,
    # which autodoc shows by name in signatures; each is documented as data.
    (r"py:class", r"BodyExtension|ExtValue"),
]

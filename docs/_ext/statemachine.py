"""``.. state-machine:: module``: draw a core's transition table (its ``TRANSITIONS``).

The diagram is made from the table the core executes (mailagents._protocol.to_dot), so
it cannot drift from the code. With Graphviz's ``dot`` installed it is drawn by
sphinx.ext.graphviz; without it the DOT source is shown as a literal block, so that the
build stays free of warnings on a machine without Graphviz.
"""

from __future__ import annotations

import importlib
import shutil
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.ext.graphviz import graphviz
from sphinx.util.docutils import SphinxDirective

from mailagents._protocol import to_dot


class StateMachine(SphinxDirective):
    required_arguments = 1
    option_spec = {"hide": directives.unchanged, "caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        module = importlib.import_module(self.arguments[0])
        initial = getattr(module, "INITIAL", ())
        if isinstance(initial, dict):
            initial = list(initial.values())
        elif not isinstance(initial, list | tuple):
            initial = [initial]
        hide = (self.options.get("hide") or "").split()
        name = self.arguments[0].replace(".", "_")
        dot = to_dot(module.TRANSITIONS, name, initial=initial, hide=hide)
        caption = self.options.get("caption")
        if shutil.which(self.config.graphviz_dot):
            node = graphviz()
            node["code"] = dot
            node["options"] = {"docname": self.env.docname}
            if caption:
                node["caption"] = caption
            node["alt"] = caption or f"state diagram of {self.arguments[0]}"
            return [node]
        block = nodes.literal_block(dot, dot)
        block["language"] = "text"
        if caption:
            return [nodes.paragraph(text=caption + " (Graphviz source):"), block]
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.graphviz")
    app.add_directive("state-machine", StateMachine)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

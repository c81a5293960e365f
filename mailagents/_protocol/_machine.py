"""State machines as data: the shape every core's ``_state.py`` table has, and what the
cores, the tests and the documentation do with it.

A table maps each state to its row, ``{input: next state}``; an input is a command
verb (taken once the command is accepted) or a named event. A core executes it with
:func:`compile_moves`: a session keeps its current row, so each transition is one lookup
by input (a ``str``, whose hash is cached) and never hashes an enum member (an enum's
``__hash__`` is written in Python).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias, TypeVar

__all__ = ["Moves", "compile_moves", "reachable", "to_dot"]

S = TypeVar("S")

Moves: TypeAlias = "dict[str, tuple[S, Moves[S]]]"
"""A state's row as a core holds it: input -> (next state, that state's own row)."""


def compile_moves(table: Mapping[S, Mapping[str, S]]) -> dict[S, Moves[S]]:
    """Each state's row with every target's row beside it, for a core's ``_transition``:
    ``self._state, self._row = self._row[input]``."""
    moves: dict[S, Moves[S]] = {state: {} for state in table}
    for state, row in table.items():
        for event, target in row.items():
            moves[state][event] = (target, moves[target])
    return moves


def reachable(table: Mapping[S, Mapping[str, S]], initial: Iterable[S]) -> set[S]:
    """The states that some sequence of inputs reaches from ``initial``."""
    seen = set(initial)
    frontier = list(seen)
    while frontier:
        for target in table[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def to_dot(
    table: Mapping[S, Mapping[str, S]],
    name: str,
    *,
    initial: Iterable[S] = (),
    hide: Iterable[str] = (),
) -> str:
    """The table as a Graphviz ``digraph`` (for the documentation): one edge per
    (state, next state) labelled with its inputs; self-loops and the inputs in ``hide``
    (such as a close that every state has) are left out to keep the drawing readable."""

    def label(state: S) -> str:
        return str(getattr(state, "name", state))

    hidden = set(hide)
    lines = [f"digraph {name} {{", "    rankdir=LR;", '    node [shape=box, style=rounded];']
    for state in initial:
        lines.append(f'    "{label(state)}" [style="rounded,bold"];')
    for state, row in table.items():
        edges: dict[str, list[str]] = {}
        for event, target in row.items():
            if target is state or event in hidden:
                continue
            edges.setdefault(label(target), []).append(event)
        for target_label, events in edges.items():
            text = "\\n".join(sorted(events))
            lines.append(f'    "{label(state)}" -> "{target_label}" [label="{text}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"

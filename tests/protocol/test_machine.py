"""The shared state-machine helpers (mailagents/_protocol/_machine.py)."""

from __future__ import annotations

import enum

from mailagents._protocol import compile_moves, reachable, to_dot


class S(enum.Enum):
    A = "a"
    B = "b"
    C = "c"
    D = "d"  # reached by nothing


TABLE = {S.A: {"go": S.B, "stay": S.A}, S.B: {"go": S.C, "back": S.A}, S.C: {}, S.D: {"x": S.A}}


def test_each_move_carries_the_targets_row() -> None:
    moves = compile_moves(TABLE)
    state, row = moves[S.A]["go"]
    assert state is S.B and row is moves[S.B]
    state, row = row["go"]
    assert state is S.C and row == {}
    assert moves[S.A]["stay"][1] is moves[S.A]
    assert set(moves[S.B]) == {"go", "back"}


def test_reachable_follows_every_input() -> None:
    assert reachable(TABLE, [S.A]) == {S.A, S.B, S.C}
    assert reachable(TABLE, [S.D]) == set(S)
    assert reachable(TABLE, [S.C]) == {S.C}


def test_dot_has_one_edge_per_pair_without_self_loops_or_hidden_inputs() -> None:
    dot = to_dot(TABLE, "t", initial=[S.A], hide=["back"])
    assert dot.startswith("digraph t {") and dot.rstrip().endswith("}")
    assert '"A" -> "B" [label="go"];' in dot
    assert '"B" -> "C" [label="go"];' in dot
    assert '"A" -> "A"' not in dot  # self-loop left out
    assert '"B" -> "A"' not in dot  # hidden input
    assert '"A" [style="rounded,bold"];' in dot


def test_dot_joins_the_inputs_of_one_edge() -> None:
    dot = to_dot({S.A: {"y": S.B, "x": S.B}, S.B: {}}, "t")
    assert '"A" -> "B" [label="x\\ny"];' in dot

"""The packing fallback's CP-SAT model against brute force on small instances."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dodoor.packing import (PackingProblem, PackingSettings, integer_instance, select_nodes,
                            solve)

SETTINGS = PackingSettings(time_limit_s=5.0)


def brute_force(problem: PackingProblem) -> int:
    """The best placed value over every assignment (ties: fewer moves are not compared)."""
    data = integer_instance(problem)
    room, free, demand = data["room"], data["free_slots"], data["demand"]
    movable, value = data["movable"], data["value"]
    n = len(room)
    capacity = problem.capacity * [1000, 1, 1]
    best = 0
    for y in itertools.product(range(-1, n), repeat=len(demand)):
        for x in itertools.product(range(n), repeat=len(movable)):
            # a queued task moves only to a node that can ever hold it
            ok = all(x[k] == data["origin"][k] or all(movable[k] <= capacity[x[k]])
                     for k in range(len(movable)))
            for j in range(n):
                mine = [t for t, node in enumerate(y) if node == j]
                if not mine:
                    continue
                incoming = [k for k, node in enumerate(x) if node == j]
                for r in range(3):
                    if (sum(demand[t][r] for t in mine)
                            + sum(movable[k][r] for k in incoming) > room[j][r]):
                        ok = False
                if len(mine) + len(incoming) > free[j]:
                    ok = False
            if ok:
                best = max(best, sum(value[t] for t, node in enumerate(y) if node >= 0))
    return best


def problem(capacity, slots, load, entries, demands, priorities, movable_node=(),
            movable_demand=()):
    return PackingProblem(
        capacity=np.array(capacity, float), slots=np.array(slots, float),
        load=np.array(load, float), entries=np.array(entries, float),
        demands=np.array(demands, float).reshape(-1, 3),
        priorities=np.array(priorities, int), work=np.ones(len(priorities)),
        movable_node=np.array(movable_node, int),
        movable_demand=np.array(movable_demand, float).reshape(-1, 3))


def test_moving_a_queued_low_task_makes_room_for_a_high_one():
    # node 0: 4 cores, 3 of them committed by a queued low task; node 1 holds 2 of 2
    # cores in a running task and has 4 cores free of its 8 — room for the low task only
    p = problem(capacity=[[4, 1000, 0], [8, 1000, 0]], slots=[2, 2],
                load=[[3, 100, 0], [4, 100, 0]], entries=[1, 1],
                demands=[[4, 100, 0]], priorities=[2],
                movable_node=[0], movable_demand=[[3, 100, 0]])
    result = solve(p, SETTINGS)
    assert result.placed == (1,) or result.placed == (0,)
    assert result.proven
    if result.placed == (0,):  # the room on node 0 was made by moving the low task away
        assert result.moves == ((0, 0, 1),)
    else:
        assert result.moves == ()


def test_a_proven_empty_answer_when_nothing_can_fit():
    p = problem(capacity=[[4, 1000, 0]], slots=[1], load=[[4, 100, 0]], entries=[1],
                demands=[[2, 100, 0]], priorities=[3])
    result = solve(p, SETTINGS)
    assert (result.placed, result.moves, result.status) == ((-1,), (), "optimal")


def test_moves_are_made_only_when_they_buy_room():
    p = problem(capacity=[[4, 1000, 0], [4, 1000, 0]], slots=[2, 2],
                load=[[1, 100, 0], [0, 0, 0]], entries=[1, 0],
                demands=[[2, 100, 0]], priorities=[1],
                movable_node=[0], movable_demand=[[1, 100, 0]])
    result = solve(p, SETTINGS)
    assert result.placed[0] in (0, 1) and result.moves == ()


instances = st.builds(
    lambda n, caps, loads, tasks, moves: (n, caps[:n], loads[:n], tasks, moves),
    st.integers(1, 3),
    st.lists(st.tuples(st.integers(1, 8), st.integers(1, 4)), min_size=3, max_size=3),
    st.lists(st.integers(0, 6), min_size=3, max_size=3),
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), max_size=2),
)


@settings(max_examples=40, deadline=None)
@given(instances)
def test_the_solver_matches_brute_force(instance):
    n, caps, loads, tasks, moves = instance
    moves = [(node % n, size) for node, size in moves]
    load = [[min(float(l), 8.0) + sum(s for node, s in moves if node == j), 100, 0]
            for j, l in enumerate(loads)]
    entries = [(1 if loads[j] else 0) + sum(1 for node, _ in moves if node == j)
               for j in range(n)]
    p = problem(capacity=[[c, 1000, 0] for c, _ in caps], slots=[s for _, s in caps],
                load=load, entries=entries,
                demands=[[c, 10, 0] for c, _ in tasks], priorities=[q for _, q in tasks],
                movable_node=[node for node, _ in moves],
                movable_demand=[[s, 10, 0] for _, s in moves])
    result = solve(p, SETTINGS)
    assert result.proven
    assert result.objective == brute_force(p)


def test_select_nodes_keeps_the_roomiest_that_can_hold_the_window():
    capacity = np.array([[4, 100, 0], [16, 100, 0], [8, 100, 0], [2, 100, 0]], float)
    load = np.array([[0, 0, 0], [13, 0, 0], [1, 0, 0], [0, 0, 0]], float)
    chosen = select_nodes(capacity, load, np.ones(4), np.zeros(4),
                          np.array([[3, 10, 0]], float), 2)
    assert chosen.tolist() == [0, 2]  # node 3 cannot hold 3 cores; node 1 has least room


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="time_limit_s must be > 0 and finite, got 0"):
        PackingSettings(time_limit_s=0)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        PackingSettings(window=0)


room_cases = st.tuples(
    st.lists(st.tuples(st.sampled_from([1.0, 2.0, 4.0, 8.0]),  # capacity cores
                       st.floats(0.0, 9.0),  # committed cores
                       st.integers(0, 3), st.integers(1, 3)),  # entries, slots
             min_size=1, max_size=5),
    st.sampled_from([0.5, 1.0, 2.0, 3.999999, 4.0, 8.0]))


@settings(max_examples=200, deadline=None)
@given(room_cases)
def test_the_one_node_room_check_agrees_with_the_candidates_view(case):
    """node_has_room (the live fast path) says what view_has_room says of each node,
    and some node has room exactly when the view says so."""
    from dodoor.cache import CandidateView, N_STATE
    from dodoor.packing import node_has_room, view_has_room
    nodes, cores = case
    n = len(nodes)
    capacity = np.array([[c, 1024.0, 10.0] for c, _, _, _ in nodes])
    state = np.zeros((n, N_STATE))
    state[:, 0] = [used for _, used, _, _ in nodes]
    state[:, 3] = [entries for _, _, entries, _ in nodes]
    slots = np.array([float(s) for _, _, _, s in nodes])
    demand = np.array([cores, 256.0, 0.0])
    each = [node_has_room(capacity, state, slots, j, demand) for j in range(n)]
    for j in range(n):
        one = CandidateView(np.array([j]), capacity[[j]], state[[j]], slots[[j]])
        assert each[j] == view_has_room(one, demand)
    whole = CandidateView(np.arange(n), capacity, state, slots)
    assert any(each) == view_has_room(whole, demand)

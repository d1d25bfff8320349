"""The load store's task index (dodoor.taskindex): claims and lookups, exactly, on a ManualClock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dodoor.clock import ManualClock
import pytest

from dodoor.taskindex import BUSY, ENDED, LOST, MINE, NEW, PLACED, UNKNOWN, TaskIndex

ALIVE = lambda node: False  # noqa: E731  (no node declared dead)


def test_first_claim_wins_and_the_node_report_settles_it():
    clock = ManualClock()
    index = TaskIndex(clock, claim_ttl_ms=1000)
    assert index.lookup(["t"], "s1/a", True, ALIVE) == ([NEW], [""], ["s1/a"], [""])
    assert index.lookup(["t"], "s2/b", True, ALIVE) == ([BUSY], [""], ["s1/a"], [""])
    assert index.lookup(["t"], "s1/a", True, ALIVE) == ([MINE], [""], ["s1/a"], [""])
    index.placed("n1", ["t"])
    assert index.lookup(["t"], "s2/b", True, ALIVE) == ([PLACED], ["n1"], ["s1/a"], [""])
    assert index.lookup(["t"], "s2/b", False, ALIVE)[0] == [PLACED]


def test_an_unreported_claim_expires_after_the_ttl_and_only_then():
    clock = ManualClock()
    index = TaskIndex(clock, claim_ttl_ms=1000)
    index.lookup(["t"], "s1/a", True, ALIVE)
    clock.advance(1000)
    assert index.lookup(["t"], "s2/b", True, ALIVE)[0] == [BUSY]
    clock.advance(1)
    assert index.lookup(["t"], "s2/b", True, ALIVE) == ([NEW], [""], ["s2/b"], [""])
    assert index.lookup(["t"], "s1/a", True, ALIVE)[0] == [BUSY]


def test_ids_of_a_dead_node_read_lost_and_a_claim_places_them_again():
    index = TaskIndex(ManualClock())
    index.placed("n1", ["t"])
    dead = lambda node: node == "n1"  # noqa: E731
    assert index.lookup(["t", "u"], "s/a", False, dead) == ([LOST, UNKNOWN], ["n1", ""], ["", ""], ["", ""])
    assert index.lookup(["t"], "s/a", True, dead) == ([NEW], [""], ["s/a"], [""])
    assert index.node_of("t") is None


def test_the_index_is_bounded_least_recently_touched_first():
    index = TaskIndex(ManualClock(), limit=2)
    index.placed("n", ["a", "b"])
    index.lookup(["a"], "s", False, ALIVE)  # touch a: b is now the oldest
    index.placed("n", ["c"])
    assert (index.node_of("a"), index.node_of("b"), index.node_of("c")) == ("n", None, "n")
    assert len(index) == 2


@given(st.lists(st.tuples(st.sampled_from(["s1/a", "s2/b", "s3/c"]),
                          st.lists(st.sampled_from("abcdef"), max_size=4),
                          st.integers(0, 3)), max_size=40))
def test_each_id_is_claimed_new_once_while_its_claims_are_fresh(steps):
    """Whatever the interleaving of claims (and of time short of the TTL), each id is
    ``new`` for exactly one scheduler: one placement cluster-wide."""
    clock = ManualClock()
    index = TaskIndex(clock, claim_ttl_ms=10_000)
    winners: dict[str, str] = {}
    for scheduler, ids, advance in steps:
        clock.advance(advance)
        outcomes, _, owners, _ = index.lookup(ids, scheduler, True, ALIVE)
        for task_id, outcome, owner in zip(ids, outcomes, owners):
            if outcome == NEW:
                assert task_id not in winners or winners[task_id] == scheduler
                winners[task_id] = scheduler
            else:
                assert owner == winners[task_id]
                assert outcome == (MINE if scheduler == owner else BUSY)


def test_while_a_node_has_not_resent_its_ids_an_unseen_id_is_busy_not_new():
    index = TaskIndex(ManualClock())
    assert index.lookup(["t"], "s/a", True, ALIVE, complete=False) == ([BUSY], [""], [""], [""])
    assert index.lookup(["t"], "s/a", False, ALIVE, complete=False)[0] == [BUSY]
    index.placed("n1", ["t"])  # the node's resend arrives
    assert index.lookup(["t"], "s/a", True, ALIVE, complete=False)[0] == [PLACED]
    assert index.lookup(["u"], "s/a", True, ALIVE, complete=True)[0] == [NEW]


def test_a_dead_nodes_reported_ends_keep_their_state_and_only_unfinished_ids_are_lost():
    index = TaskIndex(ManualClock())
    # accepted, then (next report) two ended; "r" ended lost in an earlier fence
    index.placed("n1", ["done", "bad", "run", "r"], ["", "", "", ""])
    index.placed("n1", ["done", "bad", "r"], ["succeeded", "failed", "lost"])
    dead = lambda node: node == "n1"  # noqa: E731
    ids = ["done", "bad", "run", "r"]
    assert index.lookup(ids, "s/a", False, dead, ended=True) == (
        [ENDED, ENDED, LOST, LOST], ["n1"] * 4, [""] * 4, ["succeeded", "failed", "", ""])
    # an older scheduler (no ``ended``) reads lost, as before
    assert index.lookup(["done"], "s/a", False, dead)[0] == [LOST]
    # a claim takes the unfinished ids only: an ended one is never placed again
    assert index.lookup(ids, "s/a", True, dead, ended=True)[0] == [ENDED, ENDED, NEW, NEW]
    # the fenced life is told which of its reported ends the store holds
    assert index.ended_at("n1", ["done", "bad", "run", "nope"]) == ("done", "bad")
    # the same node alive again answers for all of them itself
    assert index.lookup(["done"], "s/a", False, ALIVE, ended=True)[0] == [PLACED]


def test_a_resubmitted_id_accepted_again_is_unfinished_until_its_new_end_is_reported():
    index = TaskIndex(ManualClock())
    index.placed("n1", ["t"], ["lost"])
    index.placed("n2", ["t"], [""])  # re-run elsewhere: the old end no longer stands
    dead = lambda node: True  # noqa: E731
    assert index.lookup(["t"], "s", False, dead, ended=True)[0] == [LOST]
    assert index.ended_at("n1", ["t"]) == ()
    index.placed("n2", ["t"], ["succeeded"])
    assert index.ended_at("n2", ["t"]) == ("t",)


def test_an_unfinished_copy_elsewhere_never_takes_a_reported_end():
    """Seen live (Sparrow): n0, killed holding a reservation for "late", restarted in
    time and resent it unfinished after n1 had run "late" and reported it succeeded.
    The index moved "late" to n0, so when n1 died its heard end was voided (``lost``).
    An ended id is never placed again, so such a copy never runs: n1's end stands."""
    index = TaskIndex(ManualClock())
    index.placed("n1", ["late"], [""])
    index.placed("n1", ["late"], ["succeeded"])
    index.placed("n0", ["late"], [""])  # n0's restart resends its reservation
    assert index.node_of("late") == "n1"
    assert index.ended_at("n1", ["late"]) == ("late",)
    n1_dead = lambda node: node == "n1"  # noqa: E731
    assert index.lookup(["late"], "s", True, n1_dead, ended=True)[:2] == ([ENDED], ["n1"])


def test_bad_reported_states_are_refused_naming_the_value():
    index = TaskIndex(ManualClock())
    with pytest.raises(ValueError, match="'running'"):
        index.placed("n1", ["t"], ["running"])
    with pytest.raises(ValueError, match="2 task states for 1 task ids"):
        index.placed("n1", ["t"], ["", ""])


def test_a_lost_end_from_one_node_never_takes_the_id_from_the_node_that_has_it():
    """Seen live (Sparrow, tests/faults/test_delivery.py): n0 held a reservation for
    "late" when it was killed and declared dead; n1 ran "late" and reported it
    succeeded. n0's restarted life ended its reservation ``lost`` and resent it: the
    index moved "late" to n0, so when n1 later died its heard end was voided and
    every scheduler read ``lost``; with n1 alive, a task running there read ``lost``."""
    index = TaskIndex(ManualClock())
    index.placed("n0", ["late", "run"], ["", ""])  # n0's reservations
    index.placed("n1", ["late", "run"], ["", ""])  # n1's reservations, confirmed here
    index.placed("n1", ["late"], ["succeeded"])
    index.placed("n0", ["late", "run"], ["lost", "lost"])  # n0's fenced copies
    assert (index.node_of("late"), index.node_of("run")) == ("n1", "n1")
    assert index.lookup(["run"], "s", False, ALIVE, ended=True)[0] == [PLACED]
    n1_dead = lambda node: node == "n1"  # noqa: E731
    assert index.ended_at("n1", ["late"]) == ("late",)  # n1's fence keeps its result
    assert index.lookup(["late", "run"], "s", False, n1_dead, ended=True) == (
        [ENDED, LOST], ["n1", "n1"], ["", ""], ["succeeded", ""])


def test_a_lost_end_leaves_a_resubmissions_claim_and_its_new_node_alone():
    """A lost id resubmitted: claimed for s, placed on n2; the old node n1 comes back
    fenced, in either order, and resends the id ``lost``. The index follows n2."""
    index = TaskIndex(ManualClock())
    index.placed("n1", ["t"])
    n1_dead = lambda node: node == "n1"  # noqa: E731
    assert index.lookup(["t"], "s", True, n1_dead)[0] == [NEW]
    index.placed("n1", ["t"], ["lost"])  # before the new placement is reported
    assert index.lookup(["t"], "s", True, ALIVE)[0] == [MINE]
    index.placed("n2", ["t"], [""])
    index.placed("n1", ["t"], ["lost"])  # after it
    assert index.lookup(["t"], "s2", True, ALIVE) == ([PLACED], ["n2"], ["s"], [""])
    # a node's own lost end is taken as before, and an unknown id is learnt from it
    index.placed("n3", ["u"], [""])
    index.placed("n3", ["u", "v"], ["lost", "lost"])
    assert index.lookup(["u", "v"], "s", False, lambda n: True, ended=True)[0] == [LOST, LOST]

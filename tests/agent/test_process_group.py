"""GroupHandle: what identifies a task's process group across an agent restart."""

import subprocess
import time

import psutil
import pytest

from node_agent import process_group
from node_agent.process_group import SLACK_S, GroupHandle


@pytest.fixture
def group():
    """A live group: ``sh`` leading it, a ``sleep`` child in it."""
    spawned_after = time.time()
    leader = subprocess.Popen(["sh", "-c", "sleep 30; true"], start_new_session=True)
    handle = GroupHandle.of_leader(leader.pid, spawned_after)
    deadline = time.monotonic() + 5
    while len(process_group.members(handle)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield handle
    process_group.end(handle, 5.0)
    leader.wait(5)


def test_handle_round_trips_and_a_bad_one_is_named():
    handle = GroupHandle(123, 10.5, 10.5, 1.0)
    assert GroupHandle.decode(handle.encode()) == handle
    unknown = GroupHandle(123, 9.0, None, 1.0)
    assert GroupHandle.decode(unknown.encode()) == unknown
    for bad in ("3f2a9c", "{}", '{"pgid": "x", "not_before": 1, "leader_started": 1, "boot": 1}'):
        with pytest.raises(ValueError, match="not a process group handle") as info:
            GroupHandle.decode(bad)
        assert repr(bad) in str(info.value)


def test_members_are_the_whole_group(group):
    pids = {p.pid for p in process_group.members(group)}
    assert group.pgid in pids and len(pids) == 2


def test_a_leader_that_is_not_the_recorded_one_means_the_number_was_reused(group):
    # Same pgid, but the recorded leader started long before this one.
    stale = GroupHandle(group.pgid, group.not_before - 3600, group.leader_started - 3600,
                        group.boot)
    assert process_group.members(stale) == []
    assert process_group.end(stale, 1.0) == ([], [])


def test_another_boot_has_no_survivors(group):
    rebooted = GroupHandle(group.pgid, group.not_before, group.leader_started,
                           group.boot - 10 * SLACK_S)
    assert process_group.members(rebooted) == []


def test_processes_older_than_the_group_are_left_alone(group):
    # A lower bound only (leader unknown), later than every member: none counts.
    later = GroupHandle(group.pgid, time.time() + 60, None, group.boot)
    assert process_group.members(later) == []


def test_end_kills_and_waits(group):
    pids = [p.pid for p in process_group.members(group)]
    killed, left = process_group.end(group, 5.0)
    assert sorted(killed) == sorted(pids) and left == []
    for pid in pids:
        try:
            assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass

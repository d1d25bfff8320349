"""TaskQueue.fits_node_each: the batched enqueue's one-comparison fit check."""

import numpy as np

from dodoor.resources import Task
from node_agent.queue import TaskQueue


def task(tid, cores, mem=100.0):
    return Task(tid, cores, mem, 0.0, 1000.0)


def test_fits_node_each_agrees_with_fits_node_task_by_task():
    q = TaskQueue(np.array([4.0, 1000.0, 0.0]), slots=2)
    tasks = [task("a", 1.0), task("b", 5.0), task("c", 4.0, mem=1000.0), task("d", 1.0, mem=1001.0),
             task("e", 4.0 + 1e-12)]
    assert q.fits_node_each(tasks).tolist() == [q.fits_node(t) for t in tasks] == [
        True, False, True, False, True]
    assert q.fits_node_each([]).tolist() == []

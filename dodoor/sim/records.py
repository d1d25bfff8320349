"""Per-task outcome of a run, filled in by the simulated nodes."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from dodoor.resources import NodeSpec, Task

NAN = math.nan
CSV_COLUMNS = ("task_id", "submit_ms", "placed_ms", "start_ms", "end_ms", "node")


class TaskRecords:
    """Times of every task by trace index (plain lists: written once per event)."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        n = len(tasks)
        self.task_ids = [t.task_id for t in tasks]
        self.submit = [t.arrival_ms for t in tasks]
        self.cores = [t.cores for t in tasks]
        self.memory_mb = [t.memory_mb for t in tasks]  # for the memory-use curve
        self.placed = [NAN] * n
        self.start = [NAN] * n
        self.end = [NAN] * n
        self.node = [-1] * n
        self.priority = [t.priority for t in tasks]
        self.finished = 0
        self.preempted = 0  # running tasks stopped and requeued for a higher class

    def __len__(self) -> int:
        return len(self.submit)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "submit_ms": np.asarray(self.submit, dtype=np.float64),
            "placed_ms": np.asarray(self.placed, dtype=np.float64),
            "start_ms": np.asarray(self.start, dtype=np.float64),
            "end_ms": np.asarray(self.end, dtype=np.float64),
            "node": np.asarray(self.node, dtype=np.int64),
            "cores": np.asarray(self.cores, dtype=np.float64),
            "memory_mb": np.asarray(self.memory_mb, dtype=np.float64),
            "priority": np.asarray(self.priority, dtype=np.int64),
        }

    def write_csv(self, path: str | Path, nodes: Sequence[NodeSpec]) -> None:
        """One row per task; the node column holds the node's id."""
        with Path(path).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for i, task_id in enumerate(self.task_ids):
                node = self.node[i]
                writer.writerow((
                    task_id, _ms(self.submit[i]), _ms(self.placed[i]), _ms(self.start[i]),
                    _ms(self.end[i]), nodes[node].node_id if node >= 0 else "",
                ))


def _ms(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"

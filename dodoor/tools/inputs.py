"""What a simulation run is made of and named by: tasks and nodes from a trace and a cluster.

The simulator takes tasks and nodes, never file paths; the tools that start runs
(``simulate``, ``sweep``, ``evaluate``, ``replay``) turn their options into both
here, and name each policy's output files with :func:`file_part`.
"""

from __future__ import annotations

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec, Task
from workloads.clusters import cluster_by_name
from workloads.dodoor_csv import bundled_trace, load_dodoor_csv
from workloads.load import scale_to_load
from workloads.registry import load_trace


def load_inputs(trace: str | None, cluster: str, limit: int | None,
                load: float | None) -> tuple[list[Task], list[NodeSpec]]:
    """Tasks (trimmed to ``limit``, rescaled to ``load`` unless None) and the cluster's nodes.

    ``trace`` None is the bundled 60-s Azure trace; ``cluster`` a name
    :func:`workloads.clusters.cluster_by_name` knows.
    """
    if limit is not None and limit < 1:
        raise ValidationError("limit", f"must be >= 1, got {limit}")
    nodes = cluster_by_name(cluster)
    if trace is None:
        tasks = load_dodoor_csv(bundled_trace(), limit=limit)
    else:
        tasks = load_trace(trace, limit=limit)
    if not tasks:
        raise ValidationError("trace", f"{trace or 'bundled trace'} holds no tasks")
    if load is not None:
        tasks = scale_to_load(tasks, nodes, load)
    return tasks, nodes


def file_part(spec: str) -> str:
    """A policy spec made safe for a file name (dodoor:d=8 -> dodoor_d8)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in spec.replace("=", ""))

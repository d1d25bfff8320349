"""Cluster specifications: the paper's 100 executors and scaled copies of its mix."""

from __future__ import annotations

from dodoor.errors import ValidationError
from dodoor.resources import NodeSpec

GIB = 1024
# (count in paper100, cores, memory MiB, disk MiB, slots) — docs/design.md §7.
PAPER_MIX: tuple[tuple[int, float, int, int, int], ...] = (
    (40, 8.0, 64 * GIB, 256 * GIB, 1),
    (25, 10.0, 64 * GIB, 256 * GIB, 1),
    (18, 16.0, 128 * GIB, 512 * GIB, 2),
    (17, 28.0, 128 * GIB, 512 * GIB, 4),
)


def paper100() -> list[NodeSpec]:
    """The Dodoor paper's 100 executors (169 slots in all)."""
    return scaled(100)


def scaled(n: int) -> list[NodeSpec]:
    """``n`` nodes in the paper's proportions (largest-remainder rounding)."""
    if n < 1:
        raise ValidationError("nodes", f"a cluster needs at least 1 node, got {n}")
    total = sum(c for c, *_ in PAPER_MIX)
    exact = [n * c / total for c, *_ in PAPER_MIX]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    nodes: list[NodeSpec] = []
    for count, (_, cores, memory, disk, slots) in zip(counts, PAPER_MIX):
        for _ in range(count):
            nodes.append(NodeSpec(f"node-{len(nodes):0{max(3, len(str(n - 1)))}d}", cores,
                                  float(memory), float(disk), slots))
    return nodes


def cluster_by_name(name: str) -> list[NodeSpec]:
    """``paper100``, ``scaled:N`` (e.g. ``scaled:1000``) or ``small`` (6 nodes)."""
    if name == "paper100":
        return paper100()
    if name == "small":
        return scaled(6)
    if name.startswith("scaled:"):
        value = name.split(":", 1)[1]
        try:
            n = int(value)
        except ValueError as exc:
            raise ValidationError("cluster", f"scaled:N needs an integer N, got {value!r}") from exc
        return scaled(n)
    raise ValidationError("cluster", f"unknown cluster {name!r}; use paper100, small or scaled:N")


def total_slots(nodes: list[NodeSpec]) -> int:
    return sum(n.slots for n in nodes)

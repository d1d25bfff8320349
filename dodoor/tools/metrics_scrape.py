"""Message counts of a live cluster, read from every component's ``/metrics``.

Every wire message is counted by both ends (the sender when it posts, the
receiver when it handles it; docs/protocol.md). A cluster-wide count therefore
takes each type from the role that *sends* it, and from the receiving role
only when no sender was scraped (e.g. the load store URL is unknown), so a
message is never counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import aiohttp

log = logging.getLogger(__name__)

_LINE = re.compile(r'^dodoor(?:_agent)?_messages_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$')
_TYPE = re.compile(r'(?:^|,)type="([a-z_]+)"')

# type -> (sending role, receiving role)
ROLES: dict[str, tuple[str, str]] = {
    "enqueue": ("scheduler", "agent"),
    "probe": ("scheduler", "agent"),
    "probe_reply": ("agent", "scheduler"),
    "reserve": ("scheduler", "agent"),
    "confirm": ("agent", "scheduler"),
    "cancel": ("scheduler", "agent"),
    "deltas": ("scheduler", "loadstore"),
    "snapshot": ("loadstore", "scheduler"),
    "node_state": ("agent", "loadstore"),
    "register": ("scheduler", "loadstore"),
    "task_status": ("scheduler", "agent"),
}


def parse_messages(text: str) -> Counter[str]:
    """``{type: count}`` from a Prometheus text exposition."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        kind = _TYPE.search(match.group(1)) if match else None
        if match and kind:
            counts[kind.group(1)] += int(float(match.group(2)))
    return counts


@dataclass(frozen=True)
class Components:
    """The URLs whose ``/metrics`` are read, by role."""

    schedulers: tuple[str, ...]
    agents: tuple[str, ...] = ()
    loadstore: str | None = None

    def by_role(self) -> dict[str, tuple[str, ...]]:
        return {"scheduler": self.schedulers, "agent": self.agents,
                "loadstore": (self.loadstore,) if self.loadstore else ()}


async def scrape(session: aiohttp.ClientSession, components: Components,
                 headers: Mapping[str, str] | None = None) -> dict[str, Counter[str]]:
    """Summed message counts per role; an unreachable component is logged and skipped."""

    async def one(url: str) -> Counter[str]:
        try:
            async with session.get(url.rstrip("/") + "/metrics", headers=headers or {}) as resp:
                resp.raise_for_status()
                return parse_messages(await resp.text())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("cannot read %s/metrics: %s", url, exc)
            return Counter()

    out: dict[str, Counter[str]] = {}
    for role, urls in components.by_role().items():
        if not urls:
            continue
        total: Counter[str] = Counter()
        for counts in await asyncio.gather(*(one(u) for u in urls)):
            total.update(counts)
        out[role] = total
    return out


def cluster_counts(by_role: Mapping[str, Mapping[str, int]],
                   present: Sequence[str] | None = None) -> Counter[str]:
    """Each message type counted once: at its sender, else at its receiver.

    ``present`` names the roles that were scraped (default: the keys of ``by_role``).
    """
    roles = set(present if present is not None else by_role)
    out: Counter[str] = Counter()
    kinds = {k for counts in by_role.values() for k in counts}
    for kind in kinds:
        sender, receiver = ROLES.get(kind, (None, None))
        if sender in roles:
            out[kind] = int(by_role[sender].get(kind, 0))
        elif receiver in roles:
            out[kind] = int(by_role[receiver].get(kind, 0))
        else:
            # A type outside the table: the largest count among the roles.
            out[kind] = max(int(c.get(kind, 0)) for c in by_role.values())
    return +out


def difference(after: Mapping[str, Mapping[str, int]],
               before: Mapping[str, Mapping[str, int]]) -> dict[str, Counter[str]]:
    """``after - before`` per role (counters only grow while a component lives)."""
    out: dict[str, Counter[str]] = {}
    for role, counts in after.items():
        prior = before.get(role, {})
        out[role] = Counter({k: int(v) - int(prior.get(k, 0)) for k, v in counts.items()})
    return out

"""The load store's durable memory of members and fences (one small JSON file).

Everything else the store holds is soft state, rebuilt from the next reports.
Two facts are not: which nodes exist, and which node lives were declared dead.
A store that forgot them after a restart would never declare a node that died
meanwhile dead (its tasks would read ``unknown`` for ever), and would let a
fenced agent, declared dead before the restart, run tasks its clients were told
are ``lost`` (docs/guarantees.md). Both change only when a node joins, comes
back or dies, so the file is rewritten whole (write, fsync, rename) each time.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dodoor.errors import DodoorError

log = logging.getLogger(__name__)
FORMAT = 1
# fenced lives kept per node: enough for any journal a node could still be resumed from
KEEP_FENCES = 8


class MembershipError(DodoorError):
    """The membership file cannot be read or written."""


@dataclass
class Membership:
    """Known nodes (id → url, current incarnation) and fenced (dead) incarnations."""

    members: dict[str, tuple[str, str]] = field(default_factory=dict)
    fenced: dict[str, list[str]] = field(default_factory=dict)

    def is_fenced(self, node_id: str, incarnation: str) -> bool:
        return bool(incarnation) and incarnation in self.fenced.get(node_id, ())

    def fence(self, node_id: str, incarnation: str) -> None:
        if not incarnation or self.is_fenced(node_id, incarnation):
            return
        lives = self.fenced.setdefault(node_id, [])
        lives.append(incarnation)
        del lives[:-KEEP_FENCES]


class MembershipFile:
    """Loads and saves a :class:`Membership`; ``path`` "" keeps it in memory only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> Membership:
        if not self.path or not os.path.exists(self.path):
            return Membership()
        try:
            data = json.loads(Path(self.path).read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            members = {str(n): (str(u), str(i)) for n, (u, i) in data["members"].items()}
            fenced = {str(n): [str(i) for i in lives] for n, lives in data["fenced"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MembershipError(f"cannot read the membership file {self.path}: {exc}") from exc
        log.info("membership file %s: %d node(s), %d with fenced lives", self.path,
                 len(members), len(fenced))
        return Membership(members, fenced)

    def save(self, membership: Membership) -> None:
        if not self.path:
            return
        body = json.dumps({"format": FORMAT,
                           "members": {n: list(v) for n, v in membership.members.items()},
                           "fenced": membership.fenced}, sort_keys=True)
        tmp = f"{self.path}.tmp"
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise MembershipError(f"cannot write the membership file {self.path}: {exc}") from exc

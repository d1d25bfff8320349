"""Counting task container starts from the Docker engine's live event stream (docker and
swarm suites): how many times each task id started, to prove nothing ran twice."""

from __future__ import annotations

import threading
from collections import Counter


class StartLedger:
    """How many task containers each task id started, from the engine's live events."""

    def __init__(self, client, agent_prefix: str) -> None:
        self.prefix = agent_prefix
        self.starts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stream = client.events(decode=True, filters={
            "type": "container", "event": "start", "label": "dodoor.agent_id"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                attrs = event["Actor"]["Attributes"]
                if attrs.get("dodoor.agent_id", "").startswith(self.prefix):
                    with self._lock:
                        self.starts[attrs["dodoor.task_id"]] += 1
        except Exception:  # noqa: BLE001 - closing the stream ends the read with an error
            return

    def close(self) -> Counter[str]:
        self._stream.close()
        self._thread.join(timeout=5)
        with self._lock:
            return Counter(self.starts)

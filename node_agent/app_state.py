"""What one agent app holds (:class:`AgentState`), under the app key :data:`STATE`
that every handler module reads it from."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from dodoor.clock import Clock
from dodoor.messages import MessageCounter
from node_agent.executor import Executor
from node_agent.node import NodeAgent
from node_agent.reporter import Reporter
from node_agent.retention import Retention
from node_agent.settings import AgentSettings


class AgentState:
    """Everything one agent app holds; built in ``create_app``, the rest in cleanup_ctx."""

    def __init__(self, settings: AgentSettings, executor: Executor, clock: Clock,
                 lease_clock: Clock) -> None:
        self.settings = settings
        self.executor = executor
        self.clock = clock
        self.lease_clock = lease_clock
        self.counter = MessageCounter()
        self.session: aiohttp.ClientSession | None = None
        self.agent: NodeAgent | None = None
        self.reporter: Reporter | None = None  # None without a load store
        self.registry: CollectorRegistry | None = None
        self.retention: Retention | None = None  # None when results are kept forever


STATE = web.AppKey("agent_state", AgentState)

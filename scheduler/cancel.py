"""``DELETE /v1/tasks/{id}`` at any scheduler: find the node holding the task (as a
status read does, :func:`scheduler.status.locate`) and have its agent cancel it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from dodoor.taskstates import CANCELLED, LOST, MOVED, TERMINAL
from dodoor.wire import CancelTask, TaskStatus
from dodoor.service.peers import PeerError
from dodoor.service.http import json_error
from scheduler.status import MAX_MOVES_FOLLOWED, Resolved, locate

if TYPE_CHECKING:
    from scheduler.app import SchedulerState

log = logging.getLogger(__name__)


def _body(st: TaskStatus, node: str) -> dict:
    return {"id": st.task_id, "state": st.state, "node": node, "queued_ms": st.queued_ms,
            "started_ms": st.started_ms, "finished_ms": st.finished_ms,
            "exit_code": st.exit_code, "reason": st.reason}


def _refusal(task_id: str, found: dict) -> web.Response:
    """A task that cannot be cancelled: 409 when it has ended (naming its state), 503
    when no agent can be asked now (ask again)."""
    if found["state"] in TERMINAL:
        return json_error(409, "id", f"task {task_id!r} already ended {found['state']}: "
                          f"{found['reason']}", state=found["state"])
    return json_error(503, "id", f"task {task_id!r} cannot be cancelled now "
                      f"({found['state']}: {found['reason']}); try again", state=found["state"])


async def cancel_task(state: SchedulerState, task_id: str) -> web.Response:
    """200 with the ``cancelled`` status (again for an id already cancelled); 404 for an
    unknown id; 409 naming the state of a task that had ended otherwise; 503 when the
    agent holding it cannot be asked."""
    out = Resolved()
    where = await locate(state, [task_id], out)
    if task_id in out.errors:
        status, reason = out.errors[task_id]
        return json_error(status, "id", reason)
    if task_id in out.found:  # reserved, lost, or being placed: no agent to ask
        return _refusal(task_id, out.found[task_id])
    node = where[task_id]
    for _ in range(MAX_MOVES_FOLLOWED + 1):
        if node in state.view.dead:
            return json_error(409, "id", f"task {task_id!r} already ended lost: node {node} "
                              "was declared dead", state=LOST)
        idx = state.view.index.get(node)
        if idx is None:
            return json_error(503, "id", f"node {node} holding task {task_id!r} is out of this "
                              "scheduler's view; try again")
        assert state.peers is not None
        url = state.view.urls[idx]
        try:
            st = await state.peers.send(url + "/internal/cancel_task",
                                        CancelTask(task_id, "cancelled by a client"),
                                        expect=TaskStatus)
        except PeerError as exc:
            if exc.status == 404:
                return json_error(404, "id", f"agent {node} does not know task {task_id!r} "
                                  "(its result expired, or its journal was replaced)")
            return json_error(503, "id", f"agent {node} holding task {task_id!r} could not "
                              f"cancel it: {exc}")
        if st.state != MOVED or not st.moved_to:
            break
        node = st.moved_to  # handed over (rebalancing): the agent holding it now cancels it
    body = _body(st, node)
    if st.state == CANCELLED:
        log.info("task %s cancelled on %s", task_id, node)
        return web.json_response(body)
    return _refusal(task_id, body)

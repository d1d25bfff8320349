"""In-process: a resubmitted id whose node was declared dead is placed again, not pinned to it."""

import numpy as np

from dodoor.wire import CONTENT_TYPE, Snapshot, encode

TASK = {"cores": 1, "memory_mb": 1024, "duration_ms": 100}


async def test_resubmitted_lost_task_goes_to_a_live_node_once(make_stack):
    stack = await make_stack()
    _, body = await stack.post({**TASK, "id": "r"})
    dead = body["placements"][0]["node"]
    others = [a for a in stack.agents if a.node_id != dead]
    snap = Snapshot(seq=900, node_ids=tuple(a.node_id for a in others),
                    urls=tuple(a.url for a in others),
                    capacity=np.array([a.capacity for a in others]),
                    slots=np.ones(len(others)), state=np.zeros((len(others), 5)), dead=(dead,))
    resp = await stack.client.post("/internal/snapshot", data=encode(snap),
                                   headers={"Content-Type": CONTENT_TYPE})
    assert resp.status == 204
    assert (await (await stack.client.get("/v1/tasks/r")).json())["state"] == "lost"

    status, again = await stack.post({**TASK, "id": "r"})
    assert status == 202
    moved = again["placements"][0]["node"]
    assert moved != dead and moved in {a.node_id for a in others}
    # a third submission is idempotent again: confirmed by the same live node, nowhere else
    _, third = await stack.post({**TASK, "id": "r"})
    assert third["placements"][0]["node"] == moved
    assert [a.enqueue_posts for a in others if a.node_id == moved] == [2]
    assert sum(a.enqueue_posts for a in others) == 2
    got = await (await stack.client.get("/v1/tasks/r")).json()
    assert (got["state"], got["node"]) == ("succeeded", moved)

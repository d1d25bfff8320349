"""The sleep executor says so when a task carries something it will not run."""

from __future__ import annotations

import logging

from dodoor.validation import parse_task
from node_agent.sleep_executor import SleepExecutor


def _task(task_id: str, **extra) -> object:
    return parse_task({"id": task_id, "cores": 1, "memory_mb": 64, "duration_ms": 5, **extra})


async def test_a_command_it_will_not_run_is_a_warning_once_per_interval(caplog):
    executor = SleepExecutor(scale=0.0)
    with caplog.at_level(logging.WARNING, logger="node_agent.sleep_executor"):
        assert (await executor.run(_task("plain"))).state == "succeeded"
        assert caplog.records == []
        result = await executor.run(_task("cmd-1", command=["python", "-c", "print(1)"]))
        assert result.state == "succeeded"
        (record,) = caplog.records
        message = record.getMessage()
        assert "command \"python -c 'print(1)'\"" in message and "task cmd-1" in message
        assert "--executor process or docker" in message
        await executor.run(_task("cmd-2", command=["true"]))
        assert len(caplog.records) == 1  # the next one waits for the interval, counted


async def test_an_image_or_function_is_named_too(caplog):
    executor = SleepExecutor(scale=0.0)
    with caplog.at_level(logging.WARNING, logger="node_agent.sleep_executor"):
        await executor.run(_task("img", image="dodoor-task:busybox"))
    assert "image 'dodoor-task:busybox'" in caplog.records[0].getMessage()

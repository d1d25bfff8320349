"""The load-store daemon: node loads, snapshot pushes, membership and the task index."""

"""The user-facing tools: the ``dodoor`` entry point and its commands, the local cluster,
submit, replay, evaluate and reports. They may import every other layer; nothing imports them."""

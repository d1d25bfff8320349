"""Dodoor: decentralized randomized multi-resource task scheduling.

The modules at the top of ``dodoor`` (and ``dodoor.policies``) are the pure core
shared by the live daemons and the simulator: resource vectors, the load score,
the load cache, the placement policies and the wire messages; they perform no
I/O. Its subpackages are the layers above: ``sim`` (the simulator), ``service``
(what the daemons share) and ``tools`` (the entry point and the user-facing
tools), as docs/design.md §11 lays out.
"""

__version__ = "0.1.0"

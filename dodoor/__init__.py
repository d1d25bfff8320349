"""Dodoor: decentralized randomized multi-resource task scheduling.

The ``dodoor`` package is the pure core shared by the live daemons and the
simulator: resource vectors, the load score, the load cache, the placement
policies and the wire messages. It performs no I/O.
"""

__version__ = "0.1.0"

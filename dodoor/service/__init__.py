"""What the three daemons share above the core: the HTTP kit, the peer client, metrics export,
the bearer token and the command-line helpers (docs/design.md §11)."""

"""Public test helpers (like ``trio.testing``): connection pairs, in-memory networks, fixtures, loopback servers."""

"""asyncio drivers, level L4: the only layer that awaits sockets, files and threads."""

"""A small LAN for tests: network namespaces joined by a veth pair (Linux, root).

    with veth_lan() as lan:                     # two namespaces, one veth pair between them
        a, b = lan.nodes
        argv = a.run([sys.executable, "-m", "torrentgoat", ...])   # ["ip", "netns", "exec", ns, ...]

Each node gets an IPv4 address in 10.N.M.0/24 and an IPv6 ULA in fd5e:N:M::/64 (added ``nodad``, so it
is usable at once), ``lo`` up, and the IPv4 multicast route ``224.0.0.0/4 dev IFACE`` (a fresh
namespace has no default route, and multicast needs one; IPv6 multicast gets its ``ff00::/8`` route
in the local table as soon as the interface is up).  The veth pair is created inside the first
namespace with its peer moved straight into the second: the host's own interfaces are never touched.
Names are unique per run; everything is deleted in ``finally``.

Where namespaces cannot be made (not root, no ``ip``, no CAP_NET_ADMIN) the test is skipped with the
reason -- except in CI, where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests.conftest import IN_CI

__all__ = ["LanNode", "require_netns", "veth_lan"]


@dataclass(frozen=True)
class LanNode:
    """One namespace of the LAN."""

    namespace: str
    iface: str
    ip4: str
    ip6: str

    def run(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this node's namespace."""
        return ["ip", "netns", "exec", self.namespace, *map(str, argv)]


@dataclass(frozen=True)
class Lan:
    nodes: tuple[LanNode, ...]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


def require_netns() -> None:
    """Skip (fail in CI) unless this process can create network namespaces."""
    reason = None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        reason = "network namespaces need root"
    elif shutil.which("ip") is None:
        reason = "the ip command (iproute2) is not installed"
    else:
        probe = f"tgprobe-{uuid.uuid4().hex[:8]}"
        try:
            _ip("netns", "add", probe)
        except OSError as exc:
            reason = f"cannot create a network namespace: {exc}"
        else:
            with contextlib.suppress(OSError):
                _ip("netns", "del", probe)
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@contextlib.contextmanager
def veth_lan() -> Iterator[Lan]:
    """Two namespaces joined by a veth pair (see the module docstring); removed on exit."""
    require_netns()
    tag = uuid.uuid4().hex[:6]
    octet1, octet2 = int(tag[:2], 16) % 250 + 1, int(tag[2:4], 16) % 250 + 1
    names = [f"tglan-{tag}-{side}" for side in "ab"]
    ifaces = [f"tg{tag}{side}" for side in "ab"]  # <= 15 characters
    created: list[str] = []
    try:
        for name in names:
            _ip("netns", "add", name)
            created.append(name)
        _ip(
            "-n",
            names[0],
            "link",
            "add",
            ifaces[0],
            "type",
            "veth",
            "peer",
            "name",
            ifaces[1],
            "netns",
            names[1],
        )
        nodes = []
        for i, (name, iface) in enumerate(zip(names, ifaces, strict=True), start=1):
            ip4 = f"10.{octet1}.{octet2}.{i}"
            ip6 = f"fd5e:{octet1:x}:{octet2:x}::{i}"
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("-n", name, "addr", "add", f"{ip4}/24", "dev", iface)
            _ip("-n", name, "-6", "addr", "add", f"{ip6}/64", "dev", iface, "nodad")
            _ip("-n", name, "link", "set", iface, "up")
            _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", iface)
            nodes.append(LanNode(namespace=name, iface=iface, ip4=ip4, ip6=ip6))
        yield Lan(nodes=tuple(nodes))
    finally:
        for name in created:  # deleting a namespace deletes the veth end inside it, and so the pair
            with contextlib.suppress(OSError):
                _ip("netns", "del", name)

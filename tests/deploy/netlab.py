"""A throwaway multi-host network on this machine: each host is a network namespace wired to one
bridge, and the bridge itself lives in a namespace of its own, so nothing is added to the
machine's own network and the 10.x addresses exist only inside namespaces this lab created.

Needs root and iproute2. `close()` kills every process started in the lab and deletes its
namespaces (which takes their veth links with them) and their /etc/netns files, whatever state
the lab is in.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HOST_IFACE = "eth0"
# `ip netns exec NS` bind-mounts the files of /etc/netns/NS over /etc for the command it runs.
NETNS_ETC = Path("/etc/netns")


def unavailable_reason() -> str | None:
    """Why this machine cannot build a lab, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed: apt-get install -y iproute2"
    probe = f"csprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class NetworkLab:
    """Hosts `10.77.0.N/24` on one bridge. Namespace names carry the pid, so parallel runs of
    the test (or a crashed earlier one) never collide."""

    subnet: str = "10.77.0"
    prefix: str = field(default_factory=lambda: f"cs{os.getpid() % 100000}")
    namespaces: list[str] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def start(self) -> NetworkLab:
        self._add_namespace(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        return self

    def add_host(self, host: str) -> str:
        """A namespace with `eth0` plugged into the bridge; returns its address."""
        ns = self.ns(host)
        address = f"{self.subnet}.{len(self.addresses) + 1}"
        port = f"p-{host}"[:15]
        self._add_namespace(ns)
        _ip(
            "link",
            "add",
            "name",
            HOST_IFACE,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            self.switch,
        )
        _ip("-n", self.switch, "link", "set", port, "master", "br0")
        _ip("-n", self.switch, "link", "set", port, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", HOST_IFACE)
        _ip("-n", ns, "link", "set", HOST_IFACE, "up")
        self.addresses[host] = address
        return address

    def set_hosts(self, host: str, names: dict[str, list[str]]) -> None:
        """The host's /etc/hosts (one line per address, so a name can have several, like a
        headless Service). Written in place: processes already running see the change. Its
        resolv.conf points at its own loopback, so no lookup can ever leave the lab."""
        etc = NETNS_ETC / self.ns(host)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        lines = ["127.0.0.1 localhost"]
        lines += [f"{address} {name}" for name, addrs in names.items() for address in addrs]
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    def set_link(self, host: str, up: bool) -> None:
        """Unplug (or replug) a host: its interface goes down, the bridge loses carrier on it."""
        _ip("-n", self.ns(host), "link", "set", HOST_IFACE, "up" if up else "down")

    def command(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def popen(
        self, host: str, argv: list[str], *, log: IO[bytes], cwd: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        # `ip netns exec` execs the command, so the Popen pid is the server itself.
        proc = subprocess.Popen(
            self.command(host, *argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Deleting a namespace destroys the veth ends inside it, and with them their peers.
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self.namespaces.clear()
        if NETNS_ETC.is_dir() and not any(NETNS_ETC.iterdir()):
            NETNS_ETC.rmdir()

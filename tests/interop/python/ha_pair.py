"""Two fedamq processes as an HA pair, for the client failover tests.

A primary and a backup with `[ha]` sections naming each other on free loopback ports,
a `peering` user for the pair, an `administrator` for /api/ha (administrators are
always admitted, so the clients use a plain user, `app`). `kill9` sends SIGKILL to a
member by pid; `stop` ends whatever is still running. The binary is FEDAMQ_BIN
(run-python.sh sets it to target/release/fedamq).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

APP_USER, APP_PASSWORD = "app", "app-secret"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-secret"
PEER_USER, PEER_PASSWORD = "peer", "peer-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member_config(role: str, peer_port: int, timeout_ms: int, epoch_file: str) -> str:
    users = ""
    for name, password, tags in (
        (PEER_USER, PEER_PASSWORD, '["peering"]'),
        (ADMIN_USER, ADMIN_PASSWORD, '["administrator"]'),
        (APP_USER, APP_PASSWORD, "[]"),
    ):
        users += f"""
[[user]]
name = "{name}"
password = "{password}"
tags = {tags}

[[permission]]
user = "{name}"
vhost = "/"
configure = ".*"
write = ".*"
read = ".*"
"""
    return f"""
[ha]
role = "{role}"
peer = "amqp://{PEER_USER}:{PEER_PASSWORD}@127.0.0.1:{peer_port}"
timeout = "{timeout_ms}ms"
epoch_file = "{epoch_file}"
{users}"""


class Member:
    def __init__(self, role: str, port: int, config: str, workdir: str):
        self.role, self.port, self.config, self.workdir = role, port, config, workdir
        self.proc: subprocess.Popen | None = None
        self.management = ""
        self.starts = 0

    @property
    def url(self) -> str:
        return f"amqp://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{self.port}/%2f"

    def start(self, binary: str):
        self.starts += 1
        out = os.path.join(self.workdir, f"{self.role}.{self.starts}.out")
        err = os.path.join(self.workdir, f"{self.role}.{self.starts}.log")
        self.out_path = out
        self.proc = subprocess.Popen(
            [binary, "--config", self.config, "--bind", "127.0.0.1", "--port", str(self.port),
             "--management-port", "0", "--prometheus-port", "0", "--log", "warn"],
            stdout=open(out, "wb"), stderr=open(err, "wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fedamq {self.role} exited: {open(err).read()}")
            for line in open(out).read().splitlines():
                if line.startswith("management API on http://"):
                    self.management = line[len("management API on "):]
                    return
            time.sleep(0.05)
        raise RuntimeError(f"fedamq {self.role} did not print its management address")

    def ha_status(self) -> dict | None:
        """GET /api/ha, or None when the member does not answer."""
        req = urllib.request.Request(self.management + "/api/ha")
        token = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return json.load(r)
        except OSError:
            return None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()


class HaPair:
    """A started pair: the primary active, the backup passive and having seen it."""

    def __init__(self, binary: str | None = None, timeout_ms: int = 1000):
        self.binary = binary or os.environ["FEDAMQ_BIN"]
        self.timeout_ms = timeout_ms
        self.dir = tempfile.mkdtemp(prefix="fedamq-ha-")
        p_port, b_port = free_port(), free_port()
        members = []
        for role, port, peer_port in (("primary", p_port, b_port), ("backup", b_port, p_port)):
            path = os.path.join(self.dir, f"{role}.toml")
            with open(path, "w") as f:
                f.write(member_config(role, peer_port, timeout_ms,
                                      os.path.join(self.dir, f"{role}-epoch")))
            members.append(Member(role, port, path, self.dir))
        self.primary, self.backup = members

    def start(self):
        try:
            self.primary.start(self.binary)
            self.backup.start(self.binary)
            self.wait_until(self.ready, "primary active and backup passive, seeing it")
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> bool:
        backup = self.backup.ha_status() or {}
        return (self.state(self.primary) == "active" and backup.get("state") == "passive"
                and (backup.get("peer") or {}).get("state") == "active")

    def state(self, member: Member) -> str | None:
        s = member.ha_status()
        return s and s.get("state")

    def wait_until(self, pred, what: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"HA pair: timed out waiting for {what}: primary {self.primary.ha_status()}, "
                    f"backup {self.backup.ha_status()}")
            time.sleep(0.05)

    @property
    def urls(self) -> list[str]:
        return [self.primary.url, self.backup.url]

    def stop(self):
        for m in (self.primary, self.backup):
            m.stop()

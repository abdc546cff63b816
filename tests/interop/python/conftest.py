"""Shared fixtures for the Python interop tests.

The broker under test is named by the environment variable FEDAMQ_URL, e.g.
amqp://guest:guest@127.0.0.1:5672/%2f (tests/interop/run-python.sh starts a broker and
sets it). Every test gets a unique name prefix (`uid`) and a `cleanup` registry: what a
test registers there is deleted after it, over a fresh connection, whether it passed or
not, so tests never see each other's queues or exchanges.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import uuid

import amqp
import pytest


def pytest_configure(config):
    if not os.environ.get("FEDAMQ_URL"):
        raise pytest.UsageError(
            "FEDAMQ_URL is not set: start fedamq and set "
            "FEDAMQ_URL=amqp://guest:guest@127.0.0.1:PORT/%2f "
            "(tests/interop/run-python.sh does both)"
        )


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return os.environ["FEDAMQ_URL"]


@pytest.fixture(scope="session")
def broker(amqp_url):
    """The broker address as parts: host, port, user, password, vhost."""
    u = urllib.parse.urlparse(amqp_url)
    vhost = urllib.parse.unquote(u.path[1:]) if len(u.path) > 1 else "/"
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 5672,
        "user": urllib.parse.unquote(u.username or "guest"),
        "password": urllib.parse.unquote(u.password or "guest"),
        "vhost": vhost,
    }


@pytest.fixture
def uid(request) -> str:
    """A name prefix unique to this test run and test."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    return f"itest.{name}.{uuid.uuid4().hex[:10]}"


class Cleanup:
    def __init__(self, broker):
        self.broker = broker
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def queue(self, name: str) -> str:
        self.queues.append(name)
        return name

    def exchange(self, name: str) -> str:
        self.exchanges.append(name)
        return name

    def run(self):
        if not (self.queues or self.exchanges):
            return
        b = self.broker
        conn = amqp.Connection(
            host=f"{b['host']}:{b['port']}",
            userid=b["user"],
            password=b["password"],
            virtual_host=b["vhost"],
        )
        conn.connect()
        try:
            ch = conn.channel()
            # queue.delete and exchange.delete of something absent are no-ops (RabbitMQ 3.x+)
            for q in self.queues:
                ch.queue_delete(q)
            for x in self.exchanges:
                ch.exchange_delete(x)
            ch.close()
        finally:
            conn.close()


@pytest.fixture
def cleanup(broker):
    c = Cleanup(broker)
    yield c
    c.run()


@pytest.fixture(scope="module")
def module_cleanup(broker):
    c = Cleanup(broker)
    yield c
    c.run()

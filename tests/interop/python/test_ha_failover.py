"""Clients that fail over between the members of an HA pair with what the library offers.

Each test starts a pair (ha_pair.py, 1 s timeout), gives the client both addresses, and
runs a publisher with confirms and a consumer, each in a thread, through a `kill -9` of
the active member (the primary). The only failover code is the library's own: kombu's
failover URL list with `ensure` and `ConsumerMixin`, pika's list of connection
parameters with the reconnect loop from pika's documentation.

What "0 confirmed messages lost" means here: fedamq keeps messages in memory only and
the pair does not replicate them, so what the killed member had confirmed and not yet
delivered dies with its process. The check is therefore:

- every message confirmed by the member that stays alive is consumed at the end
  (the consumer's ids plus a drain of the queue on the new active): 0 lost;
- messages confirmed by the killed member are counted as consumed before the kill or
  lost with it (the consumer runs all along, so that backlog is small); reported;
- duplicates (a publish retried after a lost confirm) are allowed and counted.

The member a confirm came from: a passive member refuses ordinary clients, so every
connection before the kill is to the primary and every one after it to the backup.
"""

from __future__ import annotations

import collections
import threading
import time

import amqp
import pytest

from ha_pair import HaPair

# Confirmed messages wanted on each side of the kill.
BEFORE = 300
AFTER = 300


@pytest.fixture
def pair():
    p = HaPair(timeout_ms=1000).start()
    yield p
    p.stop()


class Ledger:
    """What the publisher had confirmed (id -> generation of its connection) and what the
    consumer received (id -> count), shared by the threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.confirmed: dict[int, int] = {}
        self.received: collections.Counter[int] = collections.Counter()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def confirm(self, msg_id: int, generation: int):
        with self.lock:
            self.confirmed[msg_id] = generation

    def receive(self, body: bytes):
        with self.lock:
            self.received[int(body)] += 1

    def count(self, pred) -> int:
        with self.lock:
            return sum(1 for g in self.confirmed.values() if pred(g))


def run_through_kill(pair: HaPair, queue: str, publisher, consumer, name: str):
    """Runs `publisher(ledger)` and `consumer(ledger)` in threads, kills the primary once
    BEFORE messages are confirmed, stops them once AFTER more are, drains the queue on
    the new active and checks the ledger."""
    ledger = Ledger()

    def guarded(fn):
        def run():
            try:
                fn(ledger)
            except BaseException as e:  # reported by the test, not lost in the thread
                ledger.errors.append(e)
        return threading.Thread(target=run, daemon=True)

    threads = [guarded(consumer), guarded(publisher)]
    for t in threads:
        t.start()

    def wait_for(pred, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not pred():
            assert not ledger.errors, f"{name}: a client thread failed: {ledger.errors!r}"
            assert time.monotonic() < deadline, f"{name}: timed out waiting for {what}"
            time.sleep(0.02)

    try:
        wait_for(lambda: ledger.count(lambda g: g == 0) >= BEFORE, "confirms before the kill")
        pair.primary.kill9()
        killed_at = time.monotonic()
        wait_for(lambda: ledger.count(lambda g: g > 0) >= AFTER, "confirms after the kill")
        failover_s = time.monotonic() - killed_at
    finally:
        ledger.stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not ledger.errors, f"{name}: a client thread failed: {ledger.errors!r}"
    assert pair.state(pair.backup) == "active"

    # Everything left on the new active.
    conn = amqp.Connection(host=f"127.0.0.1:{pair.backup.port}", userid="app",
                           password="app-secret")
    conn.connect()
    try:
        ch = conn.channel()
        drained = 0
        while (m := ch.basic_get(queue, no_ack=True)) is not None:
            ledger.receive(m.body)
            drained += 1
    finally:
        conn.close()

    by_killed = {i for i, g in ledger.confirmed.items() if g == 0}
    by_survivor = {i for i, g in ledger.confirmed.items() if g > 0}
    lost_survivor = sorted(by_survivor - ledger.received.keys())
    lost_with_killed = sorted(by_killed - ledger.received.keys())
    duplicates = sum(c - 1 for c in ledger.received.values() if c > 1)
    print(f"\n{name}: confirmed {len(ledger.confirmed)} ({len(by_killed)} by the killed "
          f"primary, {len(by_survivor)} by the new active), received {len(ledger.received)} "
          f"distinct ({drained} drained at the end), duplicates {duplicates}, "
          f"confirmed by the new active and lost {len(lost_survivor)}, confirmed by the "
          f"killed primary and lost with its process {len(lost_with_killed)}, "
          f"kill to {AFTER} confirms on the new active {failover_s:.2f} s")
    assert len(by_survivor) >= AFTER
    assert not lost_survivor, f"{name}: confirmed by the new active but never consumed: " \
        f"{lost_survivor[:20]}"
    # Some of the killed member's confirmed messages were consumed before it died: the
    # consumer ran all along.
    assert len(by_killed - set(lost_with_killed)) > 0


# ---------------------------------------------------------------- kombu


def test_kombu_failover_url_list(pair, uid):
    from kombu import Connection, Queue
    from kombu.mixins import ConsumerMixin

    url = ";".join(pair.urls)
    queue = Queue(uid, routing_key=uid)

    def connection():
        return Connection(url, failover_strategy="round-robin", connect_timeout=2,
                          transport_options={"confirm_publish": True})

    def publisher(ledger: Ledger):
        with connection() as conn:
            producer = conn.Producer()
            # kombu's retry: reconnect (next URL), revive the producer, publish again.
            publish = conn.ensure(producer, producer.publish, max_retries=200,
                                  interval_start=0.1, interval_step=0.1, interval_max=0.2)
            ports = {pair.primary.port: 0, pair.backup.port: 1}
            i = 0
            while not ledger.stop.is_set():
                publish(str(i).encode(), routing_key=uid, declare=[queue],
                        content_type="text/plain", content_encoding="binary")
                # With confirm_publish=True, publish returns once the broker confirmed;
                # conn.port is the member kombu is connected to now.
                ledger.confirm(i, ports[conn.port])
                i += 1

    class Worker(ConsumerMixin):
        def __init__(self, conn, ledger):
            self.connection, self.ledger = conn, ledger

        def get_consumers(self, Consumer, channel):
            return [Consumer(queues=[queue], callbacks=[self.on_message],
                             accept=["text/plain"])]

        def on_message(self, body, message):
            self.ledger.receive(message.body)
            message.ack()

        @property
        def should_stop(self):
            return self.ledger.stop.is_set()

    def consumer(ledger: Ledger):
        with connection() as conn:
            Worker(conn, ledger).run()

    run_through_kill(pair, uid, publisher, consumer, "kombu")


# ---------------------------------------------------------------- pika


def test_pika_connection_parameters_list(pair, uid):
    import pika
    import pika.exceptions as pex

    def parameters():
        return [pika.URLParameters(u + "?connection_attempts=1&socket_timeout=2")
                for u in pair.urls]

    def publisher(ledger: Ledger):
        generation = -1
        i = 0
        # The reconnect loop from pika's documentation (examples/blocking_consume_recover
        # _multiple_hosts.py): a list of parameters, retry on connection errors.
        while not ledger.stop.is_set():
            try:
                conn = pika.BlockingConnection(parameters())
            except pex.AMQPConnectionError:
                time.sleep(0.1)
                continue
            generation += 1
            try:
                ch = conn.channel()
                ch.confirm_delivery()
                ch.queue_declare(uid)
                while not ledger.stop.is_set():
                    # Raises when the broker nacks or returns it (mandatory): a normal
                    # return means confirmed.
                    ch.basic_publish("", uid, str(i).encode(), mandatory=True)
                    ledger.confirm(i, generation)
                    i += 1
                conn.close()
            except pex.AMQPConnectionError:
                continue

    def consumer(ledger: Ledger):
        while not ledger.stop.is_set():
            try:
                conn = pika.BlockingConnection(parameters())
            except pex.AMQPConnectionError:
                time.sleep(0.1)
                continue
            try:
                ch = conn.channel()
                ch.queue_declare(uid)
                for method, _props, body in ch.consume(uid, inactivity_timeout=0.2):
                    if ledger.stop.is_set():
                        break
                    if method is None:
                        continue
                    ledger.receive(body)
                    ch.basic_ack(method.delivery_tag)
                ch.cancel()
                conn.close()
            except pex.AMQPConnectionError:
                continue

    run_through_kill(pair, uid, publisher, consumer, "pika")

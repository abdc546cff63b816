"""fedamq against kombu (PyPI `kombu`) over its py-amqp transport (PyPI `amqp`).

Covers connect and authentication failures, declare/bind/publish/consume/ack, mandatory
returns, publisher confirms, transactions, TTL and dead-lettering, headers and topic
routing, large messages and a 100,000-message round trip.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import struct
import threading
import time

import amqp
import amqp.exceptions as aex
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue


def kconn(amqp_url, **kw) -> Connection:
    return Connection(amqp_url, connect_timeout=5, **kw)


@pytest.fixture
def conn(amqp_url):
    c = kconn(amqp_url)
    c.connect()
    yield c
    c.release()


@pytest.fixture
def ch(conn):
    return conn.channel()


def drain_until(conn, pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        try:
            conn.drain_events(timeout=0.05)
        except socket.timeout:
            pass


def drain_quiet(conn, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn.drain_events(timeout=0.05)
        except socket.timeout:
            pass


def get_all(queue) -> list:
    out = []
    while True:
        m = queue.get(no_ack=True)
        if m is None:
            return out
        out.append(m)


def count(ch, name) -> int:
    return ch.queue_declare(name, passive=True).message_count


def bound_queue(ch, cleanup, name, exchange=None, **kw) -> Queue:
    cleanup.queue(name)
    if exchange is not None and exchange.name:
        cleanup.exchange(exchange.name)
    q = Queue(name, exchange, durable=False, **kw)(ch)
    q.declare()
    return q


# ---------------------------------------------------------------- connect and auth


def test_connect_and_reconnect(conn):
    assert conn.connected
    props = conn.connection.server_properties
    assert props["product"] == "fedamq"
    assert props["capabilities"]["publisher_confirms"] is True
    assert conn.transport.driver_name == "py-amqp"
    conn.close()
    assert not conn.connected
    conn.connect()
    assert conn.connected
    assert conn.default_channel.is_open


@pytest.mark.parametrize(
    "user,password", [("guest", "wrong-password"), ("no-such-user", "guest")]
)
def test_auth_failure_refused_403(broker, user, password):
    c = Connection(
        hostname=broker["host"], port=broker["port"], userid=user, password=password,
        virtual_host=broker["vhost"], transport="pyamqp", connect_timeout=5,
    )
    with pytest.raises(aex.AccessRefused) as ei:
        c.connect()
    assert ei.value.reply_code == 403
    assert ei.value.reply_text.startswith("ACCESS_REFUSED")
    assert not c.connected
    c.release()


def test_unknown_vhost_refused_530(broker):
    c = Connection(
        hostname=broker["host"], port=broker["port"], userid=broker["user"],
        password=broker["password"], virtual_host="no-such-vhost", transport="pyamqp",
        connect_timeout=5,
    )
    with pytest.raises(aex.NotAllowed) as ei:
        c.connect()
    assert ei.value.reply_code == 530
    c.release()


def test_ensure_connection_retries_then_fails_for_closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = Connection(f"pyamqp://guest:guest@127.0.0.1:{port}//", connect_timeout=1)
    errors = []
    with pytest.raises(Exception):
        c.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0,
            errback=lambda exc, interval: errors.append(exc),
        )
    assert len(errors) == 1  # one retry, so one errback before the final failure
    assert all(isinstance(e, ConnectionRefusedError) for e in errors)
    c.release()


# ---------------------------------------------- declare, bind, publish, consume, ack


def test_declare_bind_publish_consume_ack(conn, ch, uid, cleanup):
    x = Exchange(uid + ".x", type="direct", durable=False)
    q = bound_queue(ch, cleanup, uid + ".q", x, routing_key="rk")
    producer = Producer(ch, exchange=x, serializer="json")
    payloads = [{"i": i, "text": f"hello {i}", "list": [i, i + 1]} for i in range(25)]
    for i, p in enumerate(payloads):
        producer.publish(
            p, routing_key="rk", headers={"seq": i, "tag": "t"}, priority=4,
            correlation_id=f"c{i}", reply_to="replies", message_id=f"m{i}",
            delivery_mode=2, type="kind",
        )
    producer.publish({"not": "for q"}, routing_key="other")

    got = []

    def on_message(body, message):
        got.append((body, message))
        message.ack()

    with Consumer(ch, queues=[q], callbacks=[on_message], accept=["json"]):
        drain_until(conn, lambda: len(got) >= 25, what="25 deliveries")
        drain_quiet(conn, 0.2)
    assert [b for b, _ in got] == payloads
    for i, (_, m) in enumerate(got):
        assert m.headers == {"seq": i, "tag": "t"}
        assert m.content_type == "application/json"
        assert m.properties["priority"] == 4
        assert m.properties["correlation_id"] == f"c{i}"
        assert m.properties["reply_to"] == "replies"
        assert m.properties["message_id"] == f"m{i}"
        assert m.properties["delivery_mode"] == 2
        assert m.properties["type"] == "kind"
        assert m.delivery_info["exchange"] == x.name
        assert m.delivery_info["routing_key"] == "rk"
        assert m.delivery_info["redelivered"] is False
        assert m.acknowledged
    name, messages, consumers = q.queue_declare(passive=True)
    assert (name, messages, consumers) == (q.name, 0, 0)


def test_simple_queue(conn, uid, cleanup):
    cleanup.queue(uid)
    cleanup.exchange(uid)
    sq = conn.SimpleQueue(uid)
    for i in range(5):
        sq.put({"n": i})
    # publishes are not confirmed here, so the count may lag (it does on RabbitMQ)
    deadline = time.monotonic() + 5
    while sq.qsize() < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sq.qsize() == 5
    out = []
    for _ in range(5):
        m = sq.get(block=True, timeout=5)
        out.append(m.payload["n"])
        m.ack()
    assert out == [0, 1, 2, 3, 4]
    with pytest.raises(sq.Empty):
        sq.get(block=True, timeout=0.3)
    sq.close()


def test_get_reject_requeue(conn, ch, uid, cleanup):
    q = bound_queue(ch, cleanup, uid)
    p = Producer(ch, serializer="raw")
    for b in (b"a", b"b", b"c"):
        p.publish(b, routing_key=uid)
    m = q.get()
    assert m.body == b"a"
    m.reject(requeue=False)
    m = q.get()
    assert (m.body, m.delivery_info["redelivered"]) == (b"b", False)
    m.requeue()
    m = q.get()
    assert (m.body, m.delivery_info["redelivered"]) == (b"b", True)
    m.ack()
    m = q.get()
    assert m.body == b"c"
    m.ack()
    assert q.get() is None


def test_prefetch_and_ack_multiple(conn, ch, uid, cleanup):
    q = bound_queue(ch, cleanup, uid)
    p = Producer(ch, serializer="raw")
    for i in range(30):
        p.publish(str(i).encode(), routing_key=uid)
    got = []
    with Consumer(ch, queues=[q], callbacks=[lambda b, m: got.append(m)], prefetch_count=10):
        drain_until(conn, lambda: len(got) >= 10, what="10 deliveries")
        drain_quiet(conn, 0.4)
        assert [m.body for m in got] == [str(i).encode() for i in range(10)]
        got[-1].ack(multiple=True)
        drain_until(conn, lambda: len(got) >= 20, what="20 deliveries")
        drain_quiet(conn, 0.4)
        assert [m.body for m in got] == [str(i).encode() for i in range(20)]
        got[-1].ack(multiple=True)
        drain_until(conn, lambda: len(got) >= 30, what="30 deliveries")
        got[-1].ack(multiple=True)
    assert count(ch, uid) == 0


def test_consume_on_exclusively_consumed_queue_raises_403(conn, uid, cleanup):
    ch = conn.channel()
    q = bound_queue(ch, cleanup, uid)
    ch.basic_consume(q.name, exclusive=True, callback=lambda m: None)
    other = conn.channel()
    with pytest.raises(aex.AccessRefused) as ei:
        other.basic_consume(q.name, callback=lambda m: None)
    assert ei.value.reply_code == 403


def test_queue_purge_and_delete(ch, uid, cleanup):
    q = bound_queue(ch, cleanup, uid)
    p = Producer(ch, serializer="raw")
    for _ in range(4):
        p.publish(b"x", routing_key=uid)
    assert q.purge() == 4
    p.publish(b"y", routing_key=uid)
    assert q.delete() == 1


def test_not_found_raises_404_and_connection_survives(conn, uid):
    ch = conn.channel()
    with pytest.raises(aex.NotFound) as ei:
        ch.queue_declare(uid + ".absent", passive=True)
    assert ei.value.reply_code == 404
    ch2 = conn.channel()
    assert ch2.is_open


# ---------------------------------------------------------------- mandatory returns


def test_mandatory_unroutable_is_returned(conn, ch, uid, cleanup):
    x = Exchange(uid, type="direct", durable=False)
    cleanup.exchange(uid)
    x(ch).declare()
    returned = []
    p = Producer(ch, exchange=x, serializer="raw",
                 on_return=lambda exc, exchange, rk, msg: returned.append((exc, exchange, rk, msg)))
    p.publish(b"bounce", routing_key="nowhere", mandatory=True, headers={"h": 1})
    p.publish(b"dropped", routing_key="nowhere", mandatory=False)
    drain_until(conn, lambda: returned, what="basic.return")
    drain_quiet(conn, 0.3)
    assert len(returned) == 1
    exc, exchange, rk, msg = returned[0]
    assert exc.reply_code == 312
    assert exc.reply_text == "NO_ROUTE"
    assert (exchange, rk) == (uid, "nowhere")
    assert msg.body == b"bounce"
    assert msg.properties["application_headers"] == {"h": 1}


def test_confirmed_mandatory_unroutable_returned_before_ack(amqp_url, uid, cleanup):
    c = kconn(amqp_url, transport_options={"confirm_publish": True})
    try:
        ch = c.channel()
        returned = []
        p = Producer(ch, serializer="raw", on_return=lambda *a: returned.append(a))
        # basic_publish_confirm waits for the ack; the return comes first
        p.publish(b"nowhere", exchange="", routing_key=uid + ".absent", mandatory=True)
        assert len(returned) == 1
        assert returned[0][0].reply_code == 312
        assert returned[0][3].body == b"nowhere"
    finally:
        c.release()


# ---------------------------------------------------------------- publisher confirms


def test_publisher_confirms(amqp_url, uid, cleanup):
    c = kconn(amqp_url, transport_options={"confirm_publish": True})
    try:
        ch = c.channel()
        q = bound_queue(ch, cleanup, uid)
        p = Producer(ch, serializer="raw")
        for i in range(1000):
            p.publish(struct.pack(">I", i), routing_key=uid)
        assert count(ch, uid) == 1000
        assert [struct.unpack(">I", m.body)[0] for m in get_all(q)] == list(range(1000))
    finally:
        c.release()


def test_confirm_nack_raises_message_nacked(amqp_url, uid, cleanup):
    c = kconn(amqp_url, transport_options={"confirm_publish": True})
    try:
        ch = c.channel()
        q = bound_queue(ch, cleanup, uid, max_length=1,
                        queue_arguments={"x-overflow": "reject-publish"})
        p = Producer(ch, serializer="raw")
        p.publish(b"kept", routing_key=uid)
        with pytest.raises(aex.MessageNacked):
            p.publish(b"refused", routing_key=uid)
        assert [m.body for m in get_all(q)] == [b"kept"]
    finally:
        c.release()


def test_confirm_publish_to_missing_exchange_404(amqp_url, uid):
    c = kconn(amqp_url, transport_options={"confirm_publish": True})
    try:
        ch = c.channel()
        with pytest.raises(aex.NotFound) as ei:
            ch.basic_publish(amqp.Message(b"x"), exchange=uid + ".absent", routing_key="rk")
        assert ei.value.reply_code == 404
    finally:
        c.release()


# ---------------------------------------------------------------- transactions


def test_tx_commit_and_rollback(conn, uid, cleanup):
    ch = conn.channel()
    q = bound_queue(ch, cleanup, uid)
    ch.tx_select()
    p = Producer(ch, serializer="raw")
    p.publish(b"rolled back", routing_key=uid)
    ch.tx_rollback()
    assert count(ch, uid) == 0
    p.publish(b"one", routing_key=uid)
    p.publish(b"two", routing_key=uid)
    assert count(ch, uid) == 0
    ch.tx_commit()
    assert count(ch, uid) == 2
    m = q.get()
    assert m.body == b"one"
    m.ack()
    ch.tx_commit()
    assert [m.body for m in get_all(q)] == [b"two"]
    ch.tx_commit()


def test_tx_rollback_without_select_406(conn):
    ch = conn.channel()
    with pytest.raises(aex.PreconditionFailed) as ei:
        ch.tx_rollback()
    assert ei.value.reply_code == 406


# ---------------------------------------------------------------- TTL, dead-lettering


def test_queue_message_ttl(ch, uid, cleanup):
    q = bound_queue(ch, cleanup, uid, message_ttl=0.2)
    p = Producer(ch, serializer="raw")
    p.publish(b"gone soon", routing_key=uid)
    time.sleep(0.6)
    assert q.get() is None


def test_per_message_expiration(ch, uid, cleanup):
    q = bound_queue(ch, cleanup, uid)
    p = Producer(ch, serializer="raw")
    p.publish(b"short", routing_key=uid, expiration=0.1)
    p.publish(b"long", routing_key=uid)
    time.sleep(0.4)
    assert [m.body for m in get_all(q)] == [b"long"]


def _dlx(ch, cleanup, uid, **src_kw):
    dlx = Exchange(uid + ".dlx", type="direct", durable=False)
    dlq = bound_queue(ch, cleanup, uid + ".dlq", dlx, routing_key="dead")
    # kombu's Queue has no dead-letter keywords: they go in as queue arguments
    src = bound_queue(ch, cleanup, uid + ".src", queue_arguments={
        "x-dead-letter-exchange": dlx.name, "x-dead-letter-routing-key": "dead"}, **src_kw)
    return src, dlq


def wait_get(q, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = q.get(no_ack=True)
        if m is not None:
            return m
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived in {q.name} within {timeout}s")


def test_dead_letter_on_ttl(ch, uid, cleanup):
    src, dlq = _dlx(ch, cleanup, uid, message_ttl=0.1)
    Producer(ch, serializer="raw").publish(b"late", routing_key=src.name, headers={"a": "b"})
    m = wait_get(dlq)
    assert m.body == b"late"
    assert m.delivery_info["routing_key"] == "dead"
    assert m.delivery_info["exchange"] == uid + ".dlx"
    assert m.headers["a"] == "b"
    [death] = m.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("expired", src.name, 1)
    assert death["exchange"] == ""
    assert death["routing-keys"] == [src.name]
    assert m.headers["x-first-death-reason"] == "expired"


def test_dead_letter_on_reject(ch, uid, cleanup):
    src, dlq = _dlx(ch, cleanup, uid)
    Producer(ch, serializer="raw").publish(b"reject me", routing_key=src.name)
    src.get().reject(requeue=False)
    m = wait_get(dlq)
    assert m.body == b"reject me"
    [death] = m.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", src.name, 1)


def test_dead_letter_on_max_length_bytes(ch, uid, cleanup):
    src, dlq = _dlx(ch, cleanup, uid, max_length_bytes=10)
    p = Producer(ch, serializer="raw")
    p.publish(b"123456", routing_key=src.name)
    p.publish(b"abcdef", routing_key=src.name)  # 12 bytes > 10: the head goes
    m = wait_get(dlq)
    assert m.body == b"123456"
    assert m.headers["x-death"][0]["reason"] == "maxlen"
    assert [m.body for m in get_all(src)] == [b"abcdef"]


# ---------------------------------------------------------------- routing


def test_topic_routing(ch, uid, cleanup):
    x = Exchange(uid + ".x", type="topic", durable=False)
    patterns = {"a": "stock.*.nyse", "b": "stock.#", "c": "*.eur.*", "d": "#.bond"}
    qs = {k: bound_queue(ch, cleanup, f"{uid}.{k}", x, routing_key=v) for k, v in patterns.items()}
    p = Producer(ch, exchange=x, serializer="raw")
    keys = ["stock.usd.nyse", "stock.eur.nyse", "stock", "fx.eur.spot", "gov.bond",
            "bond", "stock.eur.long.bond", "other"]
    for k in keys:
        p.publish(k.encode(), routing_key=k)
    got = {k: [m.body.decode() for m in get_all(q)] for k, q in qs.items()}
    assert got == {
        "a": ["stock.usd.nyse", "stock.eur.nyse"],
        "b": ["stock.usd.nyse", "stock.eur.nyse", "stock", "stock.eur.long.bond"],
        "c": ["stock.eur.nyse", "fx.eur.spot"],
        "d": ["gov.bond", "bond", "stock.eur.long.bond"],
    }


def test_headers_routing(ch, uid, cleanup):
    x = Exchange(uid + ".x", type="headers", durable=False)
    qall = bound_queue(ch, cleanup, uid + ".all", x,
                       binding_arguments={"x-match": "all", "os": "linux", "arch": "arm"})
    qany = bound_queue(ch, cleanup, uid + ".any", x,
                       binding_arguments={"x-match": "any", "os": "linux", "arch": "arm"})
    p = Producer(ch, exchange=x, serializer="raw")
    for body, headers in [(b"both", {"os": "linux", "arch": "arm"}),
                          (b"os", {"os": "linux"}),
                          (b"arch", {"arch": "arm", "x": 1}),
                          (b"neither", {"os": "bsd"}),
                          (b"none", {})]:
        p.publish(body, routing_key="", headers=headers)
    assert [m.body for m in get_all(qall)] == [b"both"]
    assert [m.body for m in get_all(qany)] == [b"both", b"os", b"arch"]


# ---------------------------------------------------------------- large messages


@pytest.mark.parametrize("size", [131_064, 131_073, 4 * 1024 * 1024 + 1, 20 * 1024 * 1024],
                         ids=lambda s: f"{s}B")
def test_large_messages(conn, ch, uid, cleanup, size):
    q = bound_queue(ch, cleanup, uid)
    body = random.Random(size).randbytes(size)
    digest = hashlib.sha256(body).hexdigest()
    Producer(ch, serializer=None).publish(body, routing_key=uid, content_type="application/x-data",
                                          content_encoding="binary", headers={"sha": digest})
    got = []
    with Consumer(ch, queues=[q], callbacks=[lambda b, m: (got.append(m), m.ack())],
                  accept=["application/x-data"]):
        drain_until(conn, lambda: got, timeout=60, what="the large message")
    m = got[0]
    assert len(m.body) == size
    assert m.headers["sha"] == digest
    assert m.body == body


# ---------------------------------------------------------------- 100,000 messages

ROUND_TRIP_N = int(os.environ.get("FEDAMQ_ROUND_TRIP_N", "100000"))


def test_100k_round_trip_nothing_lost_or_duplicated(amqp_url, uid, cleanup):
    n = ROUND_TRIP_N
    setup = kconn(amqp_url)
    sch = setup.channel()
    bound_queue(sch, cleanup, uid)
    seen = bytearray(n)
    dups = []
    corrupt = []
    received = [0]
    pad = b"k" * 60
    errors = []
    ready = threading.Event()

    def consume():
        try:
            with kconn(amqp_url) as c:
                ch = c.channel()
                state = {"last": None, "since": 0}

                def on_message(body, message):
                    i = struct.unpack_from(">I", message.body)[0]
                    if message.body[4:] != pad or message.headers.get("seq") != i:
                        corrupt.append(i)
                    if seen[i]:
                        dups.append(i)
                    seen[i] = 1
                    received[0] += 1
                    state["last"] = message
                    state["since"] += 1
                    if state["since"] >= 500:
                        message.ack(multiple=True)
                        state["since"] = 0
                        state["last"] = None

                q = Queue(uid, durable=False)
                with Consumer(ch, queues=[q], callbacks=[on_message], prefetch_count=1000,
                              accept=["application/data"]):
                    ready.set()
                    deadline = time.monotonic() + 240
                    while received[0] < n and time.monotonic() < deadline:
                        try:
                            c.drain_events(timeout=0.2)
                        except socket.timeout:
                            pass
                    if state["last"] is not None:
                        state["last"].ack(multiple=True)
                    drain_quiet(c, 0.5)  # duplicates would arrive here
        except Exception as e:  # pragma: no cover - reported below
            ready.set()
            errors.append(e)

    t = threading.Thread(target=consume)
    t.start()
    assert ready.wait(10)
    with kconn(amqp_url) as pc:
        p = Producer(pc.channel(), serializer=None)
        for i in range(n):
            p.publish(struct.pack(">I", i) + pad, routing_key=uid, headers={"seq": i},
                      content_type="application/data", content_encoding="binary")
    t.join(timeout=300)
    assert not t.is_alive(), "consumer did not finish"
    assert not errors, errors
    assert dups == []
    assert corrupt == []
    assert n - sum(seen) == 0, f"{n - sum(seen)} messages lost"
    assert received[0] == n
    assert sch.queue_declare(uid, passive=True)[1:] == (0, 0)
    setup.release()

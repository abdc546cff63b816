"""fedamq against pika (PyPI `pika`), the blocking adapter.

Covers connect and authentication failures, declare/bind/publish/consume/ack, mandatory
returns, publisher confirms, transactions, TTL and dead-lettering, headers and topic
routing, large messages and a 100,000-message round trip.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import threading
import time

import pika
import pika.exceptions as pex
import pytest
from pika.spec import BasicProperties


def connect(url: str, **overrides) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.blocked_connection_timeout = 30
    for k, v in overrides.items():
        setattr(params, k, v)
    return pika.BlockingConnection(params)


@pytest.fixture
def conn(amqp_url):
    c = connect(amqp_url)
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def ch(conn):
    return conn.channel()


def wait_until(conn, pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        conn.process_data_events(time_limit=0.05)


def ready(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def get_all(ch, queue: str) -> list[tuple]:
    """basic.get (auto-ack) until the queue is empty: [(method, properties, body)]."""
    out = []
    while True:
        m, p, b = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((m, p, b))


def declare_queue(ch, cleanup, name, **kw):
    cleanup.queue(name)
    return ch.queue_declare(name, **kw)


def declare_exchange(ch, cleanup, name, kind, **kw) -> str:
    cleanup.exchange(name)
    ch.exchange_declare(name, exchange_type=kind, **kw)
    return name


# ---------------------------------------------------------------- connect and auth


def test_connect_server_properties(conn):
    props = conn._impl.server_properties
    assert props["product"] == "fedamq"
    caps = props["capabilities"]
    for cap in (
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "exchange_exchange_bindings",
        "authentication_failure_close",
        "per_consumer_qos",
        "connection.blocked",
    ):
        assert caps.get(cap) is True, cap
    ch = conn.channel()
    assert ch.is_open
    ch.close()
    assert ch.is_closed
    conn.close()
    assert conn.is_closed


@pytest.mark.parametrize(
    "user,password", [("guest", "wrong-password"), ("no-such-user", "guest")]
)
def test_auth_failure_refused_403(broker, user, password):
    params = pika.ConnectionParameters(
        broker["host"],
        broker["port"],
        broker["vhost"],
        pika.PlainCredentials(user, password),
        connection_attempts=1,
    )
    with pytest.raises(pex.ProbableAuthenticationError) as ei:
        pika.BlockingConnection(params)
    assert "(403)" in str(ei.value)
    assert "ACCESS_REFUSED" in str(ei.value)


def test_unknown_vhost_refused_530(broker):
    params = pika.ConnectionParameters(
        broker["host"],
        broker["port"],
        "no-such-vhost",
        pika.PlainCredentials(broker["user"], broker["password"]),
        connection_attempts=1,
    )
    with pytest.raises(pex.ProbableAccessDeniedError) as ei:
        pika.BlockingConnection(params)
    assert "(530)" in str(ei.value)
    assert "NOT_ALLOWED" in str(ei.value)


def test_heartbeats_keep_connection_open(amqp_url, uid, cleanup):
    c = connect(amqp_url, heartbeat=1)
    try:
        assert c._impl.params.heartbeat == 1
        ch = c.channel()
        declare_queue(ch, cleanup, uid)
        # three heartbeat intervals with no traffic but heartbeats
        c.process_data_events(time_limit=3.5)
        assert c.is_open
        ch.basic_publish("", uid, b"still-alive")
        m, _, body = ch.basic_get(uid, auto_ack=True)
        assert body == b"still-alive"
    finally:
        if c.is_open:
            c.close()


# ---------------------------------------------- declare, bind, publish, consume, ack


def test_declare_bind_publish_consume_ack(conn, ch, uid, cleanup):
    x = uid + ".x"
    q = uid + ".q"
    declare_exchange(ch, cleanup, x, "direct")
    ok = declare_queue(ch, cleanup, q)
    assert ok.method.queue == q
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0
    ch.queue_bind(q, x, routing_key="rk")

    headers = {
        "s": "text",
        "i": 42,
        "neg": -7,
        "big": 2**40,
        "t": True,
        "f": False,
        "nested": {"a": 1, "b": "two"},
        "list": [1, "two", 3],
    }
    sent = []
    for i in range(20):
        body = f"message {i}".encode()
        props = BasicProperties(
            content_type="text/plain",
            content_encoding="utf-8",
            headers=dict(headers, seq=i),
            delivery_mode=2,
            priority=3,
            correlation_id=f"corr-{i}",
            reply_to="reply.here",
            message_id=f"id-{i}",
            timestamp=1_700_000_000 + i,
            type="test.type",
            user_id="guest",
            app_id="fedamq-interop",
        )
        ch.basic_publish(x, "rk", body, props)
        sent.append(body)
    # a routing key with no binding must not reach the queue
    ch.basic_publish(x, "other", b"not for q")

    got = []

    def on_message(chan, method, props, body):
        got.append((method, props, body))

    tag = ch.basic_consume(q, on_message)
    wait_until(conn, lambda: len(got) >= 20, what="20 deliveries")
    conn.process_data_events(time_limit=0.2)
    assert [b for _, _, b in got] == sent
    for i, (m, p, b) in enumerate(got):
        assert m.consumer_tag == tag
        assert m.delivery_tag == i + 1
        assert m.redelivered is False
        assert m.exchange == x
        assert m.routing_key == "rk"
        assert p.content_type == "text/plain"
        assert p.content_encoding == "utf-8"
        assert p.headers == dict(headers, seq=i)
        assert p.delivery_mode == 2
        assert p.priority == 3
        assert p.correlation_id == f"corr-{i}"
        assert p.reply_to == "reply.here"
        assert p.message_id == f"id-{i}"
        assert p.timestamp == 1_700_000_000 + i
        assert p.type == "test.type"
        assert p.user_id == "guest"
        assert p.app_id == "fedamq-interop"
        ch.basic_ack(m.delivery_tag)
    ch.basic_cancel(tag)
    ok = ch.queue_declare(q, passive=True)
    assert ok.method.message_count == 0
    assert ok.method.consumer_count == 0


def test_user_id_mismatch_is_refused_406(conn, ch, uid, cleanup):
    q = declare_queue(ch, cleanup, uid).method.queue
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish("", q, b"x", BasicProperties(user_id="someone-else"))
        ch.queue_declare(q, passive=True)  # round trip to see the close
    assert ei.value.reply_code == 406
    assert ei.value.reply_text.startswith("PRECONDITION_FAILED")


def test_unacked_messages_requeued_on_channel_close(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    for b in (b"a", b"b", b"c"):
        ch.basic_publish("", uid, b)
    got = []
    for _ in range(3):
        m, _, body = ch.basic_get(uid, auto_ack=False)
        assert m.redelivered is False
        got.append(body)
    assert got == [b"a", b"b", b"c"]
    ch.close()
    ch2 = conn.channel()
    again = get_all(ch2, uid)
    assert [b for _, _, b in again] == [b"a", b"b", b"c"]
    assert all(m.redelivered for m, _, _ in again)


def test_basic_get_reject_and_nack(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    for b in (b"a", b"b", b"c"):
        ch.basic_publish("", uid, b)
    m, _, body = ch.basic_get(uid)
    assert (body, m.message_count) == (b"a", 2)
    ch.basic_reject(m.delivery_tag, requeue=False)  # dropped: no DLX
    m, _, body = ch.basic_get(uid)
    assert (body, m.redelivered, m.message_count) == (b"b", False, 1)
    ch.basic_nack(m.delivery_tag, requeue=True)  # back at the head
    m, _, body = ch.basic_get(uid)
    assert (body, m.redelivered) == (b"b", True)
    ch.basic_ack(m.delivery_tag)
    m, _, body = ch.basic_get(uid)
    assert (body, m.redelivered, m.message_count) == (b"c", False, 0)
    ch.basic_nack(m.delivery_tag, requeue=False)
    assert ch.basic_get(uid) == (None, None, None)


def test_prefetch_limits_unacked_deliveries(conn, ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    for i in range(20):
        ch.basic_publish("", uid, str(i).encode())
    ch.basic_qos(prefetch_count=5)
    got = []
    ch.basic_consume(uid, lambda c, m, p, b: got.append((m.delivery_tag, b)))
    wait_until(conn, lambda: len(got) >= 5, what="5 deliveries")
    conn.process_data_events(time_limit=0.5)
    assert [b for _, b in got] == [str(i).encode() for i in range(5)]
    ch.basic_ack(got[-1][0], multiple=True)
    wait_until(conn, lambda: len(got) >= 10, what="10 deliveries")
    conn.process_data_events(time_limit=0.5)
    assert [b for _, b in got] == [str(i).encode() for i in range(10)]


def test_passive_declare_missing_queue_404(conn, uid):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(uid + ".absent", passive=True)
    assert ei.value.reply_code == 404
    assert ei.value.reply_text.startswith("NOT_FOUND")
    # a channel error leaves the connection usable
    assert conn.is_open
    ch2 = conn.channel()
    assert ch2.is_open


def test_exchange_redeclare_with_other_type_406(conn, uid, cleanup):
    ch = conn.channel()
    declare_exchange(ch, cleanup, uid, "direct")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.exchange_declare(uid, exchange_type="fanout")
    assert ei.value.reply_code == 406
    assert ei.value.reply_text.startswith("PRECONDITION_FAILED")
    ch = conn.channel()
    ch.exchange_declare(uid, exchange_type="direct", passive=True)


def test_exclusive_queue_locked_for_other_connection_405(amqp_url, conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid, exclusive=True)
    other = connect(amqp_url)
    try:
        och = other.channel()
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            och.basic_consume(uid, lambda *a: None)
        assert ei.value.reply_code == 405
        assert ei.value.reply_text.startswith("RESOURCE_LOCKED")
    finally:
        other.close()
    conn.close()
    # the exclusive queue went away with its connection
    c3 = connect(amqp_url)
    try:
        with pytest.raises(pex.ChannelClosedByBroker) as ei:
            c3.channel().queue_declare(uid, passive=True)
        assert ei.value.reply_code == 404
    finally:
        c3.close()


def test_exclusive_consumer_refuses_other_consumers_403(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    ch.basic_consume(uid, lambda *a: None, exclusive=True)
    other = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        other.basic_consume(uid, lambda *a: None)
    assert ei.value.reply_code == 403
    assert ei.value.reply_text.startswith("ACCESS_REFUSED")
    assert ch.is_open


def test_consumer_priority_prefers_highest(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    got = []
    ch.basic_consume(uid, lambda c, m, p, b: got.append("low"), auto_ack=True)
    ch.basic_consume(uid, lambda c, m, p, b: got.append("high"), auto_ack=True,
                     arguments={"x-priority": 10})
    for _ in range(6):
        ch.basic_publish("", uid, b"x")
    wait_until(conn, lambda: len(got) >= 6, what="6 deliveries")
    assert got == ["high"] * 6


def test_purge_and_delete_if_empty(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    for i in range(7):
        ch.basic_publish("", uid, b"x")
    assert ch.queue_purge(uid).method.message_count == 7
    ch.basic_publish("", uid, b"y")
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_delete(uid, if_empty=True)
    assert ei.value.reply_code == 406
    ch = conn.channel()
    ch.basic_publish("", uid, b"z")
    assert ch.queue_delete(uid).method.message_count == 2


def test_consumer_cancelled_when_queue_deleted(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    cancelled = []
    ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = ch.basic_consume(uid, lambda *a: None)
    other = conn.channel()
    other.queue_delete(uid)
    wait_until(conn, lambda: cancelled, what="basic.cancel from the broker")
    assert cancelled == [tag]
    assert ch.is_open


def test_priority_queue_orders_by_priority(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid, arguments={"x-max-priority": 10})
    order = [3, 1, 5, 0, 9, 5]
    for i, prio in enumerate(order):
        ch.basic_publish("", uid, f"{prio}-{i}".encode(), BasicProperties(priority=prio))
    bodies = [b.decode() for _, _, b in get_all(ch, uid)]
    assert bodies == ["9-4", "5-2", "5-5", "3-0", "1-1", "0-3"]


# ---------------------------------------------------------------- mandatory returns


def test_mandatory_unroutable_is_returned_312(conn, ch, uid, cleanup):
    x = declare_exchange(ch, cleanup, uid, "direct")
    returned = []
    ch.add_on_return_callback(lambda c, m, p, b: returned.append((m, p, b)))
    props = BasicProperties(message_id="m-1", headers={"k": "v"})
    ch.basic_publish(x, "nowhere", b"returned body", props, mandatory=True)
    ch.basic_publish(x, "nowhere", b"silently dropped", mandatory=False)
    wait_until(conn, lambda: returned, what="basic.return")
    conn.process_data_events(time_limit=0.3)
    assert len(returned) == 1
    m, p, b = returned[0]
    assert m.reply_code == 312
    assert m.reply_text == "NO_ROUTE"
    assert m.exchange == x
    assert m.routing_key == "nowhere"
    assert b == b"returned body"
    assert p.message_id == "m-1"
    assert p.headers == {"k": "v"}


def test_mandatory_routable_is_not_returned(conn, ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    returned = []
    ch.add_on_return_callback(lambda *a: returned.append(a))
    ch.basic_publish("", uid, b"routed", mandatory=True)
    conn.process_data_events(time_limit=0.3)
    assert returned == []
    assert ch.basic_get(uid, auto_ack=True)[2] == b"routed"


def test_mandatory_return_with_confirms_raises_unroutable(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    ch.confirm_delivery()
    with pytest.raises(pex.UnroutableError) as ei:
        ch.basic_publish("", uid + ".absent", b"lost?", mandatory=True)
    msgs = ei.value.messages
    assert len(msgs) == 1
    assert msgs[0].body == b"lost?"
    assert msgs[0].method.reply_code == 312
    ch.basic_publish("", uid, b"ok", mandatory=True)  # routable: no exception
    assert ready(ch, uid) == 1


# ---------------------------------------------------------------- publisher confirms


def test_publisher_confirms_every_message(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    ch.confirm_delivery()
    for i in range(2000):
        ch.basic_publish("", uid, struct.pack(">I", i))  # raises on nack
    assert ready(ch, uid) == 2000
    bodies = [struct.unpack(">I", b)[0] for _, _, b in get_all(ch, uid)]
    assert bodies == list(range(2000))


def test_confirm_nack_on_reject_publish_overflow(ch, uid, cleanup):
    declare_queue(
        ch, cleanup, uid, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
    )
    ch.confirm_delivery()
    ch.basic_publish("", uid, b"1")
    ch.basic_publish("", uid, b"2")
    with pytest.raises(pex.NackError) as ei:
        ch.basic_publish("", uid, b"3")
    assert ei.value.messages == []  # a nack without a basic.return carries no message
    assert [b for _, _, b in get_all(ch, uid)] == [b"1", b"2"]


def test_publish_to_missing_exchange_closes_channel_404(conn, uid):
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish(uid + ".absent", "rk", b"x")
    assert ei.value.reply_code == 404
    assert ei.value.reply_text.startswith("NOT_FOUND")
    assert conn.is_open


# ---------------------------------------------------------------- transactions


def test_tx_commit_and_rollback(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    ch.tx_select()
    for b in (b"r1", b"r2", b"r3"):
        ch.basic_publish("", uid, b)
    ch.tx_rollback()
    assert ready(ch, uid) == 0
    for b in (b"c1", b"c2", b"c3"):
        ch.basic_publish("", uid, b)
    assert ready(ch, uid) == 0  # not visible before commit
    ch.tx_commit()
    assert ready(ch, uid) == 3

    # an ack inside a rolled-back transaction is discarded; a committed one takes effect
    m, _, body = ch.basic_get(uid)
    assert body == b"c1"
    ch.basic_ack(m.delivery_tag)
    ch.tx_rollback()
    assert ready(ch, uid) == 2
    ch.basic_ack(m.delivery_tag)
    ch.tx_commit()
    ch.close()
    ch = conn.channel()  # a closed channel requeues what it still held unacked
    assert [b for _, _, b in get_all(ch, uid)] == [b"c2", b"c3"]


def test_tx_commit_without_select_406(conn):
    ch = conn.channel()
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.tx_commit()
    assert ei.value.reply_code == 406
    assert ei.value.reply_text.startswith("PRECONDITION_FAILED")


# ---------------------------------------------------------------- TTL, dead-lettering


def test_queue_message_ttl_expires(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid, arguments={"x-message-ttl": 200})
    for b in (b"1", b"2", b"3"):
        ch.basic_publish("", uid, b)
    time.sleep(0.6)
    assert ch.basic_get(uid, auto_ack=True) == (None, None, None)
    assert ready(ch, uid) == 0


def test_per_message_expiration(ch, uid, cleanup):
    declare_queue(ch, cleanup, uid)
    ch.basic_publish("", uid, b"short", BasicProperties(expiration="100"))
    ch.basic_publish("", uid, b"forever")
    ch.basic_publish("", uid, b"zero", BasicProperties(expiration="0"))
    time.sleep(0.4)
    got = get_all(ch, uid)
    assert [b for _, _, b in got] == [b"forever"]


@pytest.mark.parametrize("expiration", ["abc", "-5"])
def test_invalid_expiration_is_refused_406(conn, uid, cleanup, expiration):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.basic_publish("", uid, b"x", BasicProperties(expiration=expiration))
        ch.queue_declare(uid, passive=True)  # round trip to see the close
    assert ei.value.reply_code == 406
    assert ei.value.reply_text.startswith(f"PRECONDITION_FAILED - invalid expiration '{expiration}'")


def test_queue_expires_deletes_unused_queue(conn, uid, cleanup):
    ch = conn.channel()
    declare_queue(ch, cleanup, uid, arguments={"x-expires": 300})
    time.sleep(1.0)
    with pytest.raises(pex.ChannelClosedByBroker) as ei:
        ch.queue_declare(uid, passive=True)
    assert ei.value.reply_code == 404


def _dlx_setup(ch, cleanup, uid, source_args, dl_rk=None):
    dlx = uid + ".dlx"
    dlq = uid + ".dlq"
    src = uid + ".src"
    declare_exchange(ch, cleanup, dlx, "direct")
    declare_queue(ch, cleanup, dlq)
    ch.queue_bind(dlq, dlx, routing_key=dl_rk or src)
    args = {"x-dead-letter-exchange": dlx, **source_args}
    if dl_rk:
        args["x-dead-letter-routing-key"] = dl_rk
    declare_queue(ch, cleanup, src, arguments=args)
    return src, dlx, dlq


def wait_get(ch, q, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, p, b = ch.basic_get(q, auto_ack=True)
        if m is not None:
            return m, p, b
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived in {q} within {timeout}s")


def test_dead_letter_on_queue_ttl(ch, uid, cleanup):
    src, dlx, dlq = _dlx_setup(ch, cleanup, uid, {"x-message-ttl": 100}, dl_rk="dead")
    ch.basic_publish("", src, b"expire me", BasicProperties(headers={"orig": "yes"}))
    m, p, b = wait_get(ch, dlq)
    assert b == b"expire me"
    assert m.exchange == dlx
    assert m.routing_key == "dead"
    assert p.headers["orig"] == "yes"
    deaths = p.headers["x-death"]
    assert len(deaths) == 1
    d = deaths[0]
    assert d["reason"] == "expired"
    assert d["queue"] == src
    assert d["exchange"] == ""
    assert d["routing-keys"] == [src]
    assert d["count"] == 1
    assert "time" in d
    assert p.headers["x-first-death-reason"] == "expired"
    assert p.headers["x-first-death-queue"] == src
    assert p.headers["x-first-death-exchange"] == ""
    assert ready(ch, src) == 0


def test_dead_letter_per_message_expiration_keeps_original(ch, uid, cleanup):
    src, dlx, dlq = _dlx_setup(ch, cleanup, uid, {})
    ch.basic_publish("", src, b"short-lived", BasicProperties(expiration="100"))
    m, p, b = wait_get(ch, dlq)
    assert b == b"short-lived"
    assert m.routing_key == src  # no dead-letter routing key: the original one
    assert p.expiration is None  # RabbitMQ removes it so the message cannot expire again
    d = p.headers["x-death"][0]
    assert d["reason"] == "expired"
    assert d["original-expiration"] == "100"


def test_expired_while_unacked_is_dead_lettered_on_requeue(ch, uid, cleanup):
    src, dlx, dlq = _dlx_setup(ch, cleanup, uid, {"x-message-ttl": 300})
    ch.basic_publish("", src, b"held too long")
    m, _, _ = ch.basic_get(src)  # unacked: it cannot expire while held
    time.sleep(0.6)
    assert ready(ch, dlq) == 0
    ch.basic_nack(m.delivery_tag, requeue=True)
    time.sleep(0.3)
    # nobody reads src: the requeue alone must expire the message
    assert ready(ch, src) == 0
    m, p, b = wait_get(ch, dlq, timeout=1.0)
    assert b == b"held too long"
    assert p.headers["x-death"][0]["reason"] == "expired"


@pytest.mark.parametrize("how", ["reject", "nack"])
def test_dead_letter_on_reject(ch, uid, cleanup, how):
    src, dlx, dlq = _dlx_setup(ch, cleanup, uid, {})
    ch.basic_publish("", src, b"bad message")
    m, _, _ = ch.basic_get(src)
    if how == "reject":
        ch.basic_reject(m.delivery_tag, requeue=False)
    else:
        ch.basic_nack(m.delivery_tag, requeue=False)
    m, p, b = wait_get(ch, dlq)
    assert b == b"bad message"
    assert m.routing_key == src
    d = p.headers["x-death"]
    assert len(d) == 1
    assert (d[0]["reason"], d[0]["queue"], d[0]["count"]) == ("rejected", src, 1)


def test_dead_letter_on_max_length(ch, uid, cleanup):
    src, dlx, dlq = _dlx_setup(ch, cleanup, uid, {"x-max-length": 2})
    for b in (b"first", b"second", b"third"):
        ch.basic_publish("", src, b)
    m, p, b = wait_get(ch, dlq)
    assert b == b"first"
    assert p.headers["x-death"][0]["reason"] == "maxlen"
    assert [b for _, _, b in get_all(ch, src)] == [b"second", b"third"]


def test_dead_letter_cycle_through_two_queues_records_both(ch, uid, cleanup):
    # src --(reject)--> dlq --(ttl)--> back to src. The cycle includes a rejection, so
    # RabbitMQ does not drop it; x-death has one entry per (queue, reason), newest first.
    dlx = declare_exchange(ch, cleanup, uid + ".dlx", "direct")
    src = uid + ".src"
    dlq = uid + ".dlq"
    declare_queue(
        ch, cleanup, src,
        arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "to-dlq"},
    )
    declare_queue(
        ch, cleanup, dlq,
        arguments={
            "x-dead-letter-exchange": dlx,
            "x-dead-letter-routing-key": "to-src",
            "x-message-ttl": 50,
        },
    )
    ch.queue_bind(dlq, dlx, routing_key="to-dlq")
    ch.queue_bind(src, dlx, routing_key="to-src")
    ch.basic_publish("", src, b"cycling")
    m, p, b = ch.basic_get(src)
    assert (b, p.headers) == (b"cycling", None)
    ch.basic_reject(m.delivery_tag, requeue=False)
    m, p, b = wait_get(ch, src)
    assert b == b"cycling"
    assert m.routing_key == "to-src"
    deaths = [(d["queue"], d["reason"], d["count"]) for d in p.headers["x-death"]]
    assert deaths == [(dlq, "expired", 1), (src, "rejected", 1)]
    assert p.headers["x-first-death-queue"] == src
    assert p.headers["x-first-death-reason"] == "rejected"


# ---------------------------------------------------------------- routing


def _route(conn, ch, cleanup, uid, kind, bindings, publishes):
    """Declare exchange `kind`, one queue per binding name, publish, and return
    {queue name: [bodies]} as delivered."""
    x = uid + ".x"
    declare_exchange(ch, cleanup, x, kind)
    for qname, binds in bindings.items():
        declare_queue(ch, cleanup, f"{uid}.{qname}")
        for rk, args in binds:
            ch.queue_bind(f"{uid}.{qname}", x, routing_key=rk, arguments=args)
    ch.confirm_delivery()
    for rk, headers, body in publishes:
        ch.basic_publish(x, rk, body, BasicProperties(headers=headers))
    return {q: [b for _, _, b in get_all(ch, f"{uid}.{q}")] for q in bindings}


def test_topic_routing(conn, ch, uid, cleanup):
    bindings = {
        "orange": [("*.orange.*", None)],
        "lazy": [("lazy.#", None), ("*.*.rabbit", None)],
        "all": [("#", None)],
        "exact": [("quick.orange.fox", None)],
        "hashmid": [("a.#.z", None)],
        "twostar": [("*.*", None)],
    }
    keys = [
        "quick.orange.rabbit",
        "lazy.orange.elephant",
        "quick.orange.fox",
        "lazy.brown.fox",
        "lazy.pink.rabbit",  # matches both lazy bindings: delivered once
        "quick.brown.fox",
        "orange",
        "quick.orange.male.rabbit",
        "lazy",
        "a.z",
        "a.b.c.z",
        "a.b",
    ]
    got = _route(conn, ch, cleanup, uid, "topic", bindings, [(k, None, k.encode()) for k in keys])
    e = lambda *ks: [k.encode() for k in ks]  # noqa: E731
    assert got["orange"] == e("quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox")
    assert got["lazy"] == e(
        "quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy.pink.rabbit", "lazy"
    )
    assert got["all"] == e(*keys)
    assert got["exact"] == e("quick.orange.fox")
    assert got["hashmid"] == e("a.z", "a.b.c.z")
    assert got["twostar"] == e("a.z", "a.b")


def test_headers_routing(conn, ch, uid, cleanup):
    bindings = {
        "all": [("", {"x-match": "all", "format": "pdf", "type": "report"})],
        "any": [("", {"x-match": "any", "format": "zip", "type": "log"})],
        "default": [("", {"format": "pdf"})],  # no x-match: all
        "int": [("", {"x-match": "all", "n": 1})],
        "exists": [("", {"x-match": "any", "flag": True})],
    }
    pubs = [
        ("", {"format": "pdf", "type": "report"}, b"pdf-report"),
        ("", {"format": "pdf", "type": "log"}, b"pdf-log"),
        ("", {"format": "zip"}, b"zip"),
        ("", {"type": "report"}, b"report-only"),
        ("", {"n": 1}, b"n-int-1"),
        ("", {"n": "1"}, b"n-str-1"),
        ("", {"flag": True, "format": "pdf", "type": "report", "extra": 5}, b"everything"),
        ("", None, b"no-headers"),
    ]
    got = _route(conn, ch, cleanup, uid, "headers", bindings, pubs)
    assert got["all"] == [b"pdf-report", b"everything"]
    assert got["any"] == [b"pdf-log", b"zip"]
    assert got["default"] == [b"pdf-report", b"pdf-log", b"everything"]
    assert got["int"] == [b"n-int-1"]
    assert got["exists"] == [b"everything"]


def test_fanout_and_exchange_to_exchange(conn, ch, uid, cleanup):
    src = uid + ".src"
    fan = uid + ".fan"
    declare_exchange(ch, cleanup, src, "topic")
    declare_exchange(ch, cleanup, fan, "fanout")
    ch.exchange_bind(destination=fan, source=src, routing_key="metrics.#")
    qs = [declare_queue(ch, cleanup, f"{uid}.q{i}").method.queue for i in range(3)]
    for q in qs:
        ch.queue_bind(q, fan)
    ch.confirm_delivery()
    ch.basic_publish(src, "metrics.cpu", b"cpu")
    ch.basic_publish(src, "logs.app", b"log")
    ch.basic_publish(fan, "whatever", b"direct-to-fanout")
    for q in qs:
        assert [b for _, _, b in get_all(ch, q)] == [b"cpu", b"direct-to-fanout"]
    ch.exchange_unbind(destination=fan, source=src, routing_key="metrics.#")
    ch.basic_publish(src, "metrics.cpu", b"after-unbind")
    for q in qs:
        assert ready(ch, q) == 0


# ---------------------------------------------------------------- large messages


@pytest.mark.parametrize(
    "size",
    [0, 1, 131_064, 131_065, 262_136, 1_048_583, 16 * 1024 * 1024 + 3],
    ids=lambda s: f"{s}B",
)
def test_large_message_round_trip(conn, ch, uid, cleanup, size):
    declare_queue(ch, cleanup, uid)
    body = random.Random(size).randbytes(size)
    ch.confirm_delivery()
    ch.basic_publish("", uid, body, BasicProperties(message_id=hashlib.sha256(body).hexdigest()))
    got = []
    ch.basic_consume(uid, lambda c, m, p, b: got.append((m, p, b)))
    wait_until(conn, lambda: got, timeout=60, what="the large message")
    m, p, b = got[0]
    assert len(b) == size
    assert hashlib.sha256(b).hexdigest() == p.message_id
    assert b == body
    ch.basic_ack(m.delivery_tag)


# ---------------------------------------------------------------- 100,000 messages

ROUND_TRIP_N = int(os.environ.get("FEDAMQ_ROUND_TRIP_N", "100000"))


def test_100k_round_trip_nothing_lost_or_duplicated(amqp_url, uid, cleanup):
    n = ROUND_TRIP_N
    setup = connect(amqp_url)
    sch = setup.channel()
    declare_queue(sch, cleanup, uid)

    seen = bytearray(n)
    dups = []
    corrupt = []
    received = [0]
    errors = []
    pad = b"p" * 60

    def consume():
        try:
            c = connect(amqp_url)
            cch = c.channel()
            cch.basic_qos(prefetch_count=1000)
            last = [0]

            def on_msg(chan, m, p, body):
                i = struct.unpack_from(">I", body)[0]
                if body[4:] != pad or p.message_id != str(i):
                    corrupt.append(i)
                if seen[i]:
                    dups.append(i)
                seen[i] = 1
                received[0] += 1
                if m.delivery_tag - last[0] >= 500:
                    chan.basic_ack(m.delivery_tag, multiple=True)
                    last[0] = m.delivery_tag

            cch.basic_consume(uid, on_msg)
            deadline = time.monotonic() + 240
            while received[0] < n and time.monotonic() < deadline:
                c.process_data_events(time_limit=0.1)
            cch.basic_ack(0, multiple=True)
            c.process_data_events(time_limit=0.5)  # dups would show up here
            c.close()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=consume)
    t.start()
    pub = connect(amqp_url)
    pch = pub.channel()
    for i in range(n):
        pch.basic_publish("", uid, struct.pack(">I", i) + pad, BasicProperties(message_id=str(i)))
    pub.close()
    t.join(timeout=300)
    assert not t.is_alive(), "consumer did not finish"
    assert not errors, errors
    assert dups == []
    assert corrupt == []
    missing = n - sum(seen)
    assert missing == 0, f"{missing} messages lost"
    assert received[0] == n
    ok = sch.queue_declare(uid, passive=True).method
    assert (ok.message_count, ok.consumer_count) == (0, 0)
    setup.close()

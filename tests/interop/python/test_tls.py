"""fedamq's TLS listeners against Python's TLS stack (OpenSSL, through `ssl`).

pika and py-amqp over amqps: server-only TLS, with a client certificate, and the
EXTERNAL login (the user is the certificate's CN); the refusals: a server whose CA the
client does not trust, a client certificate from a CA the broker does not trust, plain
AMQP on the TLS port, EXTERNAL without a certificate. The management API over HTTPS with
basic auth.

run-python.sh sets FEDAMQ_TLS_URL, FEDAMQ_TLS_DIR (the files of make-certs.sh) and
FEDAMQ_MANAGEMENT_HTTPS; the broker checks client certificates when they are sent
(verify_peer) without requiring one.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request

import amqp
import amqp.sasl
import pika
import pika.credentials
import pika.exceptions as pex
import pytest


@pytest.fixture(scope="module")
def tls():
    missing = [
        v
        for v in ("FEDAMQ_TLS_URL", "FEDAMQ_TLS_DIR", "FEDAMQ_MANAGEMENT_HTTPS")
        if not os.environ.get(v)
    ]
    if missing:
        raise pytest.UsageError(f"{', '.join(missing)} not set (run-python.sh sets them)")
    u = urllib.parse.urlparse(os.environ["FEDAMQ_TLS_URL"])
    return {
        "host": u.hostname,
        "port": u.port,
        "dir": os.environ["FEDAMQ_TLS_DIR"],
        "https": os.environ["FEDAMQ_MANAGEMENT_HTTPS"],
    }


def context(tls, ca="ca", cert=None) -> ssl.SSLContext:
    """A client context trusting CA (a make-certs.sh name), presenting CERT if given."""
    ctx = ssl.create_default_context(cafile=os.path.join(tls["dir"], f"{ca}.pem"))
    if cert:
        ctx.load_cert_chain(
            os.path.join(tls["dir"], f"{cert}.pem"), os.path.join(tls["dir"], f"{cert}.key")
        )
    return ctx


def pika_connect(tls, ca="ca", cert=None, credentials=None) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=tls["host"],
        port=tls["port"],
        ssl_options=pika.SSLOptions(context(tls, ca, cert), tls["host"]),
        credentials=credentials or pika.PlainCredentials("guest", "guest"),
        connection_attempts=1,
    )
    return pika.BlockingConnection(params)


def pika_round_trip(conn: pika.BlockingConnection, body: bytes):
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_publish("", q, body)
    for _ in range(1000):
        method, _props, got = ch.basic_get(q, auto_ack=True)
        if method:
            assert got == body
            return
        conn.process_data_events(time_limit=0.01)
    raise AssertionError("the message did not come back")


def test_pika_server_only_tls(tls):
    conn = pika_connect(tls)
    try:
        pika_round_trip(conn, b"over TLS")
    finally:
        conn.close()


def test_pika_with_a_client_certificate(tls):
    conn = pika_connect(tls, cert="client")
    try:
        pika_round_trip(conn, b"mutual TLS")
    finally:
        conn.close()


def test_pika_external_login_from_the_certificate(tls):
    conn = pika_connect(tls, cert="client", credentials=pika.credentials.ExternalCredentials())
    try:
        pika_round_trip(conn, b"EXTERNAL")
    finally:
        conn.close()


def test_pika_external_without_a_certificate_is_refused(tls):
    # EXTERNAL is offered only with a verified client certificate.
    with pytest.raises(pex.AMQPConnectionError):
        pika_connect(tls, credentials=pika.credentials.ExternalCredentials())


def test_pika_refuses_a_server_its_ca_did_not_sign(tls):
    # pika raises the ssl module's error as it is.
    with pytest.raises(ssl.SSLCertVerificationError):
        pika_connect(tls, ca="stranger-ca")


def test_a_client_certificate_from_an_untrusted_ca_is_refused(tls):
    with pytest.raises(pex.AMQPConnectionError):
        pika_connect(tls, cert="stranger")


def amqp_connect(tls, cert=None, **kwargs) -> amqp.Connection:
    d = tls["dir"]
    sslopts = {"ca_certs": os.path.join(d, "ca.pem"), "server_hostname": tls["host"]}
    if cert:
        sslopts |= {
            "certfile": os.path.join(d, f"{cert}.pem"),
            "keyfile": os.path.join(d, f"{cert}.key"),
        }
    conn = amqp.Connection(host=f"{tls['host']}:{tls['port']}", ssl=sslopts, **kwargs)
    conn.connect()
    return conn


def amqp_round_trip(conn: amqp.Connection, body: bytes):
    ch = conn.channel()
    q, _, _ = ch.queue_declare("", exclusive=True)
    ch.basic_publish(amqp.Message(body), exchange="", routing_key=q)
    for _ in range(1000):
        msg = ch.basic_get(q, no_ack=True)
        if msg is not None:
            assert msg.body == body
            return
    raise AssertionError("the message did not come back")


def test_py_amqp_server_only_and_with_a_client_certificate(tls):
    for cert in (None, "client"):
        conn = amqp_connect(tls, cert=cert, userid="guest", password="guest")
        try:
            amqp_round_trip(conn, b"py-amqp over TLS")
        finally:
            conn.close()


def test_py_amqp_external_login(tls):
    conn = amqp_connect(tls, cert="client", authentication=(amqp.sasl.EXTERNAL(),))
    try:
        amqp_round_trip(conn, b"py-amqp EXTERNAL")
    finally:
        conn.close()


def test_plain_amqp_on_the_tls_port_is_refused(tls):
    conn = amqp.Connection(host=f"{tls['host']}:{tls['port']}", connect_timeout=10)
    with pytest.raises((OSError, amqp.exceptions.AMQPError)):
        conn.connect()
    conn.collect()


def https_get(tls, path, ctx, password="guest"):
    req = urllib.request.Request(tls["https"] + path)
    auth = base64.b64encode(f"guest:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def test_management_api_over_https(tls):
    status, overview = https_get(tls, "/api/overview", context(tls))
    assert status == 200
    assert overview["product_name"] == "fedamq"
    # Basic auth is checked over HTTPS as over HTTP.
    with pytest.raises(urllib.error.HTTPError) as e:
        https_get(tls, "/api/overview", context(tls), password="wrong")
    assert e.value.code == 401
    # A client that does not trust the CA refuses the server.
    with pytest.raises(urllib.error.URLError) as e:
        https_get(tls, "/api/overview", context(tls, ca="stranger-ca"))
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError), e.value

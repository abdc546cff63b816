//! TLS: the `amqps` listener (server-only and mutual TLS, with lapin), EXTERNAL logins
//! from client certificates, bad input on both ports, reloading certificates under
//! load, and peerings over `amqps://`. Certificates are made at test time (rcgen).
//!
//! The tests run on a multi-threaded runtime: lapin's TLS handshake blocks the thread
//! it runs on, which on a single-threaded runtime is the broker's too. lapin needs the
//! process's default rustls provider set (`support::tls::lapin_tls` does it).

mod support;

use std::sync::{Mutex, Once};
use std::time::Duration;

use bytes::BytesMut;
use fedamq::BrokerHandle;
use fedamq::peering::{Backoff, Peering, PeeringConfig, PeeringState, PeeringStatus, Remote};
use fedamq::protocol::frame::{FrameDecoder, FramePayload};
use fedamq::protocol::generated::methods::Method;
use fedamq::transport::tls::{TlsClientSettings, Verify, connect_tls};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::broker;
use support::tls::{CertFiles, Pki, config, lapin_tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// What the broker logged, for checking that refusals are explained.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
}

/// Waits until a log line has both `a` and `b`, and returns it.
async fn logged(a: &str, b: &str) -> String {
    let found = timeout(Duration::from_secs(10), async {
        loop {
            let text = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
            if let Some(line) = text.lines().find(|l| l.contains(a) && l.contains(b)) {
                return line.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no log line with {a:?} and {b:?}"))
}

fn amqps_url(b: &BrokerHandle, user: &str, query: &str) -> String {
    let addr = b.tls_local_addr().expect("TLS listener");
    format!("amqps://{user}:{user}@{addr}/%2f{query}")
}

async fn lapin_tls_connect(
    b: &BrokerHandle,
    pki: &Pki,
    identity: Option<&CertFiles>,
    query: &str,
) -> lapin::Result<Connection> {
    Connection::connect_with_config(
        &amqps_url(b, "guest", query),
        ConnectionProperties::default(),
        lapin_tls(pki, identity),
    )
    .await
}

/// Declares a fresh queue, publishes `body` to it and gets it back.
async fn round_trip(conn: &Connection, body: &[u8]) {
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare("", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .expect("queue");
    ch.basic_publish(
        "",
        q.name().as_str(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let got = loop {
        if let Some(m) = ch
            .basic_get(q.name().as_str(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            break m;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(got.data, body);
    ch.close(200, "done").await.expect("channel close");
}

/// The mechanisms the server offers in connection.start, over any stream.
async fn offered_mechanisms(mut s: impl AsyncRead + AsyncWrite + Unpin) -> String {
    s.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut buf = BytesMut::new();
    let mut frames = FrameDecoder::new(131_072);
    loop {
        if let Some(frame) = frames.decode(&mut buf).unwrap() {
            let FramePayload::Method(p) = frame.payload else {
                panic!("expected a method frame");
            };
            let Method::ConnectionStart(start) = Method::decode(&p).unwrap() else {
                panic!("expected connection.start");
            };
            return String::from_utf8(start.mechanisms.to_vec()).unwrap();
        }
        assert!(s.read_buf(&mut buf).await.unwrap() > 0, "closed");
    }
}

/// Our TLS client, trusting `pki`, presenting `identity` if given.
fn client_settings(pki: &Pki, identity: Option<&CertFiles>) -> TlsClientSettings {
    TlsClientSettings {
        cacertfile: Some(pki.ca.clone()),
        certfile: identity.map(|c| c.cert.clone()),
        keyfile: identity.map(|c| c.key.clone()),
        ..TlsClientSettings::default()
    }
}

/// A TLS connection with our client that the broker refuses: the handshake fails, or
/// (TLS 1.3, where the client finishes first) the socket is closed right after it,
/// before a single byte of AMQP (connection.start) comes back.
async fn refused(b: &BrokerHandle, settings: &TlsClientSettings) {
    let tcp = TcpStream::connect(b.tls_local_addr().unwrap())
        .await
        .unwrap();
    if let Ok(mut s) = connect_tls(tcp, "127.0.0.1", settings).await {
        let _ = s.write_all(b"AMQP\x00\x00\x09\x01").await;
        let mut buf = [0u8; 64];
        let read = timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("the server closes the socket");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the server answered a refused client: {read:?}"
        );
    }
}

/// Reads until the server closes the socket (EOF or a TLS alert): proof that it let the
/// connection go. The time limit only keeps a failing test from hanging.
async fn wait_closed(mut s: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 1024];
    timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_with_lapin_and_plain_port_alongside() {
    let pki = Pki::new("server-only CA");
    capture_logs();
    let b = broker::start_with(config(&pki, &pki.server(), false, false)).await;
    let conn = lapin_tls_connect(&b, &pki, None, "").await;
    let conn =
        conn.unwrap_or_else(|e| panic!("{e:?} {}", String::from_utf8_lossy(&LOG.lock().unwrap())));
    round_trip(&conn, b"over TLS").await;
    // The plain listener still serves.
    let plain = broker::connect(&b).await;
    round_trip(&plain, b"over TCP").await;
    // A client that does not trust the CA refuses the server.
    let other = Pki::new("another CA");
    let tcp = TcpStream::connect(b.tls_local_addr().unwrap())
        .await
        .unwrap();
    let e = connect_tls(tcp, "127.0.0.1", &client_settings(&other, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // So does lapin.
    assert!(lapin_tls_connect(&b, &other, None, "").await.is_err());
    round_trip(&conn, b"still fine").await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_trusted_client_certificate() {
    capture_logs();
    let pki = Pki::new("mutual CA");
    let b = broker::start_with(config(&pki, &pki.server(), true, true)).await;
    let me = pki.client("app");
    let conn = lapin_tls_connect(&b, &pki, Some(&me), "")
        .await
        .expect("mutual TLS");
    round_trip(&conn, b"mutual").await;
    // No certificate: refused (fail_if_no_peer_cert), for lapin as for our client; and
    // a certificate from a CA the broker does not trust.
    refused(&b, &client_settings(&pki, None)).await;
    assert!(lapin_tls_connect(&b, &pki, None, "").await.is_err());
    let stranger = Pki::new("a stranger's CA").client("app");
    refused(&b, &client_settings(&pki, Some(&stranger))).await;
    round_trip(&conn, b"mutual, still").await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_login_from_the_certificate_common_name() {
    let pki = Pki::new("external CA");
    // verify_peer without fail_if_no_peer_cert: certificates are optional.
    let b = broker::start_with(config(&pki, &pki.server(), true, false)).await;
    let tls = b.tls_local_addr().unwrap();

    // EXTERNAL is offered only with a verified client certificate.
    let with_cert = client_settings(&pki, Some(&pki.client("guest")));
    let s = connect_tls(
        TcpStream::connect(tls).await.unwrap(),
        "127.0.0.1",
        &with_cert,
    )
    .await
    .unwrap();
    assert_eq!(offered_mechanisms(s).await, "PLAIN AMQPLAIN EXTERNAL");
    let without = client_settings(&pki, None);
    let s = connect_tls(
        TcpStream::connect(tls).await.unwrap(),
        "127.0.0.1",
        &without,
    )
    .await
    .unwrap();
    assert_eq!(offered_mechanisms(s).await, "PLAIN AMQPLAIN");
    let plain = TcpStream::connect(b.local_addr()).await.unwrap();
    assert_eq!(offered_mechanisms(plain).await, "PLAIN AMQPLAIN");

    // lapin logs in as guest (the CN) with no password.
    let external = "?auth_mechanism=external";
    let guest = pki.client("guest");
    let conn = lapin_tls_connect(&b, &pki, Some(&guest), external)
        .await
        .expect("EXTERNAL login");
    round_trip(&conn, b"external").await;
    let users: Vec<String> = b
        .broker()
        .connections()
        .list()
        .into_iter()
        .map(|c| c.user.clone())
        .collect();
    assert!(users.contains(&"guest".to_owned()), "{users:?}");

    // A certificate naming a user that does not exist: refused.
    let nobody = pki.client("nobody");
    let login = lapin_tls_connect(&b, &pki, Some(&nobody), external).await;
    assert_eq!(login.err().as_ref().and_then(broker::reply_code), Some(403));
    // EXTERNAL without a certificate is not offered, so refused.
    assert!(lapin_tls_connect(&b, &pki, None, external).await.is_err());
    round_trip(&conn, b"external, still").await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_logged_closed_and_harms_no_one() {
    capture_logs();
    let pki = Pki::new("bad-input CA");
    let b = broker::start_with(config(&pki, &pki.server(), true, false)).await;
    let tls = b.tls_local_addr().unwrap();
    // Clients that keep working throughout, on each port.
    let bystander = broker::connect(&b).await;
    round_trip(&bystander, b"before").await;
    let me = pki.client("bystander");
    let tls_bystander = lapin_tls_connect(&b, &pki, Some(&me), "").await.unwrap();
    round_trip(&tls_bystander, b"before").await;

    // A plain AMQP client on the TLS port.
    let mut plain = TcpStream::connect(tls).await.unwrap();
    let port = plain.local_addr().unwrap().port();
    plain.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    wait_closed(&mut plain).await;
    let line = logged(&format!(":{port} closed"), "not TLS").await;
    assert!(line.contains("plain AMQP client on the TLS port"), "{line}");
    released(tls.port(), port).await;

    // A TLS client on the plain port: our protocol header back, then closed.
    let tcp = TcpStream::connect(b.local_addr()).await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let refused = connect_tls(tcp, "127.0.0.1", &client_settings(&pki, None)).await;
    assert!(refused.is_err());
    logged(&format!(":{port} on a plain AMQP port"), "TLS handshake").await;
    released(b.local_addr().port(), port).await;

    // A handshake that stalls: connect and send nothing. The broker holds the socket
    // until the timeout, then closes it and lets its descriptor go.
    let mut stalled = TcpStream::connect(tls).await.unwrap();
    let port = stalled.local_addr().unwrap().port();
    held(tls.port(), port).await;
    wait_closed(&mut stalled).await;
    logged(&format!(":{port} closed"), "not completed within").await;
    released(tls.port(), port).await;
    // Half a ClientHello, then nothing: also closed at the timeout.
    let mut half = TcpStream::connect(tls).await.unwrap();
    let port = half.local_addr().unwrap().port();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    wait_closed(&mut half).await;
    logged(&format!(":{port} closed"), "not completed within").await;
    released(tls.port(), port).await;
    // Garbage that looks like a TLS record: a clear refusal, not a panic.
    let mut garbage = TcpStream::connect(tls).await.unwrap();
    let port = garbage.local_addr().unwrap().port();
    garbage.write_all(&[0x16; 64]).await.unwrap();
    wait_closed(&mut garbage).await;
    logged(&format!(":{port} closed"), "TLS handshake failed").await;
    released(tls.port(), port).await;

    // An expired client certificate, and one from a CA the broker does not trust.
    let other = Pki::new("untrusted CA");
    for (identity, reason) in [
        (pki.expired("late", &[]), "expired"),
        (other.client("stranger"), "UnknownIssuer"),
    ] {
        let tcp = TcpStream::connect(tls).await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        // With TLS 1.3 the client learns of the refusal on its first read.
        if let Ok(s) = connect_tls(tcp, "127.0.0.1", &client_settings(&pki, Some(&identity))).await
        {
            wait_closed(s).await;
        }
        let line = logged(&format!(":{port} closed"), "TLS handshake failed").await;
        assert!(
            line.to_lowercase().contains(&reason.to_lowercase()),
            "{line}"
        );
        released(tls.port(), port).await;
    }

    round_trip(&bystander, b"after").await;
    round_trip(&tls_bystander, b"after").await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_holds_up_no_other_client() {
    let pki = Pki::new("stall CA");
    let mut config = config(&pki, &pki.server(), false, false);
    // Far longer than the test: the stalled socket is still held at the end unless
    // something waited for its timeout.
    config.ssl_options.handshake_timeout = Duration::from_secs(600);
    let b = broker::start_with(config).await;
    let tls = b.tls_local_addr().unwrap();
    let stalled = TcpStream::connect(tls).await.unwrap();
    let port = stalled.local_addr().unwrap().port();
    held(tls.port(), port).await;
    // A client that arrives while the handshake is stalled is served (the time limit
    // only keeps a failing test from hanging).
    let conn = timeout(
        Duration::from_secs(30),
        lapin_tls_connect(&b, &pki, None, ""),
    )
    .await
    .expect("served while another handshake stalls")
    .expect("amqps");
    round_trip(&conn, b"past the stall").await;
    assert!(holds(tls.port(), port), "the stalled handshake ended early");
    drop(stalled);
    b.shutdown().await;
}

/// Whether this process (the broker, in the tests) has a descriptor for the server end
/// of the TCP connection from `client_port` to `server_port`, by the socket's inode in
/// `/proc/net/tcp` and the links in `/proc/self/fd`.
fn holds(server_port: u16, client_port: u16) -> bool {
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && port(f[1]) == Some(server_port) && port(f[2]) == Some(client_port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|link| inodes.iter().any(|i| link.to_str() == Some(i.as_str())))
}

/// Waits until the broker holds the server end of the connection from `client_port`
/// (it has accepted it).
async fn held(server_port: u16, client_port: u16) {
    timeout(Duration::from_secs(10), async {
        while !holds(server_port, client_port) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no descriptor for :{client_port} -> :{server_port}"));
}

/// Waits until the broker no longer holds a descriptor for the connection from
/// `client_port` (the time limit only keeps a failing test from hanging).
async fn released(server_port: u16, client_port: u16) {
    timeout(Duration::from_secs(10), async {
        while holds(server_port, client_port) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the broker still holds :{client_port} -> :{server_port}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_keeps_open_connections() {
    let old = Pki::new("old CA");
    let mut config = config(&old, &old.server(), false, false);
    // The files the listener reads, overwritten below.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    let first = old.server();
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    config.ssl_options.certfile = Some(cert.clone());
    config.ssl_options.keyfile = Some(key.clone());
    let b = broker::start_with(config).await;

    // A publisher with confirms, flat out, on a connection made before the reload.
    let conn = lapin_tls_connect(&b, &old, None, "").await.expect("amqps");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = ch
        .queue_declare("", QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let queue = q.name().to_string();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let publisher = {
        let (ch, queue) = (ch.clone(), queue.clone());
        tokio::spawn(async move {
            let mut sent = 0u32;
            while stop_rx.try_recv().is_err() {
                ch.basic_publish(
                    "",
                    &queue,
                    BasicPublishOptions::default(),
                    b"load",
                    BasicProperties::default(),
                )
                .await
                .expect("publish")
                .await
                .expect("confirmed");
                sent += 1;
            }
            sent
        })
    };

    // New certificates from a new CA, then the reload.
    let new = Pki::new("new CA");
    let second = new.server();
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    b.reload_tls().expect("reload");
    // New connections get the new certificate: a client trusting only the new CA gets
    // in, one trusting only the old one does not.
    let fresh = lapin_tls_connect(&b, &new, None, "").await.expect("new CA");
    round_trip(&fresh, b"new cert").await;
    let tcp = TcpStream::connect(b.tls_local_addr().unwrap())
        .await
        .unwrap();
    assert!(
        connect_tls(tcp, "127.0.0.1", &client_settings(&old, None))
            .await
            .is_err()
    );
    // A file that is not a key: the reload fails and the certificates in use stay.
    std::fs::write(&key, "not a key").unwrap();
    assert!(b.reload_tls().is_err());
    assert!(lapin_tls_connect(&b, &new, None, "").await.is_ok());

    stop_tx.send(()).unwrap();
    let sent = publisher.await.unwrap();
    assert!(sent > 0);
    // Every confirmed message is in the queue: nothing dropped across the reload.
    let count = ch
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(count, sent);
    round_trip(&conn, b"old connection, still").await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------
// Peerings over amqps://

fn peering_to(uri: &str) -> Peering {
    let mut config = PeeringConfig::new(Remote::from_uri(uri).expect("uri"));
    config.reconnect = Some(Backoff {
        min: Duration::from_millis(20),
        max: Duration::from_millis(200),
    });
    config.connect_timeout = Duration::from_secs(5);
    let (peering, _events) = Peering::new(config);
    peering.start();
    peering
}

async fn wait_for(
    peering: &Peering,
    what: &str,
    pred: impl Fn(&PeeringStatus) -> bool,
) -> PeeringStatus {
    let mut rx = peering.watch_status();
    let found = timeout(Duration::from_secs(20), async {
        loop {
            let s = rx.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            if rx.changed().await.is_err() {
                panic!("peering task gone while waiting for {what}");
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("not {what}: {:?}", peering.status()))
}

/// A peering to `uri` is refused with a certificate error naming `reason`, and keeps
/// retrying with back-off.
async fn refused_with(uri: &str, reason: &str) {
    let peering = peering_to(uri);
    let s = wait_for(&peering, "backing off after a TLS error", |s| {
        matches!(s.state, PeeringState::BackingOff { .. }) && s.last_error.is_some()
    })
    .await;
    let text = s.last_error.unwrap().text;
    assert!(text.contains(reason), "{reason:?} not in {text:?}");
    // It goes on trying.
    wait_for(
        &peering,
        "a second attempt",
        |s| matches!(s.state, PeeringState::BackingOff { attempt, .. } if attempt >= 2),
    )
    .await;
    peering.stop().await;
}

async fn publish_through(peering: &Peering) {
    use fedamq::protocol::ShortString;
    use fedamq::protocol::generated::methods::{BasicPublish, QueueDeclare};
    use fedamq::protocol::generated::properties::{
        BasicProperties as Props, EncodedBasicProperties,
    };
    let q = peering
        .declare_queue(QueueDeclare {
            exclusive: true,
            ..Default::default()
        })
        .await
        .expect("declare over TLS");
    peering
        .publish(
            BasicPublish {
                routing_key: q.queue.clone(),
                exchange: ShortString::default(),
                ..Default::default()
            },
            EncodedBasicProperties::encode(&Props::default()),
            bytes::Bytes::from_static(b"through TLS"),
        )
        .await
        .expect("confirmed over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_over_tls_to_fedamq() {
    let pki = Pki::new("peering CA");
    // The remote asks for client certificates.
    let remote = broker::start_with(config(&pki, &pki.server(), true, true)).await;
    let addr = remote.tls_local_addr().unwrap();
    let me = pki.client("peer");
    let ca = pki.ca.display().to_string();
    let uri = format!(
        "amqps://guest:guest@{addr}/%2f?cacertfile={ca}&certfile={}&keyfile={}",
        me.cert.display(),
        me.key.display()
    );
    let peering = peering_to(&uri);
    wait_for(&peering, "running", |s| s.state == PeeringState::Running).await;
    publish_through(&peering).await;
    peering.stop().await;

    // Without its certificate the remote refuses the link; it is retried.
    refused_with(
        &format!("amqps://guest:guest@{addr}/%2f?cacertfile={ca}"),
        "CertificateRequired",
    )
    .await;
    remote.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_refuses_wrong_ca_expired_and_wrong_name() {
    let pki = Pki::new("remote CA");
    let other = Pki::new("another CA");
    for (server, uri_ca, host_query, reason) in [
        (pki.server(), &other.ca, "", "UnknownIssuer"),
        (pki.expired("fedamq", &["127.0.0.1"]), &pki.ca, "", "xpired"),
        (
            pki.sign("fedamq", &["elsewhere.example"], false),
            &pki.ca,
            "",
            "not valid for name",
        ),
    ] {
        let remote = broker::start_with(config(&pki, &server, false, false)).await;
        let addr = remote.tls_local_addr().unwrap();
        let uri = format!(
            "amqps://guest:guest@{addr}/%2f?cacertfile={}{host_query}",
            uri_ca.display()
        );
        refused_with(&uri, reason).await;
        remote.shutdown().await;
    }
    // verify_none accepts what verify_peer refused; server_name_indication names the
    // certificate's host.
    let remote = broker::start_with(config(
        &pki,
        &pki.sign("x", &["elsewhere.example"], false),
        false,
        false,
    ))
    .await;
    let addr = remote.tls_local_addr().unwrap();
    for query in [
        "?verify=verify_none".to_owned(),
        format!(
            "?cacertfile={}&server_name_indication=elsewhere.example",
            pki.ca.display()
        ),
    ] {
        let peering = peering_to(&format!("amqps://guest:guest@{addr}/%2f{query}"));
        wait_for(&peering, "running", |s| s.state == PeeringState::Running).await;
        peering.stop().await;
    }
    remote.shutdown().await;
    let _ = Verify::VerifyPeer;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peering_over_tls_to_rabbitmq() {
    if !support::rabbitmq::available("peering_over_tls_to_rabbitmq") {
        return;
    }
    let url = support::rabbitmq::amqps_url();
    let dir = support::rabbitmq::tls_dir();
    let ca = dir.join("ca.pem");
    // Server-only TLS, then with a client certificate.
    for query in [
        format!("?cacertfile={}", ca.display()),
        format!(
            "?cacertfile={}&certfile={}&keyfile={}&verify=verify_peer",
            ca.display(),
            dir.join("client.pem").display(),
            dir.join("client.key").display()
        ),
    ] {
        let peering = peering_to(&format!("{url}{query}"));
        wait_for(&peering, "running", |s| s.state == PeeringState::Running).await;
        publish_through(&peering).await;
        peering.stop().await;
    }
    // A CA that did not sign RabbitMQ's certificate: refused, retried.
    let other = Pki::new("not RabbitMQ's CA");
    refused_with(
        &format!("{url}?cacertfile={}", other.ca.display()),
        "UnknownIssuer",
    )
    .await;
}

// ---------------------------------------------------------------------------------
// The management API over HTTPS

/// GET `path` over HTTPS (hyper over our TLS client) as guest; the status and body, or
/// the TLS error.
async fn https_get(
    at: std::net::SocketAddr,
    settings: &TlsClientSettings,
    path: &str,
    password: &str,
) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    let tcp = TcpStream::connect(at).await.unwrap();
    let tls = connect_tls(tcp, "127.0.0.1", settings)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let auth = {
        use base64::Engine;
        let user = base64::engine::general_purpose::STANDARD.encode(format!("guest:{password}"));
        format!("Basic {user}")
    };
    let req = hyper::Request::get(path)
        .header("host", at.to_string())
        .header("authorization", auth)
        .body(Empty::new())
        .unwrap();
    // With TLS 1.3 a refused client certificate shows on the first read.
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A broker whose management API serves HTTPS with `pki`'s server certificate, copied
/// to files in `dir` (so a test can overwrite them and reload).
async fn https_broker(
    pki: &Pki,
    dir: &std::path::Path,
    verify_peer: bool,
) -> (BrokerHandle, std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("https.pem"), dir.join("https.key"));
    let server = pki.server();
    std::fs::copy(&server.cert, &cert).unwrap();
    std::fs::copy(&server.key, &key).unwrap();
    let mut config = fedamq::config::Config::default();
    config.management_ssl.options = fedamq::transport::tls::TlsServerSettings {
        certfile: Some(cert.clone()),
        keyfile: Some(key.clone()),
        cacertfile: Some(pki.ca.clone()),
        verify: if verify_peer {
            Verify::VerifyPeer
        } else {
            Verify::VerifyNone
        },
        fail_if_no_peer_cert: verify_peer,
        handshake_timeout: support::tls::TEST_HANDSHAKE_TIMEOUT,
        ..Default::default()
    };
    (broker::start_with(config).await, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_over_https_with_basic_auth_and_reload() {
    capture_logs();
    let pki = Pki::new("management CA");
    let dir = tempfile::tempdir().unwrap();
    let (b, cert, key) = https_broker(&pki, dir.path(), false).await;
    let at = b.management_https_addr().expect("the API serves HTTPS");
    assert!(
        b.tls_local_addr().is_none(),
        "no amqps listener was asked for"
    );

    // Trusting the CA: the overview, as guest.
    let trusting = client_settings(&pki, None);
    let (status, body) = https_get(at, &trusting, "/api/overview", "guest")
        .await
        .expect("HTTPS");
    assert_eq!(status, 200, "{body}");
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["product_name"], "fedamq", "{body}");
    // Basic auth is checked over HTTPS as over HTTP.
    let (status, _) = https_get(at, &trusting, "/api/overview", "wrong")
        .await
        .unwrap();
    assert_eq!(status, 401);
    // Not trusting it: the client refuses the server.
    let other = Pki::new("not the management CA");
    let e = https_get(at, &client_settings(&other, None), "/api/overview", "guest")
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // Plain HTTP on the HTTPS port: logged and closed.
    let mut plain = TcpStream::connect(at).await.unwrap();
    let port = plain.local_addr().unwrap().port();
    plain
        .write_all(b"GET /api/overview HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    wait_closed(&mut plain).await;
    logged(
        &format!("management API: TLS connection from 127.0.0.1:{port} closed"),
        "not TLS",
    )
    .await;
    // The plain HTTP listener serves beside it.
    let reply = support::management::Http::of(&b)
        .call("GET", "/api/overview", None)
        .await;
    assert_eq!(reply.status, 200);

    // New certificates from a new CA, then the reload (what SIGHUP does).
    let new = Pki::new("new management CA");
    let second = new.server();
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    b.reload_tls().expect("reload");
    let (status, _) = https_get(at, &client_settings(&new, None), "/api/overview", "guest")
        .await
        .expect("the new certificate");
    assert_eq!(status, 200);
    let e = https_get(at, &trusting, "/api/overview", "guest")
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // A file that is not a key: the reload fails and the new certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    assert!(b.reload_tls().is_err());
    let (status, _) = https_get(at, &client_settings(&new, None), "/api/overview", "guest")
        .await
        .unwrap();
    assert_eq!(status, 200);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_api_over_https_can_require_client_certificates() {
    let pki = Pki::new("management mutual CA");
    let dir = tempfile::tempdir().unwrap();
    let (b, _, _) = https_broker(&pki, dir.path(), true).await;
    let at = b.management_https_addr().unwrap();
    let me = pki.client("operator");
    let (status, _) = https_get(
        at,
        &client_settings(&pki, Some(&me)),
        "/api/overview",
        "guest",
    )
    .await
    .expect("with a client certificate");
    assert_eq!(status, 200);
    // No certificate, or one from another CA: refused.
    let stranger = Pki::new("a stranger's CA").client("operator");
    for identity in [None, Some(&stranger)] {
        let got = https_get(
            at,
            &client_settings(&pki, identity),
            "/api/overview",
            "guest",
        )
        .await;
        assert!(got.is_err(), "{got:?}");
    }
    b.shutdown().await;
}

//! The fault-injecting TCP proxy (tests/support/fault_proxy.rs) in front of a small echo
//! server: bytes pass both ways, cut, refuse, stall, delay, drop. Runs on both tokio
//! runtime flavours.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::fault_proxy::{FaultProxy, percent_encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

const WAIT: Duration = Duration::from_secs(5);

/// An echo server on 127.0.0.1:0 that counts connections and bytes received; each reply
/// goes out `reply_delay` after the bytes came in. Dropping it stops everything it runs.
struct Echo {
    addr: SocketAddr,
    /// Connections accepted, connections open, bytes received.
    stats: watch::Receiver<(usize, usize, usize)>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start(reply_delay: Duration) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stats_tx, stats) = watch::channel((0, 0, 0));
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                stats_tx.send_modify(|st| {
                    st.0 += 1;
                    st.1 += 1;
                });
                let stats_tx = stats_tx.clone();
                conns.spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        stats_tx.send_modify(|st| st.2 += n);
                        tokio::time::sleep(reply_delay).await;
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    drop(s);
                    stats_tx.send_modify(|st| st.1 -= 1);
                });
            }
        });
        Echo { addr, stats, task }
    }

    fn accepted(&self) -> usize {
        self.stats.borrow().0
    }

    fn received(&self) -> usize {
        self.stats.borrow().2
    }

    async fn wait(&self, what: &str, pred: impl FnMut(&(usize, usize, usize)) -> bool) {
        let mut rx = self.stats.clone();
        tokio::time::timeout(WAIT, rx.wait_for(pred))
            .await
            .unwrap_or_else(|_| {
                panic!("echo server: {what} within 5 s: {:?}", *self.stats.borrow())
            })
            .unwrap();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.addr())
        .await
        .expect("connect to the proxy")
}

/// Writes `data` and reads the same number of bytes back.
async fn round_trip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo within 5 s")
        .expect("echo read");
    back
}

/// True when the stream reports its end (EOF or an error) within 5 s; bytes still
/// arriving before that are drained.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Nothing arrives on `s` for `d`.
async fn silent_for(s: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(d, s.read(&mut buf)).await.is_err()
}

#[tokio::test]
async fn bytes_pass_both_ways_and_close_passes_on() {
    let echo = Echo::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(echo.addr).await;
    assert_eq!(proxy.addr().ip().to_string(), "127.0.0.1");
    assert_ne!(proxy.addr().port(), 0);

    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"hello").await, b"hello");
    // A megabyte, written while the echo comes back (so neither side's buffers block).
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = c.into_split();
    let expected = big.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&big).await.unwrap();
        w
    });
    let mut back = vec![0u8; expected.len()];
    tokio::time::timeout(WAIT, r.read_exact(&mut back))
        .await
        .expect("1 MiB echoed within 5 s")
        .unwrap();
    assert!(back == expected, "1 MiB came back changed");
    let mut w = writer.await.unwrap();
    assert_eq!(echo.received(), 5 + expected.len());
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.live_connections(), 1);
    assert_eq!(echo.accepted(), 1);

    // A half-close goes through: the echo server sees EOF, closes, and so does the client.
    w.shutdown().await.unwrap();
    let mut c = r.reunite(w).unwrap();
    assert!(
        closed(&mut c).await,
        "the close came back through the proxy"
    );
    echo.wait("connection closed", |st| st.1 == 0).await;
    assert!(
        proxy.wait_live(0, WAIT).await,
        "live: {}",
        proxy.live_connections()
    );
    assert_eq!(proxy.connections_accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_closes_every_connection_and_new_ones_work() {
    let echo = Echo::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut a = connect(&proxy).await;
    let mut b = connect(&proxy).await;
    assert_eq!(round_trip(&mut a, b"a").await, b"a");
    assert_eq!(round_trip(&mut b, b"b").await, b"b");
    assert_eq!(proxy.live_connections(), 2);

    proxy.cut();
    assert!(closed(&mut a).await, "a was not closed by the cut");
    assert!(closed(&mut b).await, "b was not closed by the cut");
    assert!(proxy.wait_live(0, WAIT).await);
    // The upstream side was closed too.
    echo.wait("both upstream connections closed", |st| st.1 == 0)
        .await;

    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"after the cut").await, b"after the cut");
    assert_eq!(proxy.connections_accepted(), 3);
    assert_eq!(proxy.live_connections(), 1);
    assert_eq!(echo.accepted(), 3);
}

#[tokio::test]
async fn refuse_closes_new_connections_until_cleared() {
    let echo = Echo::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut before = connect(&proxy).await;
    assert_eq!(round_trip(&mut before, b"x").await, b"x");

    proxy.set_refuse(true);
    for _ in 0..3 {
        let mut refused = connect(&proxy).await;
        assert!(
            closed(&mut refused).await,
            "a connection while refusing stayed open"
        );
    }
    assert!(proxy.wait_accepted(4, WAIT).await);
    assert_eq!(proxy.connections_refused(), 3);
    // Refused connections never reach the upstream; the one from before still works.
    assert_eq!(echo.accepted(), 1);
    assert_eq!(round_trip(&mut before, b"still up").await, b"still up");
    assert_eq!(proxy.live_connections(), 1);

    proxy.set_refuse(false);
    let mut after = connect(&proxy).await;
    assert_eq!(round_trip(&mut after, b"back").await, b"back");
    assert_eq!(echo.accepted(), 2);
    assert_eq!(proxy.connections_accepted(), 5);
    assert_eq!(proxy.connections_refused(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_holds_bytes_both_ways_and_resume_delivers_them() {
    // The echo answers 300 ms after it reads, so a stall can begin while the answer is
    // on its way back.
    let echo = Echo::start(Duration::from_millis(300)).await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"warm-up").await, b"warm-up");
    let warm = echo.received();

    // Client to server: held while stalled.
    proxy.set_stall(true);
    c.write_all(b"held up").await.unwrap();
    assert!(silent_for(&mut c, Duration::from_millis(700)).await);
    assert_eq!(
        echo.received(),
        warm,
        "bytes reached the server during a stall"
    );
    assert_eq!(
        proxy.live_connections(),
        1,
        "a stall must not close anything"
    );
    proxy.set_stall(false);
    let mut back = [0u8; 7];
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .expect("held bytes delivered after the stall")
        .unwrap();
    assert_eq!(&back, b"held up");

    // Server to client: the server has read the bytes, its answer is held.
    c.write_all(b"held down").await.unwrap();
    echo.wait("bytes received", |st| st.2 == warm + 7 + 9).await;
    proxy.set_stall(true);
    assert!(
        silent_for(&mut c, Duration::from_millis(900)).await,
        "the answer came through a stall"
    );
    proxy.set_stall(false);
    let mut back = [0u8; 9];
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .expect("held answer delivered after the stall")
        .unwrap();
    assert_eq!(&back, b"held down");

    // New connections made while stalled are held too, then work.
    proxy.set_stall(true);
    let mut d = connect(&proxy).await;
    d.write_all(b"new").await.unwrap();
    assert!(silent_for(&mut d, Duration::from_millis(500)).await);
    proxy.set_stall(false);
    let mut back = [0u8; 3];
    tokio::time::timeout(WAIT, d.read_exact(&mut back))
        .await
        .expect("new connection's bytes delivered after the stall")
        .unwrap();
    assert_eq!(&back, b"new");
    assert_eq!(proxy.connections_accepted(), 2);
}

#[tokio::test]
async fn delay_adds_latency_each_way() {
    let echo = Echo::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"fast").await, b"fast");

    let d = Duration::from_millis(150);
    proxy.set_delay(d);
    for i in 0..3u8 {
        let start = Instant::now();
        assert_eq!(round_trip(&mut c, &[i; 10]).await, [i; 10]);
        let took = start.elapsed();
        // Delayed on the way up and again on the way back.
        assert!(
            took >= 2 * d,
            "round trip {i} took {took:?}, less than 2 x {d:?}"
        );
    }

    proxy.set_delay(Duration::ZERO);
    assert_eq!(round_trip(&mut c, b"fast again").await, b"fast again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_closes_connections_and_the_listener() {
    let echo = Echo::start(Duration::ZERO).await;
    let proxy = FaultProxy::start(echo.addr).await;
    let addr = proxy.addr();
    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"x").await, b"x");
    proxy.set_stall(true); // a stalled connection is closed too

    drop(proxy);
    assert!(
        closed(&mut c).await,
        "the client was not closed by the drop"
    );
    echo.wait("upstream connection closed", |st| st.1 == 0)
        .await;
    // The listener goes away (the accept task is cancelled): connecting fails.
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(addr).await {
            Err(_) => break,
            Ok(mut s) => {
                // Accepted by a listener that is still closing: it must not proxy.
                assert!(closed(&mut s).await);
                assert!(
                    Instant::now() < deadline,
                    "the proxy still listens after drop"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn upstream_down_closes_the_client_and_set_upstream_switches() {
    // A port nothing listens on (bound, then closed).
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(dead).await;
    let mut c = connect(&proxy).await;
    assert!(
        closed(&mut c).await,
        "a client of a dead upstream stayed open"
    );
    assert!(proxy.wait_live(0, WAIT).await);

    let echo = Echo::start(Duration::ZERO).await;
    proxy.set_upstream(echo.addr);
    let mut c = connect(&proxy).await;
    assert_eq!(round_trip(&mut c, b"up").await, b"up");
    assert_eq!(proxy.connections_accepted(), 2);
}

#[test]
fn url_percent_encodes_its_parts() {
    assert_eq!(percent_encode("/"), "%2f");
    assert_eq!(percent_encode("fedamq-test"), "fedamq-test");
    assert_eq!(percent_encode("a b@c:d"), "a%20b%40c%3ad");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let proxy = FaultProxy::start("127.0.0.1:9".parse().unwrap()).await;
        let port = proxy.addr().port();
        assert_eq!(
            proxy.url("guest", "p@ss", "/"),
            format!("amqp://guest:p%40ss@127.0.0.1:{port}/%2f")
        );
        assert_eq!(
            proxy.url("u", "p", "fedamq-test"),
            format!("amqp://u:p@127.0.0.1:{port}/fedamq-test")
        );
    });
}

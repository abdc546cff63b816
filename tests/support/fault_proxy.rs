//! A TCP proxy for tests that breaks the link on demand: in front of a broker (fedamq or
//! RabbitMQ), it lets a test cut every connection at once, refuse new ones, stall the
//! bytes in both directions (so heartbeats stop arriving while the sockets stay open),
//! or add latency.
//!
//! It runs in the test's own tokio runtime (multi-thread or current-thread): one task
//! accepts on 127.0.0.1 port 0, one task per proxied connection. Control goes through
//! `watch` channels; nothing polls. Socket errors end the connection they happened on and
//! nothing else. Dropping the proxy stops accepting and closes every connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Connection counts, also what `wait_*` watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// TCP connections accepted, refused ones included.
    pub accepted: usize,
    /// Connections accepted while refusing (closed at once).
    pub refused: usize,
    /// Connections being proxied now.
    pub live: usize,
}

/// The receiving ends every connection task watches.
#[derive(Clone)]
struct Control {
    upstream: watch::Receiver<SocketAddr>,
    refuse: watch::Receiver<bool>,
    stall: watch::Receiver<bool>,
    delay: watch::Receiver<Duration>,
    /// Bumped by `cut`: a connection closes when it differs from the value it started with.
    cut: watch::Receiver<u64>,
    /// True once the proxy is dropped (an error from the channel means the same).
    shutdown: watch::Receiver<bool>,
    counts: Arc<watch::Sender<Counts>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    upstream: watch::Sender<SocketAddr>,
    refuse: watch::Sender<bool>,
    stall: watch::Sender<bool>,
    delay: watch::Sender<Duration>,
    cut: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    counts: Arc<watch::Sender<Counts>>,
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 (a free port) forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fault proxy: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fault proxy: local address");
        let (upstream_tx, upstream_rx) = watch::channel(upstream);
        let (refuse_tx, refuse_rx) = watch::channel(false);
        let (stall_tx, stall_rx) = watch::channel(false);
        let (delay_tx, delay_rx) = watch::channel(Duration::ZERO);
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counts = Arc::new(watch::Sender::new(Counts::default()));
        let control = Control {
            upstream: upstream_rx,
            refuse: refuse_rx,
            stall: stall_rx,
            delay: delay_rx,
            cut: cut_rx,
            shutdown: shutdown_rx,
            counts: counts.clone(),
        };
        let accept_task = tokio::spawn(accept_loop(listener, control));
        FaultProxy {
            addr,
            upstream: upstream_tx,
            refuse: refuse_tx,
            stall: stall_tx,
            delay: delay_tx,
            cut: cut_tx,
            shutdown: shutdown_tx,
            counts,
            accept_task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `amqp://user:pass@127.0.0.1:port/vhost`, each part percent-encoded (so vhost "/" is
    /// `%2f`).
    pub fn url(&self, user: &str, pass: &str, vhost: &str) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:{}/{}",
            percent_encode(user),
            percent_encode(pass),
            self.addr.port(),
            percent_encode(vhost)
        )
    }

    /// Where new connections go from now on (current ones keep their upstream).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }

    /// Closes every current proxied connection, both sides at once. New connections are
    /// still accepted (unless refusing).
    pub fn cut(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// While true, new connections are accepted and closed at once (the link is down).
    pub fn set_refuse(&self, refuse: bool) {
        self.refuse.send_replace(refuse);
    }

    /// While true, no byte is forwarded in either direction on any connection, current or
    /// new, but the sockets stay open; false forwards what was held and resumes.
    pub fn set_stall(&self, stall: bool) {
        self.stall.send_replace(stall);
    }

    /// Delays each chunk by `d` from when it was read (latency, not a rate limit: chunks
    /// in flight overlap). Zero: none. Applies to chunks read from now on.
    pub fn set_delay(&self, d: Duration) {
        self.delay.send_replace(d);
    }

    /// Connections accepted so far, refused ones included.
    pub fn connections_accepted(&self) -> usize {
        self.counts.borrow().accepted
    }

    /// Connections accepted while refusing.
    pub fn connections_refused(&self) -> usize {
        self.counts.borrow().refused
    }

    /// Connections being proxied now.
    pub fn live_connections(&self) -> usize {
        self.counts.borrow().live
    }

    /// All three counts at once.
    pub fn counts(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Waits until `pred` holds for the counts, or `timeout` passes; returns the counts
    /// and whether it held.
    pub async fn wait_counts(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Counts) -> bool,
    ) -> (Counts, bool) {
        let mut rx = self.counts.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|c| pred(c))).await {
            Ok(Ok(c)) => (*c, true),
            _ => (*self.counts.borrow(), false),
        }
    }

    /// Waits until at least `n` connections were accepted; false on timeout.
    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> bool {
        self.wait_counts(timeout, |c| c.accepted >= n).await.1
    }

    /// Waits until exactly `n` connections are live; false on timeout.
    pub async fn wait_live(&self, n: usize, timeout: Duration) -> bool {
        self.wait_counts(timeout, |c| c.live == n).await.1
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Connection tasks see this (or the channel closing) and drop their sockets; the
        // accept task is cancelled, which closes the listener.
        self.shutdown.send_replace(true);
        self.accept_task.abort();
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

async fn accept_loop(listener: TcpListener, control: Control) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: back off a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *control.shutdown.borrow() {
            return;
        }
        let refused = *control.refuse.borrow();
        control.counts.send_modify(|c| {
            c.accepted += 1;
            if refused {
                c.refused += 1;
            }
        });
        if refused {
            drop(client);
            continue;
        }
        let _ = client.set_nodelay(true);
        let live = Live::new(control.counts.clone());
        tokio::spawn(serve(client, control.clone(), live));
    }
}

/// Counts a connection as live for as long as its task holds it (aborted tasks included).
struct Live(Arc<watch::Sender<Counts>>);

impl Live {
    fn new(counts: Arc<watch::Sender<Counts>>) -> Live {
        counts.send_modify(|c| c.live += 1);
        Live(counts)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.send_modify(|c| c.live -= 1);
    }
}

/// One proxied connection: until both directions end, either fails, a cut, or shutdown.
async fn serve(client: TcpStream, control: Control, _live: Live) {
    let mut cut = control.cut.clone();
    let generation = *cut.borrow_and_update();
    let mut shutdown = control.shutdown.clone();
    if *shutdown.borrow() {
        return;
    }
    let upstream = *control.upstream.borrow();
    let proxied = async {
        let server = TcpStream::connect(upstream).await?;
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::try_join!(
            forward(client_read, server_write, &control),
            forward(server_read, client_write, &control),
        )
        .map(|_| ())
    };
    // Whichever ends first, the sockets are dropped (closed) when this returns.
    tokio::select! {
        _ = proxied => {}
        _ = cut.wait_for(|g| *g != generation) => {}
        _ = shutdown.wait_for(|s| *s) => {}
    }
}

/// One direction: a reader task-half that timestamps chunks and a writer half that writes
/// each when its delay is up, both holding back while stalled. Ends when the source
/// closes (the close is passed on) or on an error.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: &Control,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let mut read_stall = control.stall.clone();
    let mut write_stall = control.stall.clone();
    let delay = control.delay.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            unstalled(&mut read_stall).await?;
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let due = Instant::now() + *delay.borrow();
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // A chunk read before a stall began is held too.
            unstalled(&mut write_stall).await?;
            to.write_all(&chunk).await?;
        }
        // The source closed: pass the close on.
        to.shutdown().await
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

async fn unstalled(stall: &mut watch::Receiver<bool>) -> io::Result<()> {
    stall
        .wait_for(|stalled| !*stalled)
        .await
        .map(|_| ())
        .map_err(|_| io::Error::other("fault proxy dropped"))
}

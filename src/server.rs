//! The listening broker: accepts connections, starts a task for each, and shuts down
//! cleanly (stop accepting, close every connection with 320 CONNECTION_FORCED).
//!
//! [`Server::start`] is how `main` and the tests run a broker: it binds (port 0 picks a
//! free port), returns a handle with the bound address, and keeps serving until the
//! handle's [`BrokerHandle::shutdown`] is called.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::config::Config;
use crate::connection;
use crate::federation::Federation;
use crate::ha::Ha;
use crate::management;
use crate::transport::tls::{TlsError, TlsServer, certificate_user};
use crate::transport::{Joined, Transport};

/// Entry point for running a broker.
pub struct Server;

/// A running broker.
pub struct BrokerHandle {
    addr: SocketAddr,
    /// Where the management HTTP API listens, if it is on.
    management: Option<SocketAddr>,
    /// Where the Prometheus endpoint listens, if it is on.
    prometheus: Option<SocketAddr>,
    /// The management API's HTTPS address and TLS configuration, when it runs.
    management_https: Option<(SocketAddr, Arc<TlsServer>)>,
    /// The `amqps` listener's address and TLS configuration, when it runs.
    tls: Option<(SocketAddr, Arc<TlsServer>)>,
    broker: Arc<Broker>,
    federation: Arc<Federation>,
    /// This broker's member of an HA pair (`[ha]`), if configured.
    ha: Option<Arc<Ha>>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds the configured address and starts serving.
    pub async fn start(config: Config) -> std::io::Result<BrokerHandle> {
        let listener = TcpListener::bind((config.bind, config.port)).await?;
        let addr = listener.local_addr()?;
        let tls = if config.tls_enabled() {
            let server = TlsServer::new(config.ssl_options.clone())
                .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
            let listener = TcpListener::bind((config.bind, config.ssl_port)).await?;
            let tls_addr = listener.local_addr()?;
            Some((listener, tls_addr, Arc::new(server)))
        } else {
            None
        };
        let broker = Broker::new(config);
        if let Some(path) = broker.config().load_definitions.clone() {
            load_definitions(&broker, &path)?;
        }
        if let Some(defs) = broker.config().file_definitions.clone() {
            load_file_definitions(&broker, &defs)?;
        }
        let federation = Federation::start(&broker);
        // Before the listeners: no client may get in before the pair's gate is up.
        let ha = match &broker.config().ha {
            Some(config) => Some(Ha::start(&broker, config).map_err(std::io::Error::other)?),
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(watch_memory(broker.clone(), shutdown_rx.clone()));
        let management = match broker.config().management.port {
            Some(port) => {
                let at = SocketAddr::new(broker.config().management.bind, port);
                let started = management::start(
                    broker.clone(),
                    federation.clone(),
                    at,
                    addr,
                    shutdown_rx.clone(),
                );
                Some(started.await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("management API on {at}: {e}"))
                })?)
            }
            None => None,
        };
        let management_https = if broker.config().management_ssl.enabled() {
            let config = &broker.config().management_ssl;
            let at = SocketAddr::new(broker.config().management.bind, config.port);
            let tls = TlsServer::new(config.options.clone())
                .map(Arc::new)
                .map_err(|e| std::io::Error::other(format!("management API TLS: {e}")))?;
            let started = management::start_https(
                broker.clone(),
                federation.clone(),
                at,
                addr,
                tls.clone(),
                shutdown_rx.clone(),
            );
            let bound = started.await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("management API (HTTPS) on {at}: {e}"))
            })?;
            Some((bound, tls))
        } else {
            None
        };
        let prometheus = match broker.config().prometheus.port {
            Some(port) => {
                let at = SocketAddr::new(broker.config().prometheus.bind, port);
                let started = management::metrics::start(
                    broker.clone(),
                    federation.clone(),
                    at,
                    shutdown_rx.clone(),
                );
                Some(started.await.map_err(|e| {
                    std::io::Error::new(e.kind(), format!("Prometheus endpoint on {at}: {e}"))
                })?)
            }
            None => None,
        };
        // One count of open connections for both listeners: `max_connections` is the
        // broker's.
        let open = Arc::new(AtomicUsize::new(0));
        let plain = accept_loop(
            listener,
            None,
            broker.clone(),
            shutdown_rx.clone(),
            open.clone(),
        );
        tracing::info!("fedamq listening on {addr}");
        let (task, tls) = match tls {
            None => (tokio::spawn(plain), None),
            Some((listener, tls_addr, server)) => {
                let secure = accept_loop(
                    listener,
                    Some(server.clone()),
                    broker.clone(),
                    shutdown_rx,
                    open,
                );
                tracing::info!("fedamq listening for TLS on {tls_addr}");
                let both = async move {
                    tokio::join!(plain, secure);
                };
                (tokio::spawn(both), Some((tls_addr, server)))
            }
        };
        Ok(BrokerHandle {
            addr,
            management,
            prometheus,
            management_https,
            tls,
            broker,
            federation,
            ha,
            shutdown,
            task,
        })
    }
}

/// Imports the `load_definitions` file; an error names the file.
fn load_definitions(broker: &Broker, path: &std::path::Path) -> std::io::Result<()> {
    let origin = format!("load_definitions {}", path.display());
    let text = std::fs::read(path).map_err(|e| invalid_definitions(&origin, e))?;
    import_definitions(broker, &text, &origin)?;
    tracing::info!("definitions loaded from {}", path.display());
    Ok(())
}

/// Imports the config file's federation upstreams, sets and policies.
fn load_file_definitions(broker: &Broker, defs: &serde_json::Value) -> std::io::Result<()> {
    let origin = "the config file's federation and policies";
    let text = serde_json::to_vec(defs).map_err(|e| invalid_definitions(origin, e))?;
    import_definitions(broker, &text, origin)
}

/// Imports a definitions document through the one definitions path; errors and
/// warnings name `origin`.
fn import_definitions(broker: &Broker, text: &[u8], origin: &str) -> std::io::Result<()> {
    use crate::management::definitions;
    let defs = definitions::parse(text).map_err(|e| invalid_definitions(origin, e))?;
    let report = definitions::import(broker, &defs).map_err(|e| invalid_definitions(origin, e))?;
    for w in report.warnings {
        tracing::warn!("{origin}: {w}");
    }
    Ok(())
}

fn invalid_definitions(origin: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{origin}: {e}"))
}

impl BrokerHandle {
    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the management HTTP API listens on (None when it is off).
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management
    }

    /// The address the management API serves HTTPS on (None when it does not).
    pub fn management_https_addr(&self) -> Option<SocketAddr> {
        self.management_https.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the Prometheus endpoint listens on (None when it is off).
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus
    }

    /// The `amqps` listener's address, when it runs.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|(addr, _)| *addr)
    }

    /// The `amqps` listener's TLS configuration, when it runs: for reloading it from
    /// elsewhere (the management API), and for its settings.
    pub fn tls(&self) -> Option<&Arc<TlsServer>> {
        self.tls.as_ref().map(|(_, server)| server)
    }

    /// Reads the certificate, key and CA files of the `amqps` listener and of the
    /// management API's HTTPS again (SIGHUP). New connections use them; open ones keep
    /// the session they have. A listener whose files fail (logged; the first error is
    /// returned) keeps the ones in use; the other is reloaded all the same. Without a
    /// TLS listener there is nothing to do.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let listeners = [
            ("amqps", &self.tls),
            ("management API", &self.management_https),
        ];
        let mut first_error = None;
        for (what, listener) in listeners {
            let Some((_, server)) = listener else {
                continue;
            };
            match server.reload() {
                Ok(()) => tracing::info!("{what}: TLS certificates reloaded"),
                Err(e) => {
                    tracing::warn!(
                        "{what}: TLS certificates not reloaded (the old ones stay in use): {e}"
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`-style URL for the default vhost.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@{}/%2f", self.addr)
    }

    /// The random identifier this broker advertises in its server properties.
    pub fn identifier(&self) -> &str {
        self.broker.identifier()
    }

    /// The federation's links (federated exchanges), for their status.
    pub fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    /// This broker's member of an HA pair, if `[ha]` is configured.
    pub fn ha(&self) -> Option<&Arc<Ha>> {
        self.ha.as_ref()
    }

    /// The broker core, for broker objects and tests.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Serves a client connection on `stream`, of any transport (an in-memory stream in
    /// tests; TLS later), as if accepted. It is closed with 320 on shutdown like the
    /// others, but not counted against `max_connections`.
    pub fn serve<T: Transport>(&self, stream: T) -> tokio::task::JoinHandle<()> {
        let id = connection::next_connection_id();
        let shutdown = self.shutdown.subscribe();
        tokio::spawn(connection::serve(
            stream,
            None,
            None,
            self.broker.clone(),
            id,
            shutdown,
        ))
    }

    /// Stops accepting and tells every connection to close with 320, without waiting
    /// (a signal handler's first step: it works while every worker is busy).
    pub fn close_all(&self) {
        if let Some(ha) = &self.ha {
            ha.stop();
        }
        let _ = self.shutdown.send(true);
    }

    /// Stops accepting, closes every connection with 320 and waits for them to end.
    pub async fn shutdown(self) {
        self.close_all();
        let _ = self.task.await;
    }
}

/// The TLS handshake (under its own time limit, or until shutdown), then the AMQP
/// connection over it. A failed handshake is logged with its reason and the socket
/// closed.
async fn serve_tls(
    tls: &TlsServer,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    id: crate::broker::owner::ConnectionId,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = tokio::select! {
        r = tls.accept(stream) => r,
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
    };
    let stream = match accepted {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(connection = id, "TLS connection from {peer} closed: {e}");
            return;
        }
    };
    let user = certificate_user(&stream, broker.config().ssl_cert_login_from);
    connection::serve(Joined(stream), Some(peer), user, broker, id, shutdown).await;
}

/// Raises the memory alarm while message data exceeds the watermark: publishing
/// connections then get connection.blocked and are not read until it clears.
async fn watch_memory(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let watermark = broker.config().memory_high_watermark;
    if watermark == 0 {
        // Disabled: the alarm never rises.
        let _ = shutdown.wait_for(|s| *s).await;
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
        let over = broker.memory().used() > watermark;
        if broker.set_alarm(over) {
            if over {
                tracing::warn!(
                    "memory high watermark ({watermark} bytes) exceeded: blocking publishers"
                );
            } else {
                tracing::info!("memory below the high watermark: unblocking publishers");
            }
        }
    }
}

/// Accepts on one listener, plain or TLS (`tls`), until shutdown.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TlsServer>>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.load(Ordering::Acquire) >= broker.config().limits.max_connections {
                    tracing::warn!("connection from {peer} refused: connection limit reached");
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::AcqRel);
                let id = connection::next_connection_id();
                tracing::debug!(connection = id, "accepted {peer}");
                let _ = stream.set_nodelay(true);
                let (broker, shutdown, open) = (broker.clone(), shutdown.clone(), open.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        None => connection::serve(stream, Some(peer), None, broker, id, shutdown).await,
                        // Boxed: a task is as big as its largest state, and the TLS
                        // session's would otherwise make every plain connection's
                        // task that big too (S6's memory per idle connection).
                        Some(tls) => {
                            Box::pin(serve_tls(&tls, stream, peer, broker, id, shutdown)).await
                        }
                    }
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
    }
    drop(listener);
    // Connections saw the shutdown signal and are closing with 320; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

//! The management HTTP API: RabbitMQ's paths, JSON field names, status codes and error
//! bodies, so that rabbitmqadmin, monitoring scripts and the like work unchanged.
//!
//! A feature above the broker core (DESIGN.md §4.1): it holds an `Arc<Broker>` and uses
//! only the core's API: snapshots of vhosts, queues, exchanges, users and connections
//! to answer reads, and `VHost::apply` (the one topology path) for every change, so
//! binding and topology subscribers see changes made here like any other.
//!
//! Definitions import and export in RabbitMQ's format ([`definitions`], routed in
//! `definitions::routes`) and policies, operator policies and runtime parameters in the
//! API's shapes ([`policies`]) are here too; `/api/federation-links` answers `[]` until
//! federation exists.
//!
//! One file per group of endpoints; what they share is [`error`] (RabbitMQ's error
//! bodies), [`auth`] (the caller and the user-tag rules), [`body`] (request bodies, field by field or as a serde type),
//! [`listing`] (paging, sorting, columns), [`format`] (AMQP values as JSON) and
//! [`stats`] (`message_stats` and rates). A new group adds its file and one line in
//! [`router`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::transport::tls::{TlsListener, TlsServer};

pub mod auth;
pub mod body;
pub mod definitions;
pub mod error;
pub mod format;
pub mod listing;
pub mod metrics;
pub mod policies;
pub mod stats;

mod bindings;
mod channels;
mod connections;
mod exchanges;
mod federation_links;
mod ha;
mod https;
mod overview;
mod page;
mod queues;
mod tunnels;
mod users;
mod vhosts;

/// What every handler reaches: the broker and the API's own state.
#[derive(Debug)]
pub struct Api {
    pub broker: Arc<Broker>,
    /// The federation links, for `/api/federation-links`.
    pub federation: Arc<crate::federation::Federation>,
    /// The AMQP listener's address, for `listeners` and connection names.
    pub amqp: SocketAddr,
    /// The management listener's address, for `contexts`.
    pub http: SocketAddr,
    pub rates: stats::Rates,
}

impl Api {
    /// This node's name, in RabbitMQ's `name@host` form.
    pub fn node(&self) -> &'static str {
        NODE
    }
}

/// This node's name, in RabbitMQ's `name@host` form.
pub const NODE: &str = "fedamq@localhost";

/// The largest request body taken (a published message, a user list).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// Every route of the API.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .merge(overview::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(bindings::routes())
        .merge(connections::routes())
        .merge(channels::routes())
        .merge(page::routes())
        .merge(policies::routes())
        .merge(definitions::routes::routes())
        .merge(federation_links::routes())
        .merge(tunnels::routes())
        .merge(ha::routes())
        .fallback(|| async { error::ApiError::not_found() })
        // RabbitMQ's default `management.http_max_body_size`.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(api)
}

/// Binds `addr` and serves the API until `shutdown` turns true; returns the bound
/// address.
pub async fn start(
    broker: Arc<Broker>,
    federation: Arc<crate::federation::Federation>,
    addr: SocketAddr,
    amqp: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let http = listener.local_addr()?;
    serve(listener, broker, federation, amqp, http, shutdown);
    tracing::info!("management API listening on http://{http}");
    Ok(http)
}

/// As [`start`], over HTTPS with `tls`'s certificate (reloaded through `tls`).
pub async fn start_https(
    broker: Arc<Broker>,
    federation: Arc<crate::federation::Federation>,
    addr: SocketAddr,
    amqp: SocketAddr,
    tls: Arc<TlsServer>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let listener = https::Https(TlsListener::start(
        listener,
        tls,
        "management API",
        shutdown.clone(),
    )?);
    let at = listener.0.local_addr();
    serve(listener, broker, federation, amqp, at, shutdown);
    tracing::info!("management API listening on https://{at}");
    Ok(at)
}

/// Serves the API on `listener` (bound to `http`) until `shutdown` turns true.
fn serve<L>(
    listener: L,
    broker: Arc<Broker>,
    federation: Arc<crate::federation::Federation>,
    amqp: SocketAddr,
    http: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let api = Arc::new(Api {
        broker,
        federation,
        amqp,
        http,
        rates: stats::Rates::default(),
    });
    let app = router(api);
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!("management API stopped: {e}");
        }
    });
}

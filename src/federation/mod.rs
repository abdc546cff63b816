//! Federated exchanges: a local exchange receives what is published to the exchange of
//! the same name (or another name) on upstream brokers, as RabbitMQ's federation plugin
//! does, so sites share messages without a cluster.
//!
//! Configuration is RabbitMQ's: `federation-upstream` and `federation-upstream-set`
//! runtime parameters, and a policy with a `federation-upstream` or
//! `federation-upstream-set` key (the set `all`: every upstream of the vhost) makes the
//! exchanges it matches federated. [`Federation`] watches each vhost's topology
//! (exchanges declared and deleted, policies and parameters changed) and keeps one
//! [`link`] running per (federated exchange, upstream), started, restarted with new
//! settings, or stopped (deleting its upstream queue) as they change.
//!
//! A link runs in one of OpenAMQ's modes, the fedamq-only upstream key `fedamq-mode`
//! ([`upstream::Mode`]); without it subscriber mode, RabbitMQ's behaviour: local
//! bindings are mirrored upstream and the upstream's matching messages come down. The
//! other modes also forward local publishes up (`forward`: publisher, locator,
//! fanout, service), through an exchange hook the core calls. Loops are prevented by
//! the node's cluster name ([`Broker::cluster_name`]) and `max-hops`
//! (`crate::broker::routing::upstream`).

mod forward;
mod headers;
mod link;
pub mod status;
pub mod upstream;
pub mod upstream_view;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::broker::Broker;
use crate::broker::routing::ExchangeKind;
use crate::broker::topology::{TopologyEventKind, TopologyNotice};
use crate::broker::vhost::VHost;
use crate::protocol::ShortString;

use link::{Link, LinkSpec};
pub use status::{LinkState, LinkStatus};

/// How often the federation looks for vhosts added at run time.
const VHOST_POLL: Duration = Duration::from_secs(1);

/// (vhost, local exchange, upstream name).
type LinkKey = (String, ShortString, String);

/// The federation of one broker: its links, kept in step with the configuration.
#[derive(Debug)]
pub struct Federation {
    broker: Weak<Broker>,
    links: Mutex<BTreeMap<LinkKey, Link>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Starts following the broker's vhosts (on the current tokio runtime). The
    /// federation stops with the broker (when the last other `Arc<Broker>` goes).
    pub fn start(broker: &Arc<Broker>) -> Arc<Federation> {
        let federation = Arc::new(Federation {
            broker: Arc::downgrade(broker),
            links: Mutex::default(),
        });
        tokio::spawn(watch_vhosts(Arc::downgrade(&federation)));
        federation
    }

    /// Every link's status, sorted by vhost, exchange and upstream.
    pub fn links(&self) -> Vec<LinkStatus> {
        self.lock().values().map(Link::status).collect()
    }

    /// Restarts the link with this id (`rabbitmqctl restart_federation_link`); false
    /// if there is none.
    pub fn restart_link(&self, id: &str) -> bool {
        let key = self
            .lock()
            .iter()
            .find(|(_, l)| l.status().id == id)
            .map(|(k, _)| k.clone());
        let Some(key) = key else { return false };
        let Some(old) = self.lock().remove(&key) else {
            return false;
        };
        let (exchange, upstream) = (old.exchange.clone(), old.upstream.clone());
        old.stop(false);
        if let Some(vhost) = self.broker.upgrade().and_then(|b| b.vhost(&key.0)) {
            self.start_link(&vhost, key, exchange, upstream);
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<LinkKey, Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the vhost's links what its exchanges, policies and parameters ask for.
    fn reconcile(&self, vhost: &Arc<VHost>) {
        let mut wanted = HashMap::new();
        for x in vhost.exchanges() {
            let spec = &x.spec;
            if spec.name.is_empty()
                || spec.internal
                || spec.kind == ExchangeKind::FederationUpstream
            {
                continue;
            }
            for u in upstream::upstreams_for(vhost, &spec.name) {
                let key = (vhost.name.clone(), spec.name.clone(), u.name.clone());
                wanted.insert(key, (spec.clone(), u));
            }
        }
        let mut stale = Vec::new();
        {
            let mut links = self.lock();
            let keys: Vec<LinkKey> = links
                .keys()
                .filter(|k| k.0 == vhost.name)
                .cloned()
                .collect();
            for key in keys {
                let same = match (wanted.get(&key), links.get(&key)) {
                    (Some((spec, u)), Some(l)) => l.exchange == *spec && l.upstream == *u,
                    _ => false,
                };
                if same {
                    wanted.remove(&key);
                } else if let Some(l) = links.remove(&key) {
                    stale.push(l);
                }
            }
        }
        for l in stale {
            l.stop(true);
        }
        for (key, (spec, u)) in wanted {
            self.start_link(vhost, key, spec, u);
        }
    }

    fn start_link(
        &self,
        vhost: &Arc<VHost>,
        key: LinkKey,
        exchange: crate::broker::exchange::ExchangeSpec,
        upstream: upstream::Upstream,
    ) {
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let link = Link::start(LinkSpec {
            cluster_name: broker.cluster_name(),
            id: link_id(&key),
            broker,
            vhost: vhost.clone(),
            exchange,
            upstream,
        });
        tracing::info!(vhost = %key.0, exchange = ?key.1, upstream = %key.2, "federation link started");
        self.lock().insert(key, link);
    }

    /// The vhost is gone: its links stop (their upstream queues stay, as after any
    /// abnormal stop, until `expires`).
    fn forget_vhost(&self, name: &str) {
        let gone: Vec<Link> = {
            let mut links = self.lock();
            let keys: Vec<LinkKey> = links.keys().filter(|k| k.0 == name).cloned().collect();
            keys.into_iter().filter_map(|k| links.remove(&k)).collect()
        };
        for l in gone {
            l.stop(false);
        }
    }
}

/// A short stable id per link, as RabbitMQ gives one (a hash of its key, in hex).
fn link_id(key: &LinkKey) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// Follows the broker's vhosts: one watcher per vhost.
async fn watch_vhosts(federation: Weak<Federation>) {
    let mut watched: HashSet<String> = HashSet::new();
    loop {
        let Some(f) = federation.upgrade() else {
            return;
        };
        let Some(broker) = f.broker.upgrade() else {
            return;
        };
        let names: HashSet<String> = broker.vhost_names().into_iter().collect();
        for name in names.difference(&watched) {
            if let Some(vhost) = broker.vhost(name) {
                tokio::spawn(watch_vhost(federation.clone(), vhost));
            }
        }
        watched = names;
        drop((f, broker));
        tokio::time::sleep(VHOST_POLL).await;
    }
}

/// Reconciles one vhost's links on every change that can change them.
async fn watch_vhost(federation: Weak<Federation>, vhost: Arc<VHost>) {
    let (_, _, mut sub) = vhost.subscribe_topology(crate::broker::topology::DEFAULT_CAPACITY);
    let name = vhost.name.clone();
    let vhost = Arc::downgrade(&vhost);
    let reconcile = |federation: &Weak<Federation>| {
        if let (Some(f), Some(v)) = (federation.upgrade(), vhost.upgrade()) {
            f.reconcile(&v);
        }
    };
    reconcile(&federation);
    while let Some(notice) = sub.recv().await {
        let relevant = match &notice {
            TopologyNotice::Resync { .. } => true,
            TopologyNotice::Event(e) => matches!(
                &e.kind,
                TopologyEventKind::ExchangeDeclared(_)
                    | TopologyEventKind::ExchangeDeleted(_)
                    | TopologyEventKind::PolicyChanged { .. }
                    | TopologyEventKind::ParameterChanged { .. }
            ),
        };
        if relevant {
            reconcile(&federation);
        }
        if federation.strong_count() == 0 {
            return;
        }
    }
    if let Some(f) = federation.upgrade() {
        f.forget_vhost(&name);
    }
}

//! An HA pair of in-process brokers (tests/ha.rs, tests/ha_wiring.rs): each member
//! reaches the other through a fault proxy, so a test can split them and restart one on
//! a new port, with a short failover timeout. The process-level pair is `ha_pair.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedamq::BrokerHandle;
use fedamq::arbiter::ArbiterConfig;
use fedamq::auth::password::PasswordHash;
use fedamq::config::{Config, HaConfig, HaRole, PermissionConfig, UserConfig};
use fedamq::ha::HaStatus;
use lapin::{Connection, ConnectionProperties};

use super::broker;
use super::fault_proxy::FaultProxy;

/// The members' failover timeout.
pub const TIMEOUT: Duration = Duration::from_millis(400);
/// How long a wait may take before the test calls it a hang; no assertion is about time.
pub const PATIENCE: Duration = Duration::from_secs(60);

fn user(name: &str, tags: &[&str]) -> UserConfig {
    UserConfig {
        name: name.into(),
        password_hash: PasswordHash::new(name),
        password: Some(name.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

/// A pair member: `guest` (administrator), `peer` (peering) and `app` (no tags), all
/// with full access to "/"; the peer reached through `to_peer`.
fn member(
    role: HaRole,
    to_peer: &FaultProxy,
    epoch_file: &Path,
    arbiter: Option<&ArbiterConfig>,
) -> Config {
    let mut c = Config {
        users: vec![
            user("guest", &["administrator"]),
            user("peer", &["peering"]),
            user("app", &[]),
        ],
        permissions: ["guest", "peer", "app"]
            .iter()
            .map(|u| PermissionConfig {
                user: u.to_string(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            })
            .collect(),
        ..Config::default()
    };
    let mut ha = HaConfig::new(role, to_peer.url("peer", "peer", "/"));
    ha.timeout = TIMEOUT;
    ha.epoch_file = epoch_file.to_path_buf();
    ha.arbiter = arbiter.cloned();
    c.ha = Some(ha);
    c
}

/// Where nothing listens: a proxy's upstream before its broker is up.
fn nowhere() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Two proxies (one towards each member), an epoch file per member, and the arbiter
/// both use, if any.
pub struct Pair {
    pub to_primary: FaultProxy,
    pub to_backup: FaultProxy,
    dir: tempfile::TempDir,
    arbiter: Option<ArbiterConfig>,
}

impl Pair {
    pub async fn new(arbiter: Option<ArbiterConfig>) -> Pair {
        Pair {
            to_primary: FaultProxy::start(nowhere()).await,
            to_backup: FaultProxy::start(nowhere()).await,
            dir: tempfile::tempdir().unwrap(),
            arbiter,
        }
    }

    pub fn epoch_file(&self, role: HaRole) -> PathBuf {
        self.dir.path().join(role.name())
    }

    /// Starts the member `role` (again, after a stop: same epoch file, new port).
    pub async fn start(&self, role: HaRole) -> BrokerHandle {
        let (to_peer, to_me) = match role {
            HaRole::Primary => (&self.to_backup, &self.to_primary),
            HaRole::Backup => (&self.to_primary, &self.to_backup),
        };
        let config = member(role, to_peer, &self.epoch_file(role), self.arbiter.as_ref());
        let b = broker::start_with(config).await;
        to_me.set_upstream(b.local_addr());
        to_me.set_refuse(false);
        b
    }

    /// Cuts the link between the members both ways, and keeps it down.
    pub fn split(&self) {
        for p in [&self.to_primary, &self.to_backup] {
            p.set_refuse(true);
            p.cut();
        }
    }

    pub fn heal(&self) {
        for p in [&self.to_primary, &self.to_backup] {
            p.set_refuse(false);
        }
    }
}

pub fn status(b: &BrokerHandle) -> HaStatus {
    b.ha().expect("an HA member").status()
}

/// Waits (at most PATIENCE) until `what` holds; else panics with `why`.
pub async fn eventually(what: impl Fn() -> bool, why: impl Fn() -> String) {
    let ok = tokio::time::timeout(PATIENCE, async {
        while !what() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if ok.is_err() {
        panic!("never happened: {}", why());
    }
}

pub async fn wait_state(b: &BrokerHandle, state: &str) -> HaStatus {
    eventually(
        || status(b).state == state,
        || format!("never {state}; last {:?}", status(b)),
    )
    .await;
    status(b)
}

/// Waits until `b` has heard its peer in `state`.
pub async fn wait_peer(b: &BrokerHandle, state: &str) {
    eventually(
        || status(b).peer.is_some_and(|p| p.state == state),
        || format!("peer never {state}; last {:?}", status(b)),
    )
    .await;
}

pub async fn connect(b: &BrokerHandle, who: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(&b.url(who, who), ConnectionProperties::default()).await
}

/// What `fedamqctl ha status` prints against `b`'s management API (it must succeed).
pub async fn fedamqctl_ha_status(b: &BrokerHandle) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedamqctl"))
        .env_remove("FEDAMQCTL_HOST")
        .env_remove("FEDAMQCTL_USER")
        .env_remove("FEDAMQCTL_PASSWORD")
        .env(
            "FEDAMQCTL_PORT",
            b.management_addr().unwrap().port().to_string(),
        )
        .args(["ha", "status"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

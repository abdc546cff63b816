//! A private etcd (Debian's `etcd-server`, `/usr/bin/etcd`) for the arbiter tests: one
//! member on free 127.0.0.1 ports with a temporary data directory, killed (by its pid)
//! when dropped.
//!
//! Without etcd installed, [`EtcdServer::start`] prints a skip line and returns `None`,
//! unless `FEDAMQ_TEST_REQUIRE_ETCD` is set (as in CI): then it panics, so the tests fail.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub const ETCD: &str = "/usr/bin/etcd";

pub struct EtcdServer {
    child: Option<Child>,
    client: SocketAddr,
    dir: tempfile::TempDir,
}

/// A port free now: bound on 127.0.0.1 port 0, then released for etcd to take.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().unwrap().port()
}

impl EtcdServer {
    /// Starts etcd and waits until it answers; `None` (after a skip line naming `test`)
    /// when etcd is not installed and not required.
    pub async fn start(test: &str) -> Option<EtcdServer> {
        if !Path::new(ETCD).exists() {
            assert!(
                std::env::var_os("FEDAMQ_TEST_REQUIRE_ETCD").is_none(),
                "FEDAMQ_TEST_REQUIRE_ETCD is set (as in CI) but {ETCD} is missing"
            );
            eprintln!("skipping {test}: {ETCD} not found (Debian's `etcd-server` package)");
            return None;
        }
        // Another process may take a released port before etcd does: try again then.
        for _ in 0..3 {
            if let Some(server) = Self::try_start().await {
                return Some(server);
            }
        }
        panic!("etcd did not start (three tries)");
    }

    async fn try_start() -> Option<EtcdServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd runs");
        let mut server = EtcdServer {
            child: Some(child),
            client: ([127, 0, 0, 1], client_port).into(),
            dir,
        };
        let http = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(|c| c.try_wait()) {
                eprintln!("etcd exited ({status}):\n{}", server.log());
                server.child = None;
                return None;
            }
            let ready = http
                .post(format!("{client}/v3/kv/range"))
                .body(r#"{"key":"AA=="}"#)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Some(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("etcd did not answer within 20 s:\n{}", server.log());
    }

    /// `127.0.0.1:port` of the client listener.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
    }

    /// The endpoint, as the arbiter's settings take it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// What etcd wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (SIGKILL, by pid) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

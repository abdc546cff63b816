//! An HA pair of real `fedamq` processes for fault tests (issue 13), and a checker in
//! the spirit of Jepsen's `total-queue`.
//!
//! Each member is the binary started from a config file of its own (AMQP and management
//! on free ports read back from its output, Prometheus off, an epoch file in the pair's
//! temporary directory). Fault proxies sit between the members (each member's `peer`
//! URI names a proxy towards the other, so a test can split them) and between the
//! clients and each member (so clients keep one address across restarts, and a test can
//! cut them off). A member can be killed (`kill -9`), paused (SIGSTOP/SIGCONT),
//! restarted, and run under libfaketime with a wall clock the test moves. Dropping the
//! pair kills both processes.
//! A sampler polls both members' `/api/ha` to find two actives or none; the checker
//! that drives clients through the pair is `ha_checker.rs`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::fault_proxy::FaultProxy;
use super::ha_checker::QUEUE;
use super::management::Http;

/// How long a member may take to print its addresses after being started.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// Bounds one management request (a paused member never answers).
const HTTP_PATIENCE: Duration = Duration::from_millis(1500);

/// Which member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Primary => Role::Backup,
            Role::Backup => Role::Primary,
        }
    }
}

/// One member's `/api/ha`, the fields the tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaView {
    pub state: String,
    pub epoch: u64,
    pub transitions: u64,
    pub refused_clients: u64,
    pub reason: String,
    pub peer_state: Option<String>,
}

impl HaView {
    fn from_json(v: &Value) -> Option<HaView> {
        Some(HaView {
            state: v.get("state")?.as_str()?.to_string(),
            epoch: v.get("epoch")?.as_u64()?,
            transitions: v.get("transitions")?.as_u64()?,
            refused_clients: v.get("refused_clients")?.as_u64()?,
            reason: v.get("reason")?.as_str()?.to_string(),
            peer_state: v
                .get("peer")
                .and_then(|p| p.get("state"))
                .and_then(|s| s.as_str())
                .map(str::to_string),
        })
    }
}

/// `GET /api/ha` within `patience`; None on any failure (a member killed or paused
/// between the caller's look and the request is no error here).
async fn ha_view(http: &Http, patience: Duration) -> Option<HaView> {
    let client = reqwest::Client::builder().timeout(patience).build().ok()?;
    let (user, password) = http.user.clone()?;
    let reply = client
        .get(format!("{}/api/ha", http.base))
        .basic_auth(user, Some(password))
        .send()
        .await
        .ok()?;
    if !reply.status().is_success() {
        return None;
    }
    HaView::from_json(&reply.json::<Value>().await.ok()?)
}

/// A member's process as it runs now.
struct Running {
    child: Child,
    amqp: SocketAddr,
    http: Http,
}

/// One member: its config, its process (when running) and everything it printed.
pub struct Member {
    pub role: Role,
    config: PathBuf,
    /// The wall-clock offset file libfaketime reads, when run under it.
    faketime: Option<PathBuf>,
    running: Option<Running>,
    log: Arc<Mutex<Vec<String>>>,
    paused: bool,
}

impl Member {
    /// Starts the process and waits for its addresses.
    fn start(&mut self) -> SocketAddr {
        assert!(
            self.running.is_none(),
            "{} already running",
            self.role.name()
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedamq"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn,fedamq::ha=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(file) = &self.faketime {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                // Re-read the offset at most once a second, so a jump shows while running.
                .env("FAKETIME_CACHE_DURATION", "1")
                // A wall-clock step (NTP, `date -s`) moves CLOCK_REALTIME only.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let mut child = cmd.spawn().expect("fedamq starts");
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = self.log.clone();
            let tx = tx.clone();
            let role = self.role.name();
            // Keeps the pipe read for the life of the process (a full pipe would block it).
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("FEDAMQ_TEST_HA_LOG").is_some() {
                        eprintln!("[{role}] {line}");
                    }
                    let _ = tx.send(line.clone());
                    log.lock().unwrap().push(line);
                }
            });
        }
        drop(tx);
        let deadline = std::time::Instant::now() + START_PATIENCE;
        let (mut amqp, mut http) = (None, None);
        while amqp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not print its addresses; output:\n{}",
                        self.role.name(),
                        self.log.lock().unwrap().join("\n")
                    );
                }
            };
            if let Some(a) = line.strip_prefix("fedamq listening on ") {
                amqp = Some(a.trim().parse::<SocketAddr>().expect("an address"));
            } else if let Some(a) = line.strip_prefix("management API on http://") {
                http = Some(a.trim().to_string());
            }
        }
        let amqp = amqp.unwrap();
        self.running = Some(Running {
            child,
            amqp,
            http: Http::new(&format!("http://{}", http.unwrap()), "guest", "guest"),
        });
        self.paused = false;
        amqp
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("running");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The member's own AMQP address (not through a proxy).
    pub fn amqp_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.amqp)
    }

    /// `kill -9`, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut r) = self.running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        self.paused = false;
    }

    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    /// The management API as guest (administrator).
    pub fn http(&self) -> Option<Http> {
        self.running.as_ref().map(|r| r.http.clone())
    }

    /// `/api/ha` now; None when stopped, paused, or not answering in time.
    pub async fn ha(&self) -> Option<HaView> {
        if self.paused {
            return None;
        }
        ha_view(&self.http()?, HTTP_PATIENCE).await
    }

    /// Everything the member printed (all its runs).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Moves this member's wall clock by `offset` (libfaketime syntax: "+2h", "-30m"),
    /// when it runs under libfaketime.
    pub fn set_wall_clock(&self, offset: &str) {
        let file = self.faketime.as_ref().expect("started under faketime");
        std::fs::write(file, format!("{offset}\n")).unwrap();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// libfaketime's preload library (Debian's `libfaketime` package, pulled in by
/// `faketime`).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether libfaketime is here; when it is not, a test that needs it skips, unless
/// FEDAMQ_TEST_REQUIRE_FAKETIME is set (CI), where it fails.
pub fn faketime_available() -> bool {
    let here = Path::new(FAKETIME_LIB).exists();
    if !here && std::env::var_os("FEDAMQ_TEST_REQUIRE_FAKETIME").is_some() {
        panic!("FEDAMQ_TEST_REQUIRE_FAKETIME is set but {FAKETIME_LIB} is missing");
    }
    here
}

/// How a pair is set up.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// The `[ha] timeout`.
    pub timeout: Duration,
    /// Members run under libfaketime (wall clock the test moves).
    pub faketime: Vec<Role>,
    /// An etcd endpoint for `[ha.arbiter]` (None: Binary Star's rules alone).
    pub arbiter: Option<String>,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            timeout: Duration::from_secs(1),
            faketime: Vec::new(),
            arbiter: None,
        }
    }
}

/// Two members, the proxies between them and the proxies clients go through.
pub struct HaPair {
    pub primary: Member,
    pub backup: Member,
    /// The primary's `peer` URI points here; forwards to the backup.
    pub link_to_backup: FaultProxy,
    /// The backup's `peer` URI points here; forwards to the primary.
    pub link_to_primary: FaultProxy,
    /// Where clients reach the primary.
    pub clients_to_primary: FaultProxy,
    /// Where clients reach the backup.
    pub clients_to_backup: FaultProxy,
    pub timeout: Duration,
    /// Each member's management API while it runs, for the sampler.
    endpoints: Arc<Mutex<[Option<Http>; 2]>>,
    dir: tempfile::TempDir,
}

/// Where nothing listens (a proxy's upstream before its member is up).
fn nowhere() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config_text(role: Role, options: &PairOptions, peer: &FaultProxy, epoch: &Path) -> String {
    let mut t = format!(
        r#"bind = "127.0.0.1"
port = 0
heartbeat = 5

[management]
port = 0

[prometheus]
port = "off"

[ha]
role = "{role}"
peer = "{peer}"
timeout = "{timeout}ms"
epoch_file = "{epoch}"
"#,
        role = role.name(),
        peer = peer.url("peer", "peer-secret", "/"),
        timeout = options.timeout.as_millis(),
        epoch = epoch.display(),
    );
    if let Some(endpoint) = &options.arbiter {
        t.push_str(&format!(
            "\n[ha.arbiter]\nendpoints = [\"{endpoint}\"]\nttl = 2\n"
        ));
    }
    for (name, tags) in [
        ("guest", "[\"administrator\"]"),
        ("peer", "[\"peering\"]"),
        ("app", "[]"),
    ] {
        let password = match name {
            "peer" => "peer-secret",
            other => other,
        };
        t.push_str(&format!(
            "\n[[user]]\nname = \"{name}\"\npassword = \"{password}\"\ntags = {tags}\n\
             \n[[permission]]\nuser = \"{name}\"\nvhost = \"/\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n"
        ));
    }
    t
}

impl HaPair {
    /// Writes both configs and starts the proxies; no member runs yet.
    pub async fn new(options: PairOptions) -> HaPair {
        let dir = tempfile::tempdir().unwrap();
        let link_to_backup = FaultProxy::start(nowhere()).await;
        let link_to_primary = FaultProxy::start(nowhere()).await;
        let clients_to_primary = FaultProxy::start(nowhere()).await;
        let clients_to_backup = FaultProxy::start(nowhere()).await;
        let member = |role: Role, to_peer: &FaultProxy| {
            let config = dir.path().join(format!("{}.toml", role.name()));
            let epoch = dir.path().join(format!("{}.epoch", role.name()));
            std::fs::write(&config, config_text(role, &options, to_peer, &epoch)).unwrap();
            let faketime = options.faketime.contains(&role).then(|| {
                let f = dir.path().join(format!("{}.faketime", role.name()));
                std::fs::write(&f, "+0\n").unwrap();
                f
            });
            Member {
                role,
                config,
                faketime,
                running: None,
                log: Arc::default(),
                paused: false,
            }
        };
        HaPair {
            primary: member(Role::Primary, &link_to_backup),
            backup: member(Role::Backup, &link_to_primary),
            link_to_backup,
            link_to_primary,
            clients_to_primary,
            clients_to_backup,
            timeout: options.timeout,
            endpoints: Arc::default(),
            dir,
        }
    }

    /// A pair started primary first, waited until the primary is active and the backup
    /// passive.
    pub async fn started(options: PairOptions) -> HaPair {
        let mut pair = HaPair::new(options).await;
        pair.start(Role::Primary);
        pair.start(Role::Backup);
        pair.wait_states(Some("active"), Some("passive"), Duration::from_secs(60))
            .await;
        pair
    }

    pub fn member(&self, role: Role) -> &Member {
        match role {
            Role::Primary => &self.primary,
            Role::Backup => &self.backup,
        }
    }

    pub fn member_mut(&mut self, role: Role) -> &mut Member {
        match role {
            Role::Primary => &mut self.primary,
            Role::Backup => &mut self.backup,
        }
    }

    /// The proxies that reach `role`: from its peer, and from clients.
    fn proxies_to(&self, role: Role) -> [&FaultProxy; 2] {
        match role {
            Role::Primary => [&self.link_to_primary, &self.clients_to_primary],
            Role::Backup => [&self.link_to_backup, &self.clients_to_backup],
        }
    }

    /// Starts (or restarts) a member and points its proxies at it.
    pub fn start(&mut self, role: Role) {
        let addr = self.member_mut(role).start();
        for p in self.proxies_to(role) {
            p.set_upstream(addr);
        }
        self.endpoints.lock().unwrap()[role as usize] = self.member(role).http();
    }

    /// `kill -9` of a member.
    pub fn kill9(&mut self, role: Role) {
        self.member_mut(role).kill9();
        self.endpoints.lock().unwrap()[role as usize] = None;
    }

    pub fn restart(&mut self, role: Role) {
        self.kill9(role);
        self.start(role);
    }

    /// Cuts the link between the members and keeps it down (clients still reach both).
    pub fn split(&self) {
        for p in [&self.link_to_primary, &self.link_to_backup] {
            p.set_refuse(true);
            p.cut();
        }
    }

    pub fn heal(&self) {
        for p in [&self.link_to_primary, &self.link_to_backup] {
            p.set_refuse(false);
        }
    }

    /// `amqp://user:password@proxy/%2f` for clients of `role`.
    pub fn client_url(&self, role: Role, user: &str, password: &str) -> String {
        match role {
            Role::Primary => self.clients_to_primary.url(user, password, "/"),
            Role::Backup => self.clients_to_backup.url(user, password, "/"),
        }
    }

    /// Both members' `/api/ha` now.
    pub async fn states(&self) -> (Option<HaView>, Option<HaView>) {
        tokio::join!(self.primary.ha(), self.backup.ha())
    }

    /// Waits until each member's state is the one given (None: any), or panics with
    /// both states and logs after `patience`.
    pub async fn wait_states(
        &self,
        primary: Option<&str>,
        backup: Option<&str>,
        patience: Duration,
    ) -> (Option<HaView>, Option<HaView>) {
        let deadline = Instant::now() + patience;
        loop {
            let (p, b) = self.states().await;
            let ok = |want: Option<&str>, got: &Option<HaView>| {
                want.is_none_or(|w| got.as_ref().is_some_and(|g| g.state == w))
            };
            if ok(primary, &p) && ok(backup, &b) {
                return (p, b);
            }
            if Instant::now() > deadline {
                panic!(
                    "states never became primary {primary:?} backup {backup:?}: last {p:?} {b:?}\n\
                     --- primary log\n{}\n--- backup log\n{}",
                    self.primary.log(),
                    self.backup.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages in the checker's queue on `role` (None: no answer, or no such queue).
    pub async fn queued(&self, role: Role) -> Option<u64> {
        let http = self.member(role).http()?;
        let reply = tokio::time::timeout(
            HTTP_PATIENCE,
            http.call("GET", &format!("/api/queues/%2f/{QUEUE}"), None),
        )
        .await
        .ok()?;
        reply.body.get("messages")?.as_u64()
    }

    /// Waits until `role` holds no message in the checker's queue, or panics.
    pub async fn wait_queue_empty(&self, role: Role, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let n = self.queued(role).await;
            if n == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still holds {n:?} messages\n{}",
                role.name(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- primary log\n{}\n--- backup log\n{}",
            self.primary.log(),
            self.backup.log()
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// What a state sampler saw.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub count: usize,
    /// Samples in which both members said they were active.
    pub two_actives: usize,
    /// The longest run of samples with no member answering as active.
    pub longest_without_active: Duration,
    /// Each sample: when it was asked for (since the sampler started), primary's and
    /// backup's state.
    pub trace: Vec<(Duration, Option<String>, Option<String>)>,
}

impl Samples {
    /// Samples in which a member answered with another state than expected (a member
    /// that did not answer in time is no violation), and how many samples had both
    /// answering.
    pub fn unlike(&self, primary: &str, backup: &str) -> (Vec<String>, usize) {
        let mut bad = Vec::new();
        let mut answered = 0;
        for (t, p, b) in &self.trace {
            if p.is_some() && b.is_some() {
                answered += 1;
            }
            let off = |got: &Option<String>, want: &str| got.as_deref().is_some_and(|g| g != want);
            if off(p, primary) || off(b, backup) {
                bad.push(format!("{t:?}: primary {p:?}, backup {b:?}"));
            }
        }
        (bad, answered)
    }

    /// Panics unless every answer was `primary`/`backup` and at least half the samples
    /// had both answering.
    pub fn assert_all(&self, primary: &str, backup: &str) {
        let (bad, answered) = self.unlike(primary, backup);
        assert!(
            bad.is_empty(),
            "expected primary {primary}, backup {backup}: {bad:?}"
        );
        assert!(
            answered * 2 >= self.count && self.count > 0,
            "only {answered} of {} samples answered",
            self.count
        );
    }

    /// The samples from `from` (time since start) on.
    pub fn two_actives_after(&self, from: Duration) -> usize {
        self.trace
            .iter()
            .filter(|(t, p, b)| {
                *t >= from && p.as_deref() == Some("active") && b.as_deref() == Some("active")
            })
            .count()
    }
}

/// Polls both members' `/api/ha` every 50 ms until stopped. A member that does not
/// answer (killed, paused) counts as not active.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
    started: Instant,
}

impl Sampler {
    /// Follows members restarted while it runs.
    pub fn start(pair: &HaPair) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let urls = pair.endpoints.clone();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut out = Samples::default();
            let mut without_since: Option<Instant> = None;
            while !s.load(Ordering::Relaxed) {
                // A sample is stamped with when it was asked for: one stamped after an
                // event the test saw holds answers given after it.
                let asked = Instant::now();
                let [p, b] = urls.lock().unwrap().clone();
                let get = |h: Option<Http>| async move {
                    ha_view(&h?, Duration::from_secs(1)).await.map(|v| v.state)
                };
                let (p, b) = tokio::join!(get(p), get(b));
                let now = Instant::now();
                let active = |x: &Option<String>| x.as_deref() == Some("active");
                out.count += 1;
                if active(&p) && active(&b) {
                    out.two_actives += 1;
                }
                if active(&p) || active(&b) {
                    without_since = None;
                } else {
                    let since = *without_since.get_or_insert(now);
                    out.longest_without_active = out.longest_without_active.max(now - since);
                }
                out.trace.push((asked - started, p, b));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            out
        });
        Sampler {
            stop,
            task,
            started,
        }
    }

    /// Time since the sampler started (to mark events in its trace).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

//! The two brokers the benchmarks run, started and measured the same way: a release
//! fedamq and a RabbitMQ from Debian's packages, each on its own free port.
//!
//! RabbitMQ gets its own node name, data, log and Erlang distribution ports (and its own
//! epmd port) in a temporary directory, so it never touches another RabbitMQ on the
//! host. Each is stopped by the process started here. CPU is utime+stime of the broker
//! process (`beam.smp` for RabbitMQ) from `/proc/<pid>/stat`; memory is its VmRSS/VmHWM.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Processes and /proc

pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A free port in `from..to` (RabbitMQ's CLI tools use the distribution port + 10000, so
/// that one must stay well below 65535).
pub(crate) fn free_port_in(from: u16, to: u16) -> Result<u16, String> {
    let span = u32::from(to - from);
    let start = std::process::id() % span;
    for i in 0..span {
        let port = from + ((start + i) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free port in {from}..{to}"))
}

pub(crate) fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm*` line of /proc/<pid>/status, in KiB.
pub(crate) fn vm_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Resets VmHWM to the current RSS (Linux: "5" into clear_refs). False if not allowed.
pub(crate) fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples VmRSS every 50 ms in a thread, keeping the largest: a peak for kernels where
/// VmHWM cannot be reset.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(vm_kib(pid, "VmRSS").unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = vm_kib(pid, "VmRSS") {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    pub(crate) fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Sends SIGTERM to one process (by its id) through kill(1).
pub(crate) fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

// ---------------------------------------------------------------------------------------
// The brokers

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Which {
    Fedamq,
    Rabbit,
}

pub(crate) struct Broker {
    pub(crate) which: Which,
    /// The process started here (for RabbitMQ, its start script).
    pub(crate) child: Child,
    /// The process to measure: fedamq itself, or RabbitMQ's beam.smp.
    pub(crate) pid: u32,
    pub(crate) port: u16,
    /// From the AMQP server properties, filled in by the first run.
    pub(crate) version: String,
    /// When the run gave the broker an amqps listener: the `amqps://` URI to use
    /// instead of the plain port (`bench_compare/tls.rs`).
    pub(crate) amqps_uri: Option<String>,
    /// Over amqps: the TLS version and cipher suite negotiated, from the first run.
    pub(crate) tls: String,
    pub(crate) rabbit: Option<RabbitEnv>,
}

pub(crate) struct RabbitEnv {
    pub(crate) node: String,
    pub(crate) dir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) ctl: PathBuf,
    pub(crate) epmd_port: u16,
}

impl Broker {
    /// The URI the load generator connects to: the amqps listener's when there is one.
    pub(crate) fn uri(&self) -> String {
        match &self.amqps_uri {
            Some(uri) => uri.clone(),
            None => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self.which {
            Which::Fedamq => "fedamq",
            Which::Rabbit => "RabbitMQ",
        }
    }

    /// `extra` is appended to the command line (a memory limit, say).
    pub(crate) fn start_fedamq(bin: &Path, extra: &[&str]) -> Result<Broker, String> {
        let port = free_port()?;
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--management-port",
                "0",
                "--prometheus-port",
                "0",
                "--log",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let mut b = Broker {
            which: Which::Fedamq,
            child,
            pid,
            port,
            version: String::new(),
            amqps_uri: None,
            tls: String::new(),
            rabbit: None,
        };
        if !wait_for_port(port, Duration::from_secs(20)) {
            b.stop();
            return Err("fedamq did not start listening".into());
        }
        Ok(b)
    }

    /// `config` is the node's whole `rabbitmq.conf` (in the new-style format).
    pub(crate) fn start_rabbit(config: &str) -> Result<Broker, String> {
        Broker::start_rabbit_with_plugins(config, &[])
    }

    /// As [`Broker::start_rabbit`], with these plugins enabled (their dependencies
    /// follow).
    pub(crate) fn start_rabbit_with_plugins(
        config: &str,
        plugins: &[&str],
    ) -> Result<Broker, String> {
        let server = find_rabbit_server().ok_or("rabbitmq-server not found after install")?;
        let bin_dir = server.parent().map(Path::to_path_buf).unwrap_or_default();
        let ctl = bin_dir.join("rabbitmqctl");
        let port = free_port()?;
        let dist_port = free_port_in(21_000, 29_000)?;
        let epmd_port = free_port_in(29_000, 30_000)?;
        let node = format!("fedamq-bench-{}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("fedamq-bench-rabbit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("log")).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Only the plugins asked for (the host's enabled_plugins may start management on
        // a fixed port), and our own config file so the host's rabbitmq.conf does not apply.
        std::fs::write(
            dir.join("enabled_plugins"),
            format!("[{}].\n", plugins.join(",")),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("rabbitmq.conf"), config).map_err(|e| e.to_string())?;
        let d = |p: &str| dir.join(p).display().to_string();
        let env: Vec<(String, String)> = vec![
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", d("mnesia")),
            ("RABBITMQ_LOG_BASE", d("log")),
            ("RABBITMQ_PID_FILE", d("rabbit.pid")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", d("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", d("rabbitmq-env.conf")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let log = std::fs::File::create(dir.join("console.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        // The open-files limit: RabbitMQ broke at 1,024 under load here.
        let script = format!("ulimit -n \"$(ulimit -Hn)\"; exec '{}'", server.display());
        let child = Command::new("sh")
            .args(["-c", &script])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start rabbitmq-server: {e}"))?;
        let child_pid = child.id();
        let mut b = Broker {
            which: Which::Rabbit,
            child,
            pid: child_pid,
            port,
            version: String::new(),
            amqps_uri: None,
            tls: String::new(),
            rabbit: Some(RabbitEnv {
                node: node.clone(),
                dir: dir.clone(),
                env,
                ctl,
                epmd_port,
            }),
        };
        // await_startup fails at once while the node has not registered with epmd yet,
        // so it is retried until the node is up or its start script has exited.
        let deadline = Instant::now() + Duration::from_secs(180);
        let awaited = loop {
            let r = b.rabbitmqctl(&["await_startup", "--timeout", "120"]);
            let exited = matches!(b.child.try_wait(), Ok(Some(_)));
            if r.is_ok() || exited || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        if let Err(e) = awaited {
            let console = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
            let tail: Vec<&str> = console.lines().rev().take(20).collect();
            b.stop();
            return Err(format!(
                "RabbitMQ did not start: {e}\nlast lines of its console log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        // The node writes its OS pid (beam.smp) to the pid file.
        let pid = std::fs::read_to_string(dir.join("rabbit.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim() == "beam.smp")
                    .unwrap_or(false)
            })
            .or_else(|| find_child_named(child_pid, "beam.smp"));
        match pid {
            Some(pid) => b.pid = pid,
            None => {
                b.stop();
                return Err("RabbitMQ started but its beam.smp process was not found".into());
            }
        }
        if !wait_for_port(port, Duration::from_secs(30)) {
            b.stop();
            return Err(format!("RabbitMQ is not listening on {port}"));
        }
        Ok(b)
    }

    pub(crate) fn rabbitmqctl(&self, args: &[&str]) -> Result<String, String> {
        let r = self.rabbit.as_ref().ok_or("not RabbitMQ")?;
        let out = Command::new(&r.ctl)
            .arg("-n")
            .arg(&r.node)
            .args(args)
            .envs(r.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", r.ctl.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("rabbitmqctl {args:?}: {}: {text}", out.status))
        }
    }

    /// Stops the broker this run started, by its pid (and RabbitMQ's epmd, by its port).
    pub(crate) fn stop(&mut self) {
        match self.which {
            Which::Fedamq => {
                terminate(self.child.id());
                if !wait_exit(&mut self.child, Duration::from_secs(10)) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
            Which::Rabbit => {
                let _ = self.rabbitmqctl(&["stop"]);
                if !wait_exit(&mut self.child, Duration::from_secs(30)) {
                    // The start script runs the VM as its child: stop that one first.
                    let beam = if self.pid != self.child.id() {
                        Some(self.pid)
                    } else {
                        find_child_named(self.child.id(), "beam.smp")
                    };
                    if let Some(beam) = beam {
                        terminate(beam);
                    }
                    if !wait_exit(&mut self.child, Duration::from_secs(10)) {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                    }
                }
                if let Some(r) = &self.rabbit {
                    // The epmd RabbitMQ started listens on our own port: stop that one.
                    let _ = Command::new("epmd")
                        .args(["-port", &r.epmd_port.to_string(), "-kill"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    let _ = std::fs::remove_dir_all(&r.dir);
                }
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

pub(crate) fn find_rabbit_server() -> Option<PathBuf> {
    // The scripts under /usr/sbin switch to the rabbitmq user when run as root (and drop
    // the environment); the ones in /usr/lib/rabbitmq/bin run as whoever calls them.
    let lib = PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if lib.exists() {
        return Some(lib);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v rabbitmq-server"])
        .output()
        .ok()?;
    let p = String::from_utf8(out.stdout).ok()?;
    let p = p.trim();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// A descendant of `pid` whose command name is `name`.
pub(crate) fn find_child_named(pid: u32, name: &str) -> Option<u32> {
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim() == name {
                return Some(c);
            }
            frontier.push(c);
        }
    }
    None
}

pub(crate) fn ensure_rabbitmq() -> Result<(), String> {
    if find_rabbit_server().is_some() {
        return Ok(());
    }
    eprintln!("bench-compare: rabbitmq-server not found; installing it from Debian's packages");
    let sudo = if Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
    {
        ""
    } else {
        "sudo "
    };
    let status = Command::new("sh")
        .args([
            "-c",
            &format!("{sudo}apt-get update && {sudo}apt-get install -y rabbitmq-server"),
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !status.success() || find_rabbit_server().is_none() {
        return Err("installing rabbitmq-server failed".into());
    }
    Ok(())
}

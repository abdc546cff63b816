//! bench-compare's TLS scenarios, S1t and S2t: S1 and S2 again, each broker serving
//! them on an amqps listener and fedamq-perf connecting to `amqps://`, so that the report
//! can set each figure over TLS beside the same figure without it (the "TLS cost").
//!
//! The certificates are made for the run with `openssl` (as `tests/rabbitmq/start.sh`
//! makes its node's) in a temporary directory: a CA and an RSA 2048 server certificate
//! for 127.0.0.1. fedamq-perf checks the server's certificate and name against the CA
//! (`verify_peer`, its default); neither broker asks for a client certificate. Both
//! brokers are held to TLS 1.3, so that both run the same protocol; the version and
//! cipher suite negotiated are reported, as fedamq-perf saw them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Figures, Metric, Options, median, strings};
use crate::brokers::{Broker, Which, free_port, wait_for_port};

/// Each TLS scenario and the plain scenario it repeats over TLS.
const SCENARIOS: [(&str, &str); 2] = [("S1t", "S1"), ("S2t", "S2")];

/// The TLS version both brokers are limited to (RabbitMQ's and fedamq's name).
const VERSION: &str = "tlsv1.3";

/// The plain scenario `scenario` repeats over TLS; `None` for a plain one.
pub(super) fn plain_of(scenario: &str) -> Option<&'static str> {
    SCENARIOS
        .iter()
        .find(|(t, _)| *t == scenario)
        .map(|(_, plain)| *plain)
}

/// The report's title of a TLS scenario, from its plain scenario's (`"S1: …"`).
pub(super) fn title(scenario: &str, plain_title: &str) -> String {
    let what = plain_title.split_once(": ").map_or(plain_title, |(_, w)| w);
    format!("{scenario}: {what}, over TLS 1.3")
}

/// A CA and a server certificate for 127.0.0.1 and localhost, in a directory removed
/// on drop.
pub(super) struct Certificates {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificates {
    /// Makes them when `scenarios` has a TLS scenario.
    pub(super) fn for_scenarios(scenarios: &[String]) -> Result<Option<Certificates>, String> {
        if scenarios.iter().any(|s| plain_of(s).is_some()) {
            let dir = std::env::temp_dir().join(format!("fedamq-bench-tls-{}", std::process::id()));
            Certificates::make(&dir).map(Some)
        } else {
            Ok(None)
        }
    }

    fn make(dir: &Path) -> Result<Certificates, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let certs = Certificates {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| format!("{}: {e}", ext.display()))?;
        let (ca_key, csr) = (dir.join("ca.key"), dir.join("server.csr"));
        let p = |p: &Path| p.display().to_string();
        let steps: [Vec<String>; 3] = [
            strings(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=fedamq bench CA",
                "-keyout",
                &p(&ca_key),
                "-out",
                &p(&certs.ca),
            ]),
            strings(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &p(&certs.key),
                "-out",
                &p(&csr),
            ]),
            strings(&[
                "x509",
                "-req",
                "-in",
                &p(&csr),
                "-CA",
                &p(&certs.ca),
                "-CAkey",
                &p(&ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &p(&ext),
                "-out",
                &p(&certs.cert),
            ]),
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("openssl (needed for the TLS scenarios): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(certs)
    }

    /// fedamq's command-line options for an amqps listener on `port`.
    fn fedamq_args(&self, port: u16) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        strings(&[
            "--ssl-port",
            &port.to_string(),
            "--ssl-certfile",
            &p(&self.cert),
            "--ssl-keyfile",
            &p(&self.key),
            "--ssl-versions",
            VERSION,
        ])
    }

    /// RabbitMQ's `rabbitmq.conf` for an amqps listener on 127.0.0.1:`port`.
    fn rabbit_config(&self, port: u16) -> String {
        format!(
            "listeners.ssl.default = 127.0.0.1:{port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n\
             ssl_options.versions.1 = {VERSION}\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    /// The URI fedamq-perf connects to: the server's certificate checked against the CA.
    fn uri(&self, port: u16) -> String {
        format!(
            "amqps://guest:guest@127.0.0.1:{port}/%2f?cacertfile={}",
            percent_encode(&self.ca.display().to_string())
        )
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `which` with an amqps listener on a free port, which the benchmarks use.
pub(super) fn start(which: Which, fedamq: &Path, certs: &Certificates) -> Result<Broker, String> {
    let port = free_port()?;
    let mut broker = match which {
        Which::Fedamq => {
            let args = certs.fedamq_args(port);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Broker::start_fedamq(fedamq, &args)?
        }
        Which::Rabbit => Broker::start_rabbit(&certs.rabbit_config(port))?,
    };
    if !wait_for_port(port, Duration::from_secs(30)) {
        broker.stop();
        return Err(format!(
            "{} is not listening for amqps on {port}",
            broker.name()
        ));
    }
    broker.amqps_uri = Some(certs.uri(port));
    Ok(broker)
}

/// The report's "TLS cost" section: for each TLS scenario run with its plain one, each
/// figure over TLS divided by the same figure without, per broker.
pub(super) fn cost_section(
    o: &Options,
    names: (&str, &str),
    sessions: (&str, &str),
    figures: (&Figures, &Figures),
) -> String {
    let ran: Vec<(&str, &str)> = SCENARIOS
        .iter()
        .filter(|(t, _)| o.scenarios.iter().any(|s| s == t))
        .copied()
        .collect();
    if ran.is_empty() {
        return String::new();
    }
    let mut md = String::new();
    let _ = writeln!(md, "\n## TLS cost\n");
    let _ = writeln!(
        md,
        "Each figure over TLS divided by the same broker's figure without TLS: a rate \
         below 1, or a latency, CPU or memory figure above 1, is what TLS costs. TLS \
         negotiated: {} {}, {} {}. RSA 2048 server certificate made for the run, checked \
         by the client (verify_peer); no client certificate; RabbitMQ with \
         `listeners.ssl.default` and `ssl_options.*` (versions {VERSION}) in its \
         configuration, fedamq with `--ssl-port`, `--ssl-certfile`, `--ssl-keyfile`, \
         `--ssl-versions {VERSION}`.\n",
        names.0,
        or_dash(sessions.0),
        names.1,
        or_dash(sessions.1)
    );
    let _ = writeln!(md, "| TLS cost | figure | {} | {} |", names.0, names.1);
    let _ = writeln!(md, "|---|---|--:|--:|");
    for (tls, plain) in ran {
        if !o.scenarios.iter().any(|s| s == plain) {
            let _ = writeln!(
                md,
                "| {tls} ÷ {plain} | ({plain} not in this run) | - | - |"
            );
            continue;
        }
        let mut metrics: Vec<Metric> = [figures.0, figures.1]
            .iter()
            .flat_map(|f| f.keys())
            .filter(|(s, _)| s == tls)
            .map(|(_, m)| *m)
            .collect();
        metrics.sort();
        metrics.dedup();
        let mut first = true;
        for m in metrics {
            let ratio = |f: &Figures| {
                let over = |s: &str| f.get(&(s.to_string(), m)).map(|v| median(v));
                match (over(tls), over(plain)) {
                    (Some(t), Some(p)) if p != 0.0 && !t.is_nan() && !p.is_nan() => {
                        format!("{:.2}", t / p)
                    }
                    _ => "-".to_string(),
                }
            };
            let label = if first {
                format!("{tls} ÷ {plain}")
            } else {
                String::new()
            };
            first = false;
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} |",
                m.label(),
                ratio(figures.0),
                ratio(figures.1)
            );
        }
    }
    md
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Percent-encodes what a URI query value cannot hold as it is (a path keeps its `/`).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{ALL, parse, scenario_title};
    use super::*;

    #[test]
    fn each_tls_scenario_repeats_a_known_plain_one() {
        for (tls, plain) in SCENARIOS {
            assert!(ALL.contains(&tls) && ALL.contains(&plain), "{tls} {plain}");
            assert_eq!(plain_of(tls), Some(plain));
            assert_eq!(plain_of(plain), None);
        }
        let o = parse(&["--scenarios", "s1t,S2T"]).unwrap();
        assert_eq!(o.scenarios, vec!["S1t", "S2t"]);
        assert_eq!(
            scenario_title("S1t", &o),
            "S1t: 1p/1c, 16 B, auto-ack, over TLS 1.3"
        );
        assert!(scenario_title("S2t", &o).starts_with("S2t: 1p/1c, 16 B, manual ack"));
    }

    #[test]
    fn openssl_makes_a_server_certificate_the_ca_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certificates::make(&dir.path().join("tls")).unwrap();
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&certs.ca)
            .arg(&certs.cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&certs.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        let tls_dir = certs.dir.clone();
        drop(certs);
        assert!(!tls_dir.exists());
    }

    #[test]
    fn listeners_and_uri() {
        let certs = Certificates {
            dir: "/nonexistent/t".into(),
            ca: "/tmp/a b&c/ca.pem".into(),
            cert: "/t/server.pem".into(),
            key: "/t/server.key".into(),
        };
        assert_eq!(
            certs.fedamq_args(5999).join(" "),
            "--ssl-port 5999 --ssl-certfile /t/server.pem --ssl-keyfile /t/server.key \
             --ssl-versions tlsv1.3"
        );
        let conf = certs.rabbit_config(5998);
        for line in [
            "listeners.ssl.default = 127.0.0.1:5998",
            "ssl_options.cacertfile = /tmp/a b&c/ca.pem",
            "ssl_options.certfile = /t/server.pem",
            "ssl_options.keyfile = /t/server.key",
            "ssl_options.versions.1 = tlsv1.3",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line}\n{conf}");
        }
        assert_eq!(
            certs.uri(5998),
            "amqps://guest:guest@127.0.0.1:5998/%2f?cacertfile=/tmp/a%20b%26c/ca.pem"
        );
    }

    #[test]
    fn cost_is_each_tls_figure_over_the_plain_one() {
        let o = parse(&["--scenarios", "S1,S1t,S2t"]).unwrap();
        let mut f = Figures::new();
        let mut r = Figures::new();
        f.insert(("S1".into(), Metric::PublishRate), vec![400_000.0]);
        f.insert(("S1t".into(), Metric::PublishRate), vec![300_000.0]);
        f.insert(("S1".into(), Metric::CpuPerMillion), vec![2.0]);
        f.insert(("S1t".into(), Metric::CpuPerMillion), vec![3.0]);
        r.insert(("S1".into(), Metric::PublishRate), vec![100_000.0]);
        r.insert(("S1t".into(), Metric::PublishRate), vec![50_000.0]);
        f.insert(("S2t".into(), Metric::PublishRate), vec![1.0]);
        let md = cost_section(
            &o,
            ("fedamq", "RabbitMQ"),
            ("TLSv1_3 TLS13_AES_256_GCM_SHA384", ""),
            (&f, &r),
        );
        assert!(md.contains("## TLS cost"), "{md}");
        assert!(
            md.contains("fedamq TLSv1_3 TLS13_AES_256_GCM_SHA384, RabbitMQ -."),
            "{md}"
        );
        assert!(
            md.contains("| S1t ÷ S1 | publish msg/s | 0.75 | 0.50 |"),
            "{md}"
        );
        assert!(md.contains("|  | broker CPU µs / msg | 1.50 | - |"), "{md}");
        assert!(
            md.contains("| S2t ÷ S2 | (S2 not in this run) | - | - |"),
            "{md}"
        );
        // No TLS scenario, no section.
        let o = parse(&["--scenarios", "S1"]).unwrap();
        assert!(cost_section(&o, ("a", "b"), ("", ""), (&f, &r)).is_empty());
    }
}

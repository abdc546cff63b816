//! Prometheus's text exposition format (version 0.0.4): `# HELP` and `# TYPE` lines,
//! then the samples. Written by hand: the format is a few lines of rules, and every
//! value is read from the broker at scrape time, which a client library's registry of
//! live metric objects does not fit.

use std::fmt::{Display, Write};

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// rabbitmq_prometheus's `_info` series (a constant 1 carrying labels).
    Untyped,
}

/// A page of metric families being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts the family `name` (a counter's name ends in `_total`).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family just started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// HELP text escapes backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::default();
        e.single("a_total", Kind::Counter, "Things\\done\nso far", 3);
        e.family("b", Kind::Gauge, "B");
        e.sample("b", &[("vhost", "/"), ("queue", "q\"1\\\n")], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP a_total Things\\\\done\\nso far\n# TYPE a_total counter\na_total 3\n\
             # HELP b B\n# TYPE b gauge\nb{vhost=\"/\",queue=\"q\\\"1\\\\\\n\"} 0.5\n"
        );
    }
}

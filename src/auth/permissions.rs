//! Permissions: which vhosts a user may open, and what they may do to which exchanges
//! and queues there, following RabbitMQ's internal backend so that permission patterns
//! exported from a RabbitMQ node behave identically here.
//!
//! # Virtual hosts
//!
//! `connection.open` is allowed when the vhost exists and the user has a permission entry
//! on it, whatever its patterns (RabbitMQ: `check_vhost_access` is "has a permission
//! record"). RabbitMQ refuses with 530 NOT_ALLOWED: "vhost X not found" for a missing
//! vhost, "access to vhost 'X' refused for user 'U'" otherwise.
//!
//! # Resource permissions
//!
//! Each (user, vhost) entry has three regular expressions, *configure*, *write* and
//! *read* ([`Patterns`]). A check follows RabbitMQ's `check_resource_access`:
//!
//! - the pattern is searched for **unanchored** (`re:run(Name, Pattern)`): `foo` allows
//!   `xfooy`; anchor with `^…$` to mean a whole name;
//! - the empty pattern means `^$`, so it matches only the empty name — in practice
//!   nothing, because of the next rule;
//! - the default exchange `""` is checked under the name `amq.default`
//!   (`rabbit_access_control`), so write `^amq\.default$` to let a user publish to it.
//!   Queue names must therefore be passed *after* expanding the "" shortcut (last
//!   declared queue), as RabbitMQ also checks the expanded name;
//! - names are bytes and patterns are matched without Unicode mode, like `re:run` on a
//!   binary without the `unicode` option (`.` is any byte but `\n`, `\w` is ASCII).
//!   Patterns use Rust `regex` syntax, which for everything but look-around and
//!   back-references is PCRE's.
//!
//! Which method needs which permission, as `rabbit_channel` applies them (checks run in
//! the order listed; a refusal is 403 ACCESS_REFUSED, a channel error, with the text
//! "`<perm>` access to `<kind>` '`<name>`' in vhost '`<vhost>`' refused for user
//! '`<user>`'", where the default exchange is shown as `amq.default`):
//!
//! | method | checks |
//! |---|---|
//! | `exchange.declare` (passive=0) | configure on the exchange; when it is new and has an `alternate-exchange` argument, also read on the exchange and write on the alternate exchange |
//! | `exchange.declare` (passive=1) | none |
//! | `exchange.delete` | configure on the exchange |
//! | `exchange.bind`, `exchange.unbind` | write on the destination exchange, then read on the source exchange |
//! | `queue.declare` (passive=0) | configure on the queue (after server-naming); when it is new and has an `x-dead-letter-exchange` argument, also read on the queue and write on the dead-letter exchange |
//! | `queue.declare` (passive=1) | none |
//! | `queue.bind`, `queue.unbind` | write on the queue, then read on the exchange |
//! | `queue.purge` | read on the queue |
//! | `queue.delete` | configure on the queue |
//! | `basic.publish` | write on the exchange |
//! | `basic.get`, `basic.consume` | read on the queue |
//! | everything else | none |
//!
//! Before (or, for bindings, between) those checks RabbitMQ refuses with 403 a few
//! operations outright: declaring, deleting or binding the default exchange ("operation
//! not permitted on the default exchange") and deleting any `amq.*` exchange ("deletion
//! of system exchange 'amq.direct' in vhost '/' not allowed"). Topic permissions
//! (per-routing-key checks on topic exchanges) are not implemented.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};

/// Which operation a permission check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Configure,
    Write,
    Read,
}

impl Permission {
    /// The word RabbitMQ uses in refusal texts ("write access to …").
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Configure => "configure",
            Permission::Write => "write",
            Permission::Read => "read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compiles a permission pattern the way a check uses it.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    // RabbitMQ: "" would match every name unanchored, so it is read as "^$".
    let pattern = if pattern.is_empty() { "^$" } else { pattern };
    RegexBuilder::new(pattern).unicode(false).build()
}

/// A pattern that did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{permission} pattern {pattern:?} is not a valid regular expression: {reason}")]
pub struct PatternError {
    pub permission: Permission,
    pub pattern: String,
    pub reason: String,
}

/// One (user, vhost) permission entry: the three patterns as written and compiled.
#[derive(Debug, Clone)]
pub struct Patterns {
    configure: (String, Regex),
    write: (String, Regex),
    read: (String, Regex),
}

impl Patterns {
    /// Compiles the three patterns; an error names the first that does not compile.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Patterns, PatternError> {
        let compile = |permission, pattern: &str| {
            compile_pattern(pattern)
                .map(|re| (pattern.to_string(), re))
                .map_err(|e| PatternError {
                    permission,
                    pattern: pattern.to_string(),
                    reason: e.to_string(),
                })
        };
        Ok(Patterns {
            configure: compile(Permission::Configure, configure)?,
            write: compile(Permission::Write, write)?,
            read: compile(Permission::Read, read)?,
        })
    }

    /// The pattern for `op`, as written.
    pub fn pattern(&self, op: Permission) -> &str {
        &self.entry(op).0
    }

    /// Whether `op` on the exchange or queue named `resource` is allowed. The empty name
    /// is the default exchange and is checked as `amq.default`.
    pub fn allows(&self, op: Permission, resource: &[u8]) -> bool {
        let name: &[u8] = if resource.is_empty() {
            b"amq.default"
        } else {
            resource
        };
        self.entry(op).1.is_match(name)
    }

    fn entry(&self, op: Permission) -> &(String, Regex) {
        match op {
            Permission::Configure => &self.configure,
            Permission::Write => &self.write,
            Permission::Read => &self.read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(configure: &str, write: &str, read: &str) -> Patterns {
        Patterns::new(configure, write, read).unwrap()
    }

    #[test]
    fn patterns_are_unanchored() {
        let p = p("foo", "^amq\\.gen-", "^orders$");
        assert!(p.allows(Permission::Configure, b"foo"));
        assert!(p.allows(Permission::Configure, b"xfooy"));
        assert!(!p.allows(Permission::Configure, b"fo"));
        assert!(p.allows(Permission::Write, b"amq.gen-abc"));
        assert!(!p.allows(Permission::Write, b"x.amq.gen-abc"));
        assert!(p.allows(Permission::Read, b"orders"));
        assert!(!p.allows(Permission::Read, b"orders2"));
    }

    #[test]
    fn empty_pattern_matches_nothing() {
        let p = p("", "", "");
        for op in [Permission::Configure, Permission::Write, Permission::Read] {
            assert!(!p.allows(op, b"anything"));
            // "" is the default exchange, checked as amq.default, so "^$" misses it too.
            assert!(!p.allows(op, b""));
            assert_eq!(p.pattern(op), "");
        }
    }

    #[test]
    fn default_exchange_is_amq_default() {
        let p = p("", "^amq\\.default$", "^q$");
        assert!(p.allows(Permission::Write, b""));
        assert!(p.allows(Permission::Write, b"amq.default"));
        assert!(!p.allows(Permission::Write, b"amq.direct"));
        assert!(!p.allows(Permission::Read, b""));
    }

    #[test]
    fn patterns_match_bytes_without_unicode() {
        let p = p("^.$", "^\\w+$", "^é$");
        // One byte, not one character: '.' cannot span the two bytes of "é".
        assert!(p.allows(Permission::Configure, &[0xff]));
        assert!(!p.allows(Permission::Configure, "é".as_bytes()));
        assert!(!p.allows(Permission::Write, "café".as_bytes()));
        assert!(p.allows(Permission::Write, b"cafe_1"));
        // A literal non-ASCII character matches its UTF-8 bytes.
        assert!(p.allows(Permission::Read, "é".as_bytes()));
        // Byte names that are not UTF-8 are still names.
        assert!(
            Patterns::new(".*", ".*", ".*")
                .unwrap()
                .allows(Permission::Read, &[0xff, 0xfe])
        );
    }

    #[test]
    fn bad_pattern_is_an_error_naming_it() {
        let e = Patterns::new(".*", "(", ".*").unwrap_err();
        assert_eq!(e.permission, Permission::Write);
        assert_eq!(e.pattern, "(");
        assert!(e.to_string().starts_with("write pattern \"(\""), "{e}");
    }

    #[test]
    fn patterns_keep_their_text() {
        let p = p("^c$", "^w$", "^r$");
        assert_eq!(p.pattern(Permission::Configure), "^c$");
        assert_eq!(p.pattern(Permission::Write), "^w$");
        assert_eq!(p.pattern(Permission::Read), "^r$");
    }
}

//! Users, virtual hosts and permissions: who may log in, which vhosts they may open, and
//! what they may do to which exchanges and queues.
//!
//! Everything here follows RabbitMQ's internal authentication backend
//! (`rabbit_auth_backend_internal`), so that users, password hashes and permission
//! patterns exported from a RabbitMQ node behave identically here. Users are fixed at
//! start-up from the [`Config`]; there is no management API yet, so the table is
//! immutable and needs no locking.
//!
//! # Password hashes
//!
//! [`PasswordHash`] is RabbitMQ's `rabbit_password_hashing_sha256` format: a random
//! 4-byte salt, `sha256(salt ++ password)`, stored as `base64(salt ++ digest)` (36 bytes,
//! 48 base64 characters). That is what `rabbitmqctl hash_password` prints and what
//! `definitions.json` holds in `password_hash`, so such a hash can be pasted into
//! `fedamq.toml`. Hashes made with `rabbit_password_hashing_sha512` (68 bytes) are also
//! accepted; the pre-3.6 MD5 format is not. An empty hash locks the account, as it does
//! in RabbitMQ. Digests are compared in constant time, and a login for an unknown user
//! still hashes once, so timing reveals neither the password nor whether a user exists.
//! Blank passwords are always refused, as RabbitMQ's internal backend does.
//!
//! # SASL mechanisms ([`MECHANISMS`])
//!
//! - `PLAIN` (RFC 4616): the response is `authzid \0 authcid \0 password`. RabbitMQ
//!   requires the authzid to be empty; we also accept one equal to the user name (RFC
//!   4616 says that means the same thing) and refuse any other, since acting as another
//!   user is not supported. Nothing may follow the password.
//! - `AMQPLAIN`: the response is a field table *without* its 4-byte length prefix
//!   (py-amqp and amq-protocol/lapin both strip it), holding `LOGIN` and `PASSWORD` as
//!   long strings (`S`). If a key repeats, the first one counts (RabbitMQ uses
//!   `lists:keysearch`).
//!
//! How RabbitMQ reports failures (`rabbit_reader`), which [`AuthError::reply_code`] and
//! [`AuthError::reply_text`] mirror:
//!
//! | failure | RabbitMQ | what the client sees |
//! |---|---|---|
//! | unknown mechanism | 503 COMMAND_INVALID "unknown authentication mechanism 'X'" | socket closed (after a 3 s delay), no `connection.close` |
//! | malformed response | 502 SYNTAX_ERROR | socket closed (after a 3 s delay), no `connection.close` |
//! | wrong user or password | 403 ACCESS_REFUSED | `connection.close` 403 "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile." if the client announced the `authentication_failure_close` capability (every current client does); otherwise the socket is closed |
//!
//! The detailed reason (e.g. "user 'bob' - invalid credentials") is only for the log,
//! which is what [`AuthError`]'s `Display` gives.
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
//! *read*. [`Users::check`] follows RabbitMQ's `check_resource_access`:
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

use std::collections::{HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use regex::bytes::{Regex, RegexBuilder};
use sha2::{Digest, Sha256, Sha512};

use crate::config::Config;
use crate::protocol::FieldValue;
use crate::protocol::wire::Decoder;

/// The mechanisms to offer in `connection.start`, in order of preference (RabbitMQ's
/// default `auth_mechanisms`).
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

const SALT_LEN: usize = 4;
const SHA256_LEN: usize = 32;
const SHA512_LEN: usize = 64;
const MD5_LEN: usize = 16;

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

// ---------------------------------------------------------------------------------------
// Password hashes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn digest(self, salt: &[u8; SALT_LEN], password: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            Algorithm::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    /// An empty stored hash: no password can match (RabbitMQ's way to lock an account).
    Locked,
    Salted {
        algorithm: Algorithm,
        salt: [u8; SALT_LEN],
        digest: Vec<u8>,
    },
}

/// A salted password hash in RabbitMQ's format (see the module docs).
///
/// `Debug` does not print the hash, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(Repr);

/// Why a stored password hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error("not valid base64")]
    Base64,
    #[error(
        "MD5 password hashes (RabbitMQ before 3.6, rabbit_password_hashing_md5) are not supported; \
         set a new password"
    )]
    Md5,
    #[error(
        "decodes to {0} bytes; expected 36 (rabbit_password_hashing_sha256) or 68 \
         (rabbit_password_hashing_sha512)"
    )]
    Length(usize),
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt, as `rabbitmqctl add_user` does.
    pub fn new(password: impl AsRef<[u8]>) -> Self {
        Self::with_salt(rand::random(), password)
    }

    /// Hashes with a given salt: for reproducing a known hash.
    pub fn with_salt(salt: [u8; SALT_LEN], password: impl AsRef<[u8]>) -> Self {
        let algorithm = Algorithm::Sha256;
        let digest = algorithm.digest(&salt, password.as_ref());
        PasswordHash(Repr::Salted {
            algorithm,
            salt,
            digest,
        })
    }

    /// A hash no password matches.
    pub fn locked() -> Self {
        PasswordHash(Repr::Locked)
    }

    /// Reads the base64 form (`rabbitmqctl hash_password` output, `password_hash` in
    /// `definitions.json`). The algorithm is told by the length: 36 bytes is SHA-256, 68
    /// is SHA-512. An empty string is a locked account.
    pub fn parse(encoded: &str) -> Result<Self, PasswordHashError> {
        let encoded = encoded.trim();
        if encoded.is_empty() {
            return Ok(Self::locked());
        }
        let raw = base64_decode(encoded).ok_or(PasswordHashError::Base64)?;
        let algorithm = match raw.len().checked_sub(SALT_LEN) {
            Some(SHA256_LEN) => Algorithm::Sha256,
            Some(SHA512_LEN) => Algorithm::Sha512,
            Some(MD5_LEN) => return Err(PasswordHashError::Md5),
            _ => return Err(PasswordHashError::Length(raw.len())),
        };
        let (salt, digest) = raw.split_at(SALT_LEN);
        let mut salt_arr = [0u8; SALT_LEN];
        salt_arr.copy_from_slice(salt);
        Ok(PasswordHash(Repr::Salted {
            algorithm,
            salt: salt_arr,
            digest: digest.to_vec(),
        }))
    }

    /// Whether `password` is the one hashed. Always false for a blank password (RabbitMQ
    /// refuses those outright) and for a locked hash.
    pub fn verify(&self, password: impl AsRef<[u8]>) -> bool {
        let password = password.as_ref();
        match &self.0 {
            Repr::Locked => false,
            Repr::Salted {
                algorithm,
                salt,
                digest,
            } => {
                let computed = algorithm.digest(salt, password);
                constant_time_eq(&computed, digest) && !password.is_empty()
            }
        }
    }

    /// The base64 form [`parse`](Self::parse) reads (empty for a locked account).
    pub fn encoded(&self) -> String {
        match &self.0 {
            Repr::Locked => String::new(),
            Repr::Salted { salt, digest, .. } => {
                let mut raw = Vec::with_capacity(SALT_LEN + digest.len());
                raw.extend_from_slice(salt);
                raw.extend_from_slice(digest);
                base64_encode(&raw)
            }
        }
    }

    /// RabbitMQ's name for the algorithm (`hashing_algorithm` in `definitions.json`).
    pub fn algorithm_name(&self) -> &'static str {
        match &self.0 {
            Repr::Locked => "locked",
            Repr::Salted {
                algorithm: Algorithm::Sha256,
                ..
            } => "rabbit_password_hashing_sha256",
            Repr::Salted {
                algorithm: Algorithm::Sha512,
                ..
            } => "rabbit_password_hashing_sha512",
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm_name())
    }
}

/// Equality whose running time depends only on the lengths, so a guesser cannot learn
/// how many leading bytes of the digest matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Standard alphabet with padding, as Erlang's base64 module writes it. A dependency for
// forty lines is not worth it.
fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet; padding optional but, if present, correct. `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let body = match bytes.iter().position(|&c| c == b'=') {
        Some(p) => {
            let pad = &bytes[p..];
            if pad.len() > 2 || pad.iter().any(|&c| c != b'=') || bytes.len() % 4 != 0 {
                return None;
            }
            &bytes[..p]
        }
        None => bytes,
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        let v = B64.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or two encodings would decode to the same bytes.
    (acc == 0).then_some(out)
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// Why a login failed. `Display` is the detailed reason, for the log only; tell the
/// client [`reply_text`](Self::reply_text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown authentication mechanism '{0}'")]
    UnknownMechanism(String),
    #[error("{mechanism} response invalid: {reason}")]
    BadResponse {
        mechanism: String,
        reason: &'static str,
    },
    #[error("{mechanism} login refused: user '{user}' - invalid credentials")]
    InvalidCredentials { mechanism: String, user: String },
    #[error(
        "{mechanism} login refused: user '{user}' attempted to log in with a blank password, \
         which is prohibited"
    )]
    BlankPassword { mechanism: String, user: String },
}

impl AuthError {
    /// RabbitMQ's reply code for this failure: 503 COMMAND_INVALID for an unknown
    /// mechanism, 502 SYNTAX_ERROR for a malformed response, 403 ACCESS_REFUSED for bad
    /// credentials. (RabbitMQ sends only the 403 as a `connection.close`; see the module
    /// docs.)
    pub fn reply_code(&self) -> u16 {
        match self {
            AuthError::UnknownMechanism(_) => 503,
            AuthError::BadResponse { .. } => 502,
            AuthError::InvalidCredentials { .. } | AuthError::BlankPassword { .. } => 403,
        }
    }

    /// Text safe to send to the client: it never says whether the user exists, and never
    /// echoes the response (which holds the password).
    pub fn reply_text(&self) -> String {
        match self {
            AuthError::UnknownMechanism(m) => format!("unknown authentication mechanism '{m}'"),
            AuthError::BadResponse { mechanism, .. } => format!("{mechanism} response invalid"),
            AuthError::InvalidCredentials { mechanism, .. }
            | AuthError::BlankPassword { mechanism, .. } => {
                format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                )
            }
        }
    }
}

/// Splits a SASL PLAIN response into (user, password).
fn parse_plain(response: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let mut parts = response.splitn(3, |&b| b == 0);
    let authzid = parts.next().unwrap_or_default();
    let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
        return Err("expected \\0user\\0password");
    };
    if password.contains(&0) {
        return Err("unexpected bytes after the password");
    }
    if !authzid.is_empty() && authzid != user {
        return Err("authorization identity differs from the user name");
    }
    Ok((user, password))
}

/// Reads an AMQPLAIN response (a field table without its length prefix) into
/// (LOGIN, PASSWORD).
fn parse_amqplain(response: &[u8]) -> Result<(Bytes, Bytes), &'static str> {
    let mut decoder = Decoder::from_slice(response);
    let (mut login, mut password) = (None, None);
    while !decoder.is_empty() {
        let key = decoder.shortstr().map_err(|_| "malformed field table")?;
        let value = decoder.field_value().map_err(|_| "malformed field table")?;
        let slot = match key.as_bytes() {
            b"LOGIN" => &mut login,
            b"PASSWORD" => &mut password,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    match (login, password) {
        (Some(FieldValue::LongString(l)), Some(FieldValue::LongString(p))) => Ok((l, p)),
        (Some(_), Some(_)) => Err("LOGIN and PASSWORD must be long strings"),
        _ => Err("missing LOGIN or PASSWORD field"),
    }
}

// ---------------------------------------------------------------------------------------
// The user table
// ---------------------------------------------------------------------------------------

/// Compiles a permission pattern the way [`Users::check`] uses it. The config loader
/// calls this to reject bad patterns at start-up.
pub fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    // RabbitMQ: "" would match every name unanchored, so it is read as "^$".
    let pattern = if pattern.is_empty() { "^$" } else { pattern };
    RegexBuilder::new(pattern).unicode(false).build()
}

#[derive(Debug, Clone)]
struct VhostPermissions {
    // `None`: the pattern did not compile (only possible for a hand-built Config), so it
    // allows nothing.
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

#[derive(Debug, Clone)]
struct UserEntry {
    hash: PasswordHash,
    outbound_password: Option<String>,
    tags: Vec<String>,
    permissions: HashMap<String, VhostPermissions>,
}

/// The users, vhosts and permissions the broker enforces, built once from the config.
#[derive(Clone)]
pub struct Users {
    users: HashMap<String, UserEntry>,
    vhosts: HashSet<String>,
    /// Checked against when the user does not exist, so that case costs a hash too.
    decoy: PasswordHash,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<_> = self.users.keys().collect();
        users.sort();
        let mut vhosts: Vec<_> = self.vhosts.iter().collect();
        vhosts.sort();
        f.debug_struct("Users")
            .field("users", &users)
            .field("vhosts", &vhosts)
            .finish()
    }
}

impl Users {
    /// Builds the table. `config::load` has already rejected permissions naming unknown
    /// users or vhosts and patterns that do not compile; for a hand-built `Config`, such
    /// entries are skipped or allow nothing (logged), never a panic.
    pub fn from_config(c: &Config) -> Self {
        let mut users: HashMap<String, UserEntry> = c
            .users
            .iter()
            .map(|u| {
                let entry = UserEntry {
                    hash: u.password_hash.clone(),
                    outbound_password: u.password.clone(),
                    tags: u.tags.clone(),
                    permissions: HashMap::new(),
                };
                (u.name.clone(), entry)
            })
            .collect();
        let vhosts: HashSet<String> = c.vhosts.iter().cloned().collect();
        for p in &c.permissions {
            let Some(user) = users.get_mut(&p.user) else {
                tracing::warn!("permission for unknown user '{}' ignored", p.user);
                continue;
            };
            if !vhosts.contains(&p.vhost) {
                tracing::warn!("permission on unknown vhost '{}' ignored", p.vhost);
                continue;
            }
            let compile = |pattern: &str| match compile_pattern(pattern) {
                Ok(re) => Some(re),
                Err(e) => {
                    tracing::warn!(
                        "permission pattern {pattern:?} for user '{}' allows nothing: {e}",
                        p.user
                    );
                    None
                }
            };
            let perms = VhostPermissions {
                configure: compile(&p.configure),
                write: compile(&p.write),
                read: compile(&p.read),
            };
            user.permissions.insert(p.vhost.clone(), perms);
        }
        Users {
            users,
            vhosts,
            decoy: PasswordHash::new("fedamq timing decoy"),
        }
    }

    /// Checks a `connection.start-ok` response. Returns the user name on success.
    pub fn authenticate(&self, mechanism: &[u8], response: &[u8]) -> Result<String, AuthError> {
        let (user, password): (&[u8], &[u8]);
        let amqplain;
        let mech_name = String::from_utf8_lossy(mechanism).into_owned();
        match mechanism {
            b"PLAIN" => {
                (user, password) =
                    parse_plain(response).map_err(|reason| AuthError::BadResponse {
                        mechanism: mech_name.clone(),
                        reason,
                    })?;
            }
            b"AMQPLAIN" => {
                amqplain = parse_amqplain(response).map_err(|reason| AuthError::BadResponse {
                    mechanism: mech_name.clone(),
                    reason,
                })?;
                (user, password) = (&amqplain.0, &amqplain.1);
            }
            _ => return Err(AuthError::UnknownMechanism(mech_name)),
        }
        let user_name = String::from_utf8_lossy(user).into_owned();
        if password.is_empty() {
            return Err(AuthError::BlankPassword {
                mechanism: mech_name,
                user: user_name,
            });
        }
        // A name that is not UTF-8 cannot be a configured user; it still costs a hash.
        let entry = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u));
        let ok = match entry {
            Some(e) => e.hash.verify(password),
            None => {
                std::hint::black_box(self.decoy.verify(password));
                false
            }
        };
        if ok {
            Ok(user_name)
        } else {
            Err(AuthError::InvalidCredentials {
                mechanism: mech_name,
                user: user_name,
            })
        }
    }

    pub fn vhost_exists(&self, vhost: &str) -> bool {
        self.vhosts.contains(vhost)
    }

    /// Whether `user` may open `vhost`: it exists and the user has a permission entry on
    /// it (whatever the patterns).
    pub fn may_access_vhost(&self, user: &str, vhost: &str) -> bool {
        self.vhost_exists(vhost)
            && self
                .users
                .get(user)
                .is_some_and(|u| u.permissions.contains_key(vhost))
    }

    /// Whether `user` may do `op` on the exchange or queue named `resource` in `vhost`.
    /// The empty name is the default exchange and is checked as `amq.default`; expand the
    /// empty queue-name shortcut before calling.
    pub fn check(&self, user: &str, vhost: &str, op: Permission, resource: &[u8]) -> bool {
        let Some(perms) = self.users.get(user).and_then(|u| u.permissions.get(vhost)) else {
            return false;
        };
        let pattern = match op {
            Permission::Configure => &perms.configure,
            Permission::Write => &perms.write,
            Permission::Read => &perms.read,
        };
        let name: &[u8] = if resource.is_empty() {
            b"amq.default"
        } else {
            resource
        };
        pattern.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// The user's tags (`administrator`, `monitoring`, …); empty for an unknown user.
    pub fn user_tags(&self, user: &str) -> &[String] {
        self.users
            .get(user)
            .map(|u| u.tags.as_slice())
            .unwrap_or_default()
    }

    /// The password a peering logging in elsewhere as `user` sends: known only for users
    /// configured with `password` (not `password_hash`).
    pub fn outbound_password(&self, user: &str) -> Option<&str> {
        self.users.get(user)?.outbound_password.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PermissionConfig, UserConfig};
    use proptest::prelude::*;

    /// The worked example in RabbitMQ's passwords guide
    /// (https://www.rabbitmq.com/docs/passwords#computing-password-hash):
    /// salt 908D C60A, password "test12".
    const DOCS_HASH: &str = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
    /// Exported from a RabbitMQ node (management API) for the password "1", quoted in
    /// https://stackoverflow.com/questions/41306350.
    const EXPORTED_HASH: &str = "y4xPTRVfzXg68sz9ALqeQzARam3CwnGo53xS752cDV5+Utzh";

    fn users(perms: &[(&str, &str, &str, &str, &str)]) -> Users {
        let users = vec![
            UserConfig {
                name: "guest".into(),
                password_hash: PasswordHash::new("guest"),
                password: None,
                tags: vec!["administrator".into()],
            },
            UserConfig {
                name: "bob".into(),
                password_hash: PasswordHash::new("s3cret"),
                password: Some("s3cret".into()),
                tags: vec![],
            },
        ];
        let permissions = perms
            .iter()
            .map(|&(user, vhost, configure, write, read)| PermissionConfig {
                user: user.into(),
                vhost: vhost.into(),
                configure: configure.into(),
                write: write.into(),
                read: read.into(),
            })
            .collect();
        Users::from_config(&Config {
            vhosts: vec!["/".into(), "prod".into(), "empty".into()],
            users,
            permissions,
            ..Config::default()
        })
    }

    fn amqplain(entries: &[(&str, FieldValue)]) -> Vec<u8> {
        use crate::protocol::FieldTable;
        use crate::protocol::wire::encode;
        let table: FieldTable = entries
            .iter()
            .map(|(k, v)| ((*k).try_into().unwrap(), v.clone()))
            .collect();
        let mut buf = bytes::BytesMut::new();
        encode::table(&mut buf, &table);
        buf[4..].to_vec()
    }

    #[test]
    fn rabbitmq_docs_example_hash() {
        let h = PasswordHash::parse(DOCS_HASH).unwrap();
        assert!(h.verify("test12"));
        assert!(!h.verify("test13"));
        assert_eq!(h.encoded(), DOCS_HASH);
        assert_eq!(
            PasswordHash::with_salt([0x90, 0x8D, 0xC6, 0x0A], "test12").encoded(),
            DOCS_HASH
        );
        assert_eq!(h.algorithm_name(), "rabbit_password_hashing_sha256");
    }

    #[test]
    fn hash_exported_from_rabbitmq() {
        let h = PasswordHash::parse(EXPORTED_HASH).unwrap();
        assert!(h.verify("1"));
        assert!(!h.verify("2"));
    }

    #[test]
    fn sha512_hash() {
        // python3: salt=bytes.fromhex('908DC60A');
        // base64.b64encode(salt + hashlib.sha512(salt + b'test12').digest())
        let encoded = "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=";
        let h = PasswordHash::parse(encoded).unwrap();
        assert_eq!(h.algorithm_name(), "rabbit_password_hashing_sha512");
        assert!(h.verify("test12"));
        assert!(!h.verify("test1"));
        assert_eq!(h.encoded(), encoded);
    }

    #[test]
    fn hash_round_trip_and_fresh_salts() {
        let a = PasswordHash::new("hunter2");
        let b = PasswordHash::new("hunter2");
        assert_eq!(a.encoded().len(), 48);
        assert!(a.verify("hunter2") && b.verify("hunter2"));
        assert!(!a.verify("hunter3") && !a.verify(""));
        let back = PasswordHash::parse(&a.encoded()).unwrap();
        assert_eq!(back, a);
        assert!(back.verify(b"hunter2"));
        // Non-UTF-8 passwords are hashed as bytes, as RabbitMQ does.
        assert!(PasswordHash::new([0xff, 0x00, 0x80]).verify([0xff, 0x00, 0x80]));
    }

    #[test]
    fn blank_password_never_verifies() {
        let h = PasswordHash::new("");
        assert!(!h.verify(""));
    }

    #[test]
    fn empty_hash_locks_the_account() {
        let h = PasswordHash::parse("").unwrap();
        assert_eq!(h, PasswordHash::locked());
        assert!(!h.verify("anything"));
        assert_eq!(h.encoded(), "");
    }

    #[test]
    fn bad_hashes_are_refused() {
        assert_eq!(
            PasswordHash::parse("not base64!"),
            Err(PasswordHashError::Base64)
        );
        assert_eq!(
            PasswordHash::parse("ytUIm8s3AnKsXQjptplKFytfVxI="),
            Err(PasswordHashError::Md5)
        );
        assert_eq!(
            PasswordHash::parse("AAAA"),
            Err(PasswordHashError::Length(3))
        );
        // Wrong padding, padding in the middle, non-zero trailing bits.
        assert!(PasswordHash::parse("kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO=").is_err());
        assert_eq!(base64_decode("QQ=A"), None);
        assert_eq!(base64_decode("QR=="), None);
    }

    #[test]
    fn base64_known_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(base64_encode(raw.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
    }

    #[test]
    fn debug_does_not_leak_the_hash() {
        let h = PasswordHash::parse(DOCS_HASH).unwrap();
        assert!(!format!("{h:?}").contains("kI3G"));
    }

    #[test]
    fn plain_login() {
        let u = users(&[]);
        assert_eq!(
            u.authenticate(b"PLAIN", b"\0guest\0guest"),
            Ok("guest".into())
        );
        assert_eq!(
            u.authenticate(b"PLAIN", b"guest\0guest\0guest"),
            Ok("guest".into())
        );
        assert_eq!(u.authenticate(b"PLAIN", b"\0bob\0s3cret"), Ok("bob".into()));
        let wrong = u.authenticate(b"PLAIN", b"\0guest\0nope").unwrap_err();
        assert_eq!(wrong.reply_code(), 403);
        assert_eq!(
            wrong.reply_text(),
            "Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
        );
        assert_eq!(
            wrong.to_string(),
            "PLAIN login refused: user 'guest' - invalid credentials"
        );
        // Unknown user looks exactly like a wrong password to the client.
        let unknown = u.authenticate(b"PLAIN", b"\0mallory\0guest").unwrap_err();
        assert_eq!(unknown.reply_text(), wrong.reply_text());
        assert!(matches!(
            u.authenticate(b"PLAIN", b"\0guest\0"),
            Err(AuthError::BlankPassword { .. })
        ));
    }

    #[test]
    fn plain_malformed() {
        let u = users(&[]);
        for bad in [
            &b""[..],
            b"guest",
            b"\0guest",
            b"\0guest\0guest\0",
            b"\0guest\0gu\0est",
            b"bob\0guest\0guest",
        ] {
            let e = u.authenticate(b"PLAIN", bad).unwrap_err();
            assert!(matches!(e, AuthError::BadResponse { .. }), "{bad:?}: {e:?}");
            assert_eq!(e.reply_code(), 502);
            assert!(!e.reply_text().contains("guest"));
        }
    }

    #[test]
    fn amqplain_login() {
        let u = users(&[]);
        // Byte-for-byte what amq-protocol (lapin) sends for guest/guest.
        let lapin = b"\x05LOGINS\0\0\0\x05guest\x08PASSWORDS\0\0\0\x05guest";
        assert_eq!(u.authenticate(b"AMQPLAIN", lapin), Ok("guest".into()));
        let ok = amqplain(&[
            ("PASSWORD", "s3cret".into()),
            ("extra", FieldValue::Bool(true)),
            ("LOGIN", "bob".into()),
        ]);
        assert_eq!(u.authenticate(b"AMQPLAIN", &ok), Ok("bob".into()));
        let wrong = amqplain(&[("LOGIN", "bob".into()), ("PASSWORD", "guest".into())]);
        assert!(matches!(
            u.authenticate(b"AMQPLAIN", &wrong),
            Err(AuthError::InvalidCredentials { .. })
        ));
        // First of repeated keys wins, as with RabbitMQ's lists:keysearch.
        // (FieldTable merges repeated keys, so the repeat is spliced in by hand.)
        let mut dup = amqplain(&[("LOGIN", "bob".into())]);
        dup.extend(amqplain(&[
            ("LOGIN", "guest".into()),
            ("PASSWORD", "s3cret".into()),
        ]));
        assert_eq!(u.authenticate(b"AMQPLAIN", &dup), Ok("bob".into()));
    }

    #[test]
    fn amqplain_malformed() {
        let u = users(&[]);
        let missing = amqplain(&[("LOGIN", "guest".into())]);
        let wrong_type = amqplain(&[("LOGIN", "guest".into()), ("PASSWORD", FieldValue::I32(5))]);
        let mut with_prefix = vec![0, 0, 0, 34];
        with_prefix.extend_from_slice(b"\x05LOGINS\0\0\0\x05guest\x08PASSWORDS\0\0\0\x05guest");
        for bad in [
            missing,
            wrong_type,
            with_prefix,
            b"\x05LOG".to_vec(),
            b"\x05LOGINZ".to_vec(),
        ] {
            let e = u.authenticate(b"AMQPLAIN", &bad).unwrap_err();
            assert!(matches!(e, AuthError::BadResponse { .. }), "{bad:?}: {e:?}");
        }
        // An empty table has neither field.
        assert!(matches!(
            u.authenticate(b"AMQPLAIN", b""),
            Err(AuthError::BadResponse { .. })
        ));
    }

    #[test]
    fn unknown_mechanism() {
        let u = users(&[]);
        let e = u.authenticate(b"EXTERNAL", b"").unwrap_err();
        assert_eq!(e, AuthError::UnknownMechanism("EXTERNAL".into()));
        assert_eq!(e.reply_code(), 503);
        assert_eq!(
            e.reply_text(),
            "unknown authentication mechanism 'EXTERNAL'"
        );
        // Mechanism names are case-sensitive, as in RabbitMQ's registry.
        assert!(matches!(
            u.authenticate(b"plain", b"\0guest\0guest"),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn permission_patterns_are_unanchored() {
        let u = users(&[("bob", "/", "foo", "^amq\\.gen-", "^orders$")]);
        assert!(u.check("bob", "/", Permission::Configure, b"foo"));
        assert!(u.check("bob", "/", Permission::Configure, b"xfooy"));
        assert!(!u.check("bob", "/", Permission::Configure, b"fo"));
        assert!(u.check("bob", "/", Permission::Write, b"amq.gen-abc"));
        assert!(!u.check("bob", "/", Permission::Write, b"x.amq.gen-abc"));
        assert!(u.check("bob", "/", Permission::Read, b"orders"));
        assert!(!u.check("bob", "/", Permission::Read, b"orders2"));
    }

    #[test]
    fn empty_pattern_matches_nothing() {
        let u = users(&[("bob", "/", "", "", "")]);
        for op in [Permission::Configure, Permission::Write, Permission::Read] {
            assert!(!u.check("bob", "/", op, b"anything"));
            // "" is the default exchange, checked as amq.default, so "^$" misses it too.
            assert!(!u.check("bob", "/", op, b""));
        }
        // An entry with only empty patterns still grants the vhost.
        assert!(u.may_access_vhost("bob", "/"));
    }

    #[test]
    fn default_exchange_is_amq_default() {
        let u = users(&[("bob", "/", "", "^amq\\.default$", "^q$")]);
        assert!(u.check("bob", "/", Permission::Write, b""));
        assert!(u.check("bob", "/", Permission::Write, b"amq.default"));
        assert!(!u.check("bob", "/", Permission::Write, b"amq.direct"));
        assert!(!u.check("bob", "/", Permission::Read, b""));
    }

    #[test]
    fn full_permissions_and_scoping() {
        let u = users(&[
            ("guest", "/", ".*", ".*", ".*"),
            ("bob", "prod", ".*", "", ".*"),
        ]);
        assert!(u.check("guest", "/", Permission::Configure, b"anything"));
        assert!(u.check("guest", "/", Permission::Write, b""));
        // Byte names that are not UTF-8 are still names.
        assert!(u.check("guest", "/", Permission::Read, &[0xff, 0xfe]));
        // Permissions are per vhost and per user.
        assert!(!u.check("guest", "prod", Permission::Read, b"q"));
        assert!(!u.check("bob", "/", Permission::Read, b"q"));
        assert!(u.check("bob", "prod", Permission::Read, b"q"));
        assert!(!u.check("bob", "prod", Permission::Write, b"q"));
        assert!(!u.check("nobody", "/", Permission::Read, b"q"));
    }

    #[test]
    fn patterns_match_bytes_without_unicode() {
        let u = users(&[("bob", "/", "^.$", "^\\w+$", "^é$")]);
        // One byte, not one character: '.' cannot span the two bytes of "é".
        assert!(u.check("bob", "/", Permission::Configure, &[0xff]));
        assert!(!u.check("bob", "/", Permission::Configure, "é".as_bytes()));
        assert!(!u.check("bob", "/", Permission::Write, "café".as_bytes()));
        assert!(u.check("bob", "/", Permission::Write, b"cafe_1"));
        // A literal non-ASCII character matches its UTF-8 bytes.
        assert!(u.check("bob", "/", Permission::Read, "é".as_bytes()));
    }

    #[test]
    fn uncompilable_pattern_allows_nothing() {
        let u = users(&[("bob", "/", "(", ".*", ".*")]);
        assert!(!u.check("bob", "/", Permission::Configure, b"x"));
        assert!(u.check("bob", "/", Permission::Write, b"x"));
    }

    #[test]
    fn vhost_access() {
        let u = users(&[
            ("guest", "/", ".*", ".*", ".*"),
            ("bob", "prod", "", "", ""),
            ("bob", "nosuch", ".*", ".*", ".*"),
        ]);
        assert!(u.vhost_exists("/") && u.vhost_exists("empty") && !u.vhost_exists("nosuch"));
        assert!(u.may_access_vhost("guest", "/"));
        assert!(!u.may_access_vhost("guest", "prod"));
        assert!(u.may_access_vhost("bob", "prod"));
        assert!(!u.may_access_vhost("bob", "/"));
        assert!(!u.may_access_vhost("bob", "nosuch"));
        assert!(!u.may_access_vhost("nobody", "/"));
        assert!(!u.may_access_vhost("guest", "empty"));
    }

    #[test]
    fn tags() {
        let u = users(&[]);
        assert_eq!(u.user_tags("guest"), ["administrator".to_string()]);
        assert!(u.user_tags("bob").is_empty());
        assert!(u.user_tags("nobody").is_empty());
    }

    #[test]
    fn permission_unknown_user_is_skipped() {
        let u = users(&[("ghost", "/", ".*", ".*", ".*")]);
        assert!(!u.may_access_vhost("ghost", "/"));
    }

    proptest! {
        #[test]
        fn any_response_never_panics(mech in prop::sample::select(vec!["PLAIN", "AMQPLAIN", "X"]), resp in prop::collection::vec(any::<u8>(), 0..128)) {
            let u = users(&[]);
            let _ = u.authenticate(mech.as_bytes(), &resp);
        }

        #[test]
        fn table_like_responses_never_panic(resp in prop::collection::vec(prop::sample::select(vec![0u8, 1, 4, 5, b'S', b'F', b'A', b'L', 0xff]), 0..64)) {
            let u = users(&[]);
            let _ = u.authenticate(b"AMQPLAIN", &resp);
        }

        #[test]
        fn plain_round_trip(user in "[^\\x00]{0,20}", pass in "[^\\x00]{1,20}") {
            let users = vec![UserConfig { name: user.clone(), password_hash: PasswordHash::new(&pass), password: None, tags: vec![] }];
            let u = Users::from_config(&Config { users, ..Config::default() });
            let resp = format!("\0{user}\0{pass}");
            prop_assert_eq!(u.authenticate(b"PLAIN", resp.as_bytes()), Ok(user.clone()));
            let resp = amqplain(&[("LOGIN", user.as_str().into()), ("PASSWORD", pass.as_str().into())]);
            prop_assert_eq!(u.authenticate(b"AMQPLAIN", &resp), Ok(user.clone()));
            let resp = format!("\0{user}\0{pass}x");
            prop_assert!(u.authenticate(b"PLAIN", resp.as_bytes()).is_err());
        }

        #[test]
        fn base64_round_trip(data in prop::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(base64_decode(&base64_encode(&data)), Some(data));
        }

        #[test]
        fn base64_decode_never_panics(s in "[A-Za-z0-9+/=!]{0,40}") {
            let _ = base64_decode(&s);
            let _ = PasswordHash::parse(&s);
        }
    }
}

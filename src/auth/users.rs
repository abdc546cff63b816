//! The user table: who may log in, with which tags, and their permissions per vhost.
//!
//! It changes at run time (the management API adds users and sets permissions while
//! clients are connected), so every method takes `&self` and the table sits behind a
//! read-write lock. Logins and permission checks only read. Each change bumps
//! [`Users::generation`], so a caller that caches the outcome of a check (the publish
//! path caches its write permission on the exchange it last published to) knows when to
//! check again.
//!
//! A login for an unknown user still hashes once, against a decoy, so timing reveals
//! neither the password nor whether a user exists.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::password::PasswordHash;
use super::permissions::{PatternError, Patterns, Permission};
use super::sasl::{AuthError, Credentials};

/// Why a change to the user table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserTableError {
    #[error("user '{0}' already exists")]
    UserExists(String),
    #[error("no such user '{0}'")]
    NoSuchUser(String),
    #[error(transparent)]
    BadPattern(#[from] PatternError),
}

/// A user as listed (for the management API and definitions export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub password_hash: PasswordHash,
    /// RabbitMQ's user tags: `administrator`, `monitoring`, `policymaker`, `management`,
    /// or any other word, kept as given.
    pub tags: Vec<String>,
}

/// One (user, vhost) permission entry as listed, with the patterns as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionInfo {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug)]
struct UserEntry {
    hash: PasswordHash,
    outbound_password: Option<String>,
    tags: Vec<String>,
    permissions: HashMap<String, Patterns>,
}

/// The users and permissions the broker enforces. Share it (`Arc`) and change it in
/// place.
pub struct Users {
    users: RwLock<HashMap<String, UserEntry>>,
    generation: AtomicU64,
    /// The generation again, for those who wait for a change (definitions replication).
    changed: tokio::sync::watch::Sender<u64>,
    /// Checked against when the user does not exist, so that case costs a hash too.
    decoy: PasswordHash,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<_> = self.read().keys().cloned().collect();
        users.sort();
        f.debug_struct("Users")
            .field("users", &users)
            .field("generation", &self.generation())
            .finish()
    }
}

impl Default for Users {
    fn default() -> Self {
        Self::new()
    }
}

impl Users {
    /// An empty table: nobody can log in.
    pub fn new() -> Self {
        Users {
            users: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            changed: tokio::sync::watch::channel(0).0,
            decoy: PasswordHash::new("fedamq timing decoy"),
        }
    }

    // The lock is never held across anything that can panic; if it were poisoned the
    // table would still be consistent, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, UserEntry>> {
        self.users.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` under the write lock and bumps the generation if it changed
    /// something (`Ok(true)`). The bump happens before the lock is released, so a reader
    /// that sees the old generation after taking the lock has seen the old table.
    fn change(
        &self,
        change: impl FnOnce(&mut HashMap<String, UserEntry>) -> Result<bool, UserTableError>,
    ) -> Result<(), UserTableError> {
        let mut users: RwLockWriteGuard<'_, _> =
            self.users.write().unwrap_or_else(PoisonError::into_inner);
        if change(&mut users)? {
            let generation = self.generation.fetch_add(1, Ordering::Release) + 1;
            self.changed.send_replace(generation);
        }
        Ok(())
    }

    fn with_user(
        &self,
        name: &str,
        change: impl FnOnce(&mut UserEntry) -> Result<bool, UserTableError>,
    ) -> Result<(), UserTableError> {
        self.change(|users| match users.get_mut(name) {
            Some(entry) => change(entry),
            None => Err(UserTableError::NoSuchUser(name.into())),
        })
    }

    /// A counter bumped by every change to users, passwords, tags or permissions. Read
    /// it *before* a check whose outcome you cache, and check again when it differs.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Follows [`Users::generation`]: wakes on every change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Adds a user with no permissions (`rabbitmqctl add_user`).
    pub fn add_user(
        &self,
        name: &str,
        password_hash: PasswordHash,
        tags: Vec<String>,
    ) -> Result<(), UserTableError> {
        self.change(|users| {
            if users.contains_key(name) {
                return Err(UserTableError::UserExists(name.into()));
            }
            let entry = UserEntry {
                hash: password_hash,
                outbound_password: None,
                tags,
                permissions: HashMap::new(),
            };
            users.insert(name.into(), entry);
            Ok(true)
        })
    }

    /// Removes a user and all their permissions. Their open connections are not closed
    /// here; that is the caller's choice (RabbitMQ closes them).
    pub fn delete_user(&self, name: &str) -> Result<(), UserTableError> {
        self.change(|users| match users.remove(name) {
            Some(_) => Ok(true),
            None => Err(UserTableError::NoSuchUser(name.into())),
        })
    }

    /// Replaces a user's password hash. The outbound password (see
    /// [`outbound_password`](Self::outbound_password)) is a login for elsewhere and is
    /// left as it is.
    pub fn change_password(
        &self,
        name: &str,
        password_hash: PasswordHash,
    ) -> Result<(), UserTableError> {
        self.with_user(name, |u| {
            u.hash = password_hash;
            Ok(true)
        })
    }

    /// Replaces a user's tags (`rabbitmqctl set_user_tags`).
    pub fn set_tags(&self, name: &str, tags: Vec<String>) -> Result<(), UserTableError> {
        self.with_user(name, |u| {
            u.tags = tags;
            Ok(true)
        })
    }

    /// Sets the password a peering sends when it logs in elsewhere as this user (from
    /// `password` in `fedamq.toml`).
    pub fn set_outbound_password(
        &self,
        name: &str,
        password: Option<String>,
    ) -> Result<(), UserTableError> {
        self.with_user(name, |u| {
            u.outbound_password = password;
            Ok(true)
        })
    }

    /// Sets (or replaces) a user's permissions on a vhost. The patterns are checked
    /// first; a bad one changes nothing. Whether the vhost exists is the caller's
    /// concern: the table knows users, not vhosts.
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), UserTableError> {
        let patterns = Patterns::new(configure, write, read)?;
        self.with_user(user, |u| {
            u.permissions.insert(vhost.into(), patterns);
            Ok(true)
        })
    }

    /// Removes a user's permissions on a vhost; nothing to remove is not an error, as in
    /// RabbitMQ.
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<(), UserTableError> {
        self.with_user(user, |u| Ok(u.permissions.remove(vhost).is_some()))
    }

    /// Removes every user's permissions on a vhost: for when the vhost is deleted.
    pub fn clear_vhost(&self, vhost: &str) {
        let _ = self.change(|users| {
            let mut changed = false;
            for u in users.values_mut() {
                changed |= u.permissions.remove(vhost).is_some();
            }
            Ok(changed)
        });
    }

    /// Every user, sorted by name.
    pub fn users(&self) -> Vec<UserInfo> {
        let mut out: Vec<UserInfo> = self
            .read()
            .iter()
            .map(|(name, u)| UserInfo {
                name: name.clone(),
                password_hash: u.hash.clone(),
                tags: u.tags.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// One user, if it exists.
    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.read().get(name).map(|u| UserInfo {
            name: name.into(),
            password_hash: u.hash.clone(),
            tags: u.tags.clone(),
        })
    }

    /// Every permission entry, sorted by user, then vhost.
    pub fn permissions(&self) -> Vec<PermissionInfo> {
        let mut out: Vec<PermissionInfo> = self
            .read()
            .iter()
            .flat_map(|(user, u)| {
                u.permissions.iter().map(|(vhost, p)| PermissionInfo {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    configure: p.pattern(Permission::Configure).into(),
                    write: p.pattern(Permission::Write).into(),
                    read: p.pattern(Permission::Read).into(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.user, &a.vhost).cmp(&(&b.user, &b.vhost)));
        out
    }

    /// Checks a `connection.start-ok` response. Returns the user name on success.
    pub fn authenticate(&self, mechanism: &[u8], response: &[u8]) -> Result<String, AuthError> {
        let login = Credentials::read(mechanism, response)?;
        // A name that is not UTF-8 cannot be a user; it still costs a hash.
        let ok = {
            let users = self.read();
            let entry = std::str::from_utf8(&login.user)
                .ok()
                .and_then(|u| users.get(u));
            match entry {
                Some(e) => e.hash.verify(&login.password),
                None => {
                    std::hint::black_box(self.decoy.verify(&login.password));
                    false
                }
            }
        };
        if ok {
            Ok(login.user_name())
        } else {
            Err(AuthError::InvalidCredentials {
                user: login.user_name(),
                mechanism: login.mechanism,
            })
        }
    }

    /// An EXTERNAL login as `name`, taken from a verified client certificate: the user
    /// must exist; there is no password to check.
    pub fn authenticate_external(&self, name: &str) -> Result<String, AuthError> {
        if self.read().contains_key(name) {
            Ok(name.to_owned())
        } else {
            Err(AuthError::NoCertificateUser(name.to_owned()))
        }
    }

    /// Whether `user` may open `vhost`: they have a permission entry on it (whatever the
    /// patterns). The caller checks that the vhost exists.
    pub fn may_access_vhost(&self, user: &str, vhost: &str) -> bool {
        self.read()
            .get(user)
            .is_some_and(|u| u.permissions.contains_key(vhost))
    }

    /// Whether `user` may do `op` on the exchange or queue named `resource` in `vhost`.
    /// The empty name is the default exchange and is checked as `amq.default`; expand the
    /// empty queue-name shortcut before calling.
    pub fn check(&self, user: &str, vhost: &str, op: Permission, resource: &[u8]) -> bool {
        self.read()
            .get(user)
            .and_then(|u| u.permissions.get(vhost))
            .is_some_and(|p| p.allows(op, resource))
    }

    /// The user's tags (`administrator`, `monitoring`, …); empty for an unknown user.
    pub fn user_tags(&self, user: &str) -> Vec<String> {
        self.read()
            .get(user)
            .map(|u| u.tags.clone())
            .unwrap_or_default()
    }

    /// The password a peering logging in elsewhere as `user` sends: known only for users
    /// configured with `password` (not `password_hash`).
    pub fn outbound_password(&self, user: &str) -> Option<String> {
        self.read().get(user)?.outbound_password.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sasl::tests::amqplain;
    use proptest::prelude::*;

    fn users(perms: &[(&str, &str, &str, &str, &str)]) -> Users {
        let u = Users::new();
        u.add_user(
            "guest",
            PasswordHash::new("guest"),
            vec!["administrator".into()],
        )
        .unwrap();
        u.add_user("bob", PasswordHash::new("s3cret"), vec![])
            .unwrap();
        u.set_outbound_password("bob", Some("s3cret".into()))
            .unwrap();
        for &(user, vhost, configure, write, read) in perms {
            u.set_permissions(user, vhost, configure, write, read)
                .unwrap();
        }
        u
    }

    #[test]
    fn plain_login() {
        let u = users(&[]);
        assert_eq!(
            u.authenticate(b"PLAIN", b"\0guest\0guest"),
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
        assert!(matches!(
            u.authenticate(b"PLAIN", &[0, 0xff, 0, b'x']),
            Err(AuthError::InvalidCredentials { .. })
        ));
    }

    #[test]
    fn amqplain_login() {
        let u = users(&[]);
        let ok = amqplain(&[("LOGIN", "bob".into()), ("PASSWORD", "s3cret".into())]);
        assert_eq!(u.authenticate(b"AMQPLAIN", &ok), Ok("bob".into()));
        let wrong = amqplain(&[("LOGIN", "bob".into()), ("PASSWORD", "guest".into())]);
        assert!(matches!(
            u.authenticate(b"AMQPLAIN", &wrong),
            Err(AuthError::InvalidCredentials { .. })
        ));
        assert!(matches!(
            u.authenticate(b"AMQPLAIN", b""),
            Err(AuthError::BadResponse { .. })
        ));
        assert!(matches!(
            u.authenticate(b"EXTERNAL", b""),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    #[test]
    fn permissions_are_per_user_and_vhost() {
        let u = users(&[
            ("guest", "/", ".*", ".*", ".*"),
            ("bob", "prod", ".*", "", "^q"),
        ]);
        assert!(u.check("guest", "/", Permission::Configure, b"anything"));
        assert!(u.check("guest", "/", Permission::Write, b""));
        assert!(!u.check("guest", "prod", Permission::Read, b"q"));
        assert!(!u.check("bob", "/", Permission::Read, b"q"));
        assert!(u.check("bob", "prod", Permission::Read, b"q"));
        assert!(!u.check("bob", "prod", Permission::Read, b"xq"));
        assert!(!u.check("bob", "prod", Permission::Write, b"q"));
        assert!(!u.check("nobody", "/", Permission::Read, b"q"));
    }

    #[test]
    fn vhost_access_is_having_an_entry() {
        let u = users(&[
            ("guest", "/", ".*", ".*", ".*"),
            ("bob", "prod", "", "", ""),
        ]);
        assert!(u.may_access_vhost("guest", "/"));
        assert!(!u.may_access_vhost("guest", "prod"));
        assert!(u.may_access_vhost("bob", "prod"));
        assert!(!u.may_access_vhost("bob", "/"));
        assert!(!u.may_access_vhost("nobody", "/"));
    }

    #[test]
    fn add_user_then_log_in_and_list() {
        let u = Users::new();
        let g0 = u.generation();
        assert!(u.authenticate(b"PLAIN", b"\0ann\0pw").is_err());
        u.add_user("ann", PasswordHash::new("pw"), vec!["monitoring".into()])
            .unwrap();
        assert!(u.generation() > g0);
        assert_eq!(u.authenticate(b"PLAIN", b"\0ann\0pw"), Ok("ann".into()));
        assert_eq!(
            u.add_user("ann", PasswordHash::new("x"), vec![]),
            Err(UserTableError::UserExists("ann".into()))
        );
        // The refused add changed nothing.
        assert_eq!(u.authenticate(b"PLAIN", b"\0ann\0pw"), Ok("ann".into()));
        u.add_user("adam", PasswordHash::locked(), vec![]).unwrap();
        let listed: Vec<_> = u.users().into_iter().map(|i| i.name).collect();
        assert_eq!(listed, ["adam", "ann"]);
        let ann = u.user("ann").unwrap();
        assert_eq!(ann.tags, ["monitoring"]);
        assert!(ann.password_hash.verify("pw"));
        assert_eq!(u.user("nobody"), None);
    }

    #[test]
    fn delete_user_removes_login_and_permissions() {
        let u = users(&[("bob", "/", ".*", ".*", ".*")]);
        let g = u.generation();
        u.delete_user("bob").unwrap();
        assert!(u.generation() > g);
        assert!(u.authenticate(b"PLAIN", b"\0bob\0s3cret").is_err());
        assert!(!u.check("bob", "/", Permission::Read, b"q"));
        assert!(!u.may_access_vhost("bob", "/"));
        assert!(u.permissions().is_empty());
        assert_eq!(
            u.delete_user("bob"),
            Err(UserTableError::NoSuchUser("bob".into()))
        );
        // Added again, the user starts with no permissions.
        u.add_user("bob", PasswordHash::new("s3cret"), vec![])
            .unwrap();
        assert!(!u.may_access_vhost("bob", "/"));
    }

    #[test]
    fn change_password() {
        let u = users(&[]);
        let g = u.generation();
        u.change_password("bob", PasswordHash::new("new")).unwrap();
        assert!(u.generation() > g);
        assert!(u.authenticate(b"PLAIN", b"\0bob\0s3cret").is_err());
        assert_eq!(u.authenticate(b"PLAIN", b"\0bob\0new"), Ok("bob".into()));
        // The outbound password is a login for elsewhere: unchanged.
        assert_eq!(u.outbound_password("bob").as_deref(), Some("s3cret"));
        assert_eq!(
            u.change_password("nobody", PasswordHash::new("x")),
            Err(UserTableError::NoSuchUser("nobody".into()))
        );
    }

    #[test]
    fn tags() {
        let u = users(&[]);
        assert_eq!(u.user_tags("guest"), ["administrator"]);
        assert!(u.user_tags("bob").is_empty());
        assert!(u.user_tags("nobody").is_empty());
        let g = u.generation();
        u.set_tags("bob", vec!["management".into(), "policymaker".into()])
            .unwrap();
        assert!(u.generation() > g);
        assert_eq!(u.user_tags("bob"), ["management", "policymaker"]);
        assert!(u.set_tags("nobody", vec![]).is_err());
    }

    #[test]
    fn outbound_password() {
        let u = users(&[]);
        assert_eq!(u.outbound_password("bob").as_deref(), Some("s3cret"));
        assert_eq!(u.outbound_password("guest"), None);
        assert_eq!(u.outbound_password("nobody"), None);
        u.set_outbound_password("bob", None).unwrap();
        assert_eq!(u.outbound_password("bob"), None);
    }

    #[test]
    fn set_permissions_replaces_and_bumps() {
        let u = users(&[("bob", "/", ".*", ".*", ".*")]);
        let g = u.generation();
        u.set_permissions("bob", "/", "", "^only$", "").unwrap();
        assert!(u.generation() > g);
        assert!(!u.check("bob", "/", Permission::Write, b"other"));
        assert!(u.check("bob", "/", Permission::Write, b"only"));
        assert_eq!(
            u.permissions(),
            [PermissionInfo {
                user: "bob".into(),
                vhost: "/".into(),
                configure: "".into(),
                write: "^only$".into(),
                read: "".into(),
            }]
        );
        assert_eq!(
            u.set_permissions("nobody", "/", ".*", ".*", ".*"),
            Err(UserTableError::NoSuchUser("nobody".into()))
        );
    }

    #[test]
    fn bad_pattern_is_refused_and_changes_nothing() {
        let u = users(&[("bob", "/", ".*", ".*", ".*")]);
        let g = u.generation();
        let e = u.set_permissions("bob", "/", ".*", ".*", "[").unwrap_err();
        assert!(matches!(e, UserTableError::BadPattern(ref p) if p.permission == Permission::Read));
        assert_eq!(u.generation(), g);
        assert!(u.check("bob", "/", Permission::Read, b"q"));
    }

    #[test]
    fn clear_permissions() {
        let u = users(&[
            ("bob", "/", ".*", ".*", ".*"),
            ("bob", "prod", ".*", ".*", ".*"),
        ]);
        let g = u.generation();
        u.clear_permissions("bob", "/").unwrap();
        assert!(u.generation() > g);
        assert!(!u.may_access_vhost("bob", "/"));
        assert!(!u.check("bob", "/", Permission::Read, b"q"));
        assert!(u.may_access_vhost("bob", "prod"));
        // Nothing to clear: fine, and no change.
        let g = u.generation();
        u.clear_permissions("bob", "/").unwrap();
        assert_eq!(u.generation(), g);
        assert!(u.clear_permissions("nobody", "/").is_err());
    }

    #[test]
    fn clear_vhost() {
        let u = users(&[
            ("bob", "prod", ".*", ".*", ".*"),
            ("guest", "prod", ".*", ".*", ".*"),
            ("guest", "/", ".*", ".*", ".*"),
        ]);
        let g = u.generation();
        u.clear_vhost("prod");
        assert!(u.generation() > g);
        assert!(!u.may_access_vhost("bob", "prod") && !u.may_access_vhost("guest", "prod"));
        assert!(u.may_access_vhost("guest", "/"));
        let g = u.generation();
        u.clear_vhost("prod");
        assert_eq!(u.generation(), g);
    }

    /// Shared between threads: changes made on one are seen by checks on another.
    #[test]
    fn shared_between_threads() {
        let u = std::sync::Arc::new(users(&[]));
        let writer = {
            let u = u.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    u.set_permissions("bob", "/", ".*", &format!("^{i}$"), "")
                        .unwrap();
                }
            })
        };
        for _ in 0..100 {
            let _ = u.check("bob", "/", Permission::Write, b"5");
        }
        writer.join().unwrap();
        assert!(u.check("bob", "/", Permission::Write, b"99"));
        assert!(!u.check("bob", "/", Permission::Write, b"5"));
    }

    proptest! {
        #[test]
        fn any_response_never_panics(mech in prop::sample::select(vec!["PLAIN", "AMQPLAIN", "X"]), resp in prop::collection::vec(any::<u8>(), 0..128)) {
            let u = users(&[]);
            let _ = u.authenticate(mech.as_bytes(), &resp);
        }

        #[test]
        fn login_round_trip(user in "[^\\x00]{0,20}", pass in "[^\\x00]{1,20}") {
            let u = Users::new();
            u.add_user(&user, PasswordHash::new(&pass), vec![]).unwrap();
            let resp = format!("\0{user}\0{pass}");
            prop_assert_eq!(u.authenticate(b"PLAIN", resp.as_bytes()), Ok(user.clone()));
            let resp = amqplain(&[("LOGIN", user.as_str().into()), ("PASSWORD", pass.as_str().into())]);
            prop_assert_eq!(u.authenticate(b"AMQPLAIN", &resp), Ok(user.clone()));
            let resp = format!("\0{user}\0{pass}x");
            prop_assert!(u.authenticate(b"PLAIN", resp.as_bytes()).is_err());
        }
    }
}

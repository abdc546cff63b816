//! Who may open a connection, beyond authentication and vhost access: a gate a feature
//! above the core (the HA pair) installs, asked once per connection at connection.open.
//!
//! The core knows nothing of the features built on it, so it holds the gate as a trait
//! object; with none installed every authenticated login is admitted.

use std::fmt;
use std::sync::{Arc, RwLock};

use super::error::AmqpError;

/// A login asking to open a connection: authenticated, with access to its vhost.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    /// The user's tags (`administrator`, `peering`, …).
    pub tags: &'a [String],
    pub vhost: &'a str,
}

/// Decides whether a login may open its connection. Called on the connection's task
/// during the handshake: it must answer without waiting.
pub trait Admission: Send + Sync {
    /// `Err` refuses the connection with that close (a connection-level reply code).
    fn admit(&self, login: Login<'_>) -> Result<(), AmqpError>;
}

/// The broker's gate: none, or one installed feature's.
#[derive(Default)]
pub struct Gate {
    admission: RwLock<Option<Arc<dyn Admission>>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("installed", &self.current().is_some())
            .finish()
    }
}

impl Gate {
    fn current(&self) -> Option<Arc<dyn Admission>> {
        self.admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs `admission` (replacing any other), or removes it with None.
    pub fn set(&self, admission: Option<Arc<dyn Admission>>) {
        *self.admission.write().unwrap_or_else(|e| e.into_inner()) = admission;
    }

    /// Whether an admission is installed (so a caller can skip gathering a login's
    /// details when none is).
    pub fn installed(&self) -> bool {
        self.current().is_some()
    }

    /// Asks the installed admission, if any.
    pub fn admit(&self, login: Login<'_>) -> Result<(), AmqpError> {
        match self.current() {
            Some(a) => a.admit(login),
            None => Ok(()),
        }
    }
}

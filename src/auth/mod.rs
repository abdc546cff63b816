//! Authentication and authorisation: who may log in, which vhosts they may open, and
//! what they may do to which exchanges and queues.
//!
//! Everything here follows RabbitMQ's internal authentication backend
//! (`rabbit_auth_backend_internal`), so that users, password hashes and permission
//! patterns exported from a RabbitMQ node behave identically here.
//!
//! - [`password`]: salted SHA-256/512 hashes in RabbitMQ's format;
//! - [`base64`]: the encoding those hashes are stored in;
//! - [`sasl`]: the PLAIN and AMQPLAIN login mechanisms and how failures are reported;
//! - [`permissions`]: configure/write/read patterns and which method needs which;
//! - [`users`]: the user table, changed at run time.
//!
//! This module knows nothing of the configuration file: `config` turns what it read
//! into a [`Users`] table with the methods below.

pub mod base64;
pub mod password;
pub mod permissions;
pub mod sasl;
pub mod users;

pub use password::{PasswordHash, PasswordHashError};
pub use permissions::{PatternError, Patterns, Permission, compile_pattern};
pub use sasl::{AuthError, Credentials, MECHANISMS};
pub use users::{PermissionInfo, UserInfo, UserTableError, Users};

//! Definitions: the broker's users, vhosts, permissions, parameters, policies, queues,
//! exchanges and bindings as RabbitMQ's JSON (`rabbitmqctl export_definitions`,
//! `GET/POST /api/definitions`, `load_definitions`), so a RabbitMQ node's export imports
//! here, its users logging in with their passwords, and fedamq's export imports into
//! RabbitMQ.
//!
//! - `format`: the serde types, RabbitMQ's field names;
//! - `args`: arguments between JSON and field tables;
//! - `export`: the broker, or one vhost, as definitions;
//! - `import`: all or nothing: everything is checked before anything changes;
//! - `routes`: `GET/POST /api/definitions[/{vhost}]`.
//!
//! The management API calls [`parse`] on a request body, then [`import`] or
//! [`import_vhost`]; [`DefinitionsError`] has the status and body it answers with.

pub mod args;
pub mod export;
pub mod format;
pub mod import;
pub mod routes;

pub use export::{export, export_vhost};
pub use format::{Definitions, VHostDefinitions};
pub use import::{ImportReport, import, import_vhost};

/// The RabbitMQ version whose definitions format this is (`rabbit_version` in exports:
/// RabbitMQ's import reads it to tell how old a file is).
pub const FORMAT_VERSION: &str = "3.10.8";

/// `product_name` in exports.
pub const PRODUCT_NAME: &str = "fedamq";

/// A definitions file refused, or an import that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionsError {
    /// Not JSON, or a field of the wrong type: the text names the field's path
    /// (`users[1].tags: invalid type: …`).
    #[error("{0}")]
    Malformed(String),
    /// An entry the broker refuses (a bad pattern, hash, argument, a binding to nothing):
    /// the text names the entry.
    #[error("{0}")]
    Invalid(String),
    /// A per-vhost import or export for a vhost that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A change failed while applying, after the checks passed (a client deleted
    /// something the file needs meanwhile).
    #[error("{0}")]
    Failed(String),
}

impl DefinitionsError {
    /// The HTTP status RabbitMQ's management API answers with.
    pub fn status(&self) -> u16 {
        match self {
            DefinitionsError::Malformed(_) | DefinitionsError::Invalid(_) => 400,
            DefinitionsError::NotFound(_) => 404,
            DefinitionsError::Failed(_) => 500,
        }
    }

    /// The `error` field of the management API's error body.
    pub fn error(&self) -> &'static str {
        match self {
            DefinitionsError::Malformed(_) | DefinitionsError::Invalid(_) => "bad_request",
            DefinitionsError::NotFound(_) => "Object Not Found",
            DefinitionsError::Failed(_) => "internal_server_error",
        }
    }

    /// The `reason` field of the management API's error body.
    pub fn reason(&self) -> String {
        match self {
            DefinitionsError::NotFound(_) => "Not Found".into(),
            other => other.to_string(),
        }
    }
}

/// Reads a definitions file; a type error names the field's path.
pub fn parse(json: &[u8]) -> Result<Definitions, DefinitionsError> {
    super::body::read_json(json).map_err(DefinitionsError::Malformed)
}

//! Policies, operator policies and runtime parameters: settings an operator attaches to
//! a vhost's queues and exchanges by name pattern, changed at run time, as RabbitMQ has
//! them (`set_policy`, `set_operator_policy`, `set_parameter`).
//!
//! This folder is the data and RabbitMQ's rules: checking a policy (`definition`),
//! choosing the policy of an object and combining it with an operator policy and a
//! queue's own arguments (`effective`), the per-vhost store (`store`) and the runtime
//! parameters (`parameters`). Setting and clearing go through the vhost
//! (`VHost::set_policy` … in `topology::policy`), under its topology lock, which applies
//! the change to the existing queues at once and announces it to topology subscribers.

pub mod definition;
pub mod effective;
pub mod parameters;
pub mod store;

pub use definition::{ApplyTo, ObjectKind, Policy, PolicyDefinition, PolicyKind, PolicySettings};
pub use effective::EffectivePolicy;
pub use parameters::Parameter;
pub use store::VHostPolicies;

/// A refused policy or parameter change, or a lookup of something that is not there.
/// [`status`](Self::status), [`error`](Self::error) and [`reason`](Self::reason) are the
/// management API's answer, as RabbitMQ gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// 404: no such vhost, policy or parameter.
    #[error("{0}")]
    NotFound(String),
    /// 400: the value fails validation; the text is the validator's.
    #[error("Validation failed\n\n{0}\n")]
    Validation(String),
}

impl PolicyError {
    pub fn validation(text: impl Into<String>) -> PolicyError {
        PolicyError::Validation(text.into())
    }

    pub fn vhost_not_found(vhost: &str) -> PolicyError {
        PolicyError::NotFound(format!("no vhost '{vhost}'"))
    }

    /// The HTTP status RabbitMQ's management API answers with.
    pub fn status(&self) -> u16 {
        match self {
            PolicyError::NotFound(_) => 404,
            PolicyError::Validation(_) => 400,
        }
    }

    /// The `error` field of the management API's error body.
    pub fn error(&self) -> &'static str {
        match self {
            PolicyError::NotFound(_) => "Object Not Found",
            PolicyError::Validation(_) => "bad_request",
        }
    }

    /// The `reason` field of the management API's error body.
    pub fn reason(&self) -> String {
        match self {
            PolicyError::NotFound(_) => "Not Found".into(),
            PolicyError::Validation(_) => self.to_string(),
        }
    }
}

//! The pair's gate on new connections (installed in the broker core's admission, see
//! [`crate::broker::admission`]): peering and administrator logins always get in;
//! every other login is a client request, admitted only while this member is active
//! (or when it makes a passive member take over).

use std::sync::Weak;

use super::node::Node;
use crate::broker::admission::{Admission, Login};
use crate::broker::error::AmqpError;
use crate::tunnel::PEERING_TAG;

/// Tags whose logins are never refused: the pair's own exchange and operators.
const ALWAYS_ADMITTED: [&str; 2] = [PEERING_TAG, "administrator"];

pub(super) struct Gate(pub Weak<Node>);

impl Admission for Gate {
    fn admit(&self, login: Login<'_>) -> Result<(), AmqpError> {
        if login
            .tags
            .iter()
            .any(|t| ALWAYS_ADMITTED.contains(&t.as_str()))
        {
            return Ok(());
        }
        match self.0.upgrade() {
            Some(node) => node.client_request(),
            None => Ok(()),
        }
    }
}

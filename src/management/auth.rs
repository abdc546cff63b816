//! Who is calling: HTTP basic auth checked against the broker's users, and RabbitMQ's
//! rules for what each user tag may see and do.
//!
//! - `management`: the objects of the vhosts the user has permissions on;
//! - `policymaker`: as management, plus policies and parameters of those vhosts (and
//!   global parameters); operator policies are for administrators only;
//! - `monitoring`: as management, plus reading every vhost's objects, connections and
//!   channels, and the node;
//! - `administrator`: everything, and alone definitions.
//!
//! A user with none of these tags may not use the API at all. Paths naming a vhost
//! need the user to have permissions on it, whatever the tags (as RabbitMQ 3.10).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::Api;
use super::error::{ApiError, ApiResult};
use crate::auth::{Permission, base64};

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
    api: Arc<Api>,
}

/// The user tags RabbitMQ's management API knows, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Administrator,
    Monitoring,
    Policymaker,
    Management,
}

impl Tag {
    fn name(self) -> &'static str {
        match self {
            Tag::Administrator => "administrator",
            Tag::Monitoring => "monitoring",
            Tag::Policymaker => "policymaker",
            Tag::Management => "management",
        }
    }

    /// The tags that include this one.
    fn holders(self) -> &'static [Tag] {
        match self {
            Tag::Administrator => &[Tag::Administrator],
            Tag::Monitoring => &[Tag::Administrator, Tag::Monitoring],
            Tag::Policymaker => &[Tag::Administrator, Tag::Policymaker],
            Tag::Management => &[
                Tag::Administrator,
                Tag::Monitoring,
                Tag::Policymaker,
                Tag::Management,
            ],
        }
    }

    fn refusal(self) -> ApiError {
        ApiError::not_authorised(match self {
            Tag::Administrator => "Not administrator user",
            Tag::Monitoring => "Not monitor user",
            Tag::Policymaker => "Not policymaker user",
            Tag::Management => "Not management user",
        })
    }
}

impl Caller {
    pub fn has(&self, tag: Tag) -> bool {
        tag.holders()
            .iter()
            .any(|t| self.tags.iter().any(|have| have == t.name()))
    }

    /// The user must hold `tag` (or a stronger one).
    pub fn require(&self, tag: Tag) -> ApiResult<()> {
        if self.has(tag) {
            Ok(())
        } else {
            Err(tag.refusal())
        }
    }

    /// Whether the user may see objects of every vhost (monitoring, administrator).
    pub fn sees_all(&self) -> bool {
        self.has(Tag::Monitoring)
    }

    /// Whether listings show `vhost`'s objects to this user.
    pub fn sees_vhost(&self, vhost: &str) -> bool {
        self.sees_all() || self.may_access(vhost)
    }

    pub fn may_access(&self, vhost: &str) -> bool {
        self.api.broker.users().may_access_vhost(&self.name, vhost)
    }

    /// For a path naming `vhost`: it must exist (404) and the user may use it (401).
    pub fn vhost(&self, vhost: &str) -> ApiResult<Arc<crate::broker::vhost::VHost>> {
        let v = self
            .api
            .broker
            .vhost(vhost)
            .ok_or_else(ApiError::not_found)?;
        if !self.may_access(vhost) {
            return Err(ApiError::no_vhost_access());
        }
        Ok(v)
    }

    /// As [`vhost`](Self::vhost), for a change: a missing vhost is RabbitMQ's
    /// `vhost_not_found` rather than a plain 404.
    pub fn vhost_for_change(&self, vhost: &str) -> ApiResult<Arc<crate::broker::vhost::VHost>> {
        self.vhost(vhost).map_err(|e| {
            if e == ApiError::not_found() {
                ApiError::vhost_not_found()
            } else {
                e
            }
        })
    }

    /// Policies and parameters: administrators change them anywhere, policymakers in the
    /// vhosts they have permissions on (`None`: not naming a vhost).
    pub fn policymaker_for(&self, vhost: Option<&str>) -> ApiResult<()> {
        let allowed = self.has(Tag::Administrator)
            || (self.has(Tag::Policymaker) && vhost.is_none_or(|v| self.may_access(v)));
        if allowed {
            Ok(())
        } else {
            Err(ApiError::not_authorised(
                "User not authorised to access object",
            ))
        }
    }

    /// Whether a list of policies or parameters shows `vhost`'s: administrators see
    /// every vhost's, others those they have permissions on.
    pub fn lists_policies_of(&self, vhost: &str) -> bool {
        self.has(Tag::Administrator) || self.may_access(vhost)
    }

    /// The AMQP permission `op` on the exchange or queue `name` (`""` is the default
    /// exchange), as a client would need for the same change.
    pub fn check(&self, vhost: &str, op: Permission, name: &str) -> ApiResult<()> {
        let resource: &[u8] = if name.is_empty() {
            b"amq.default"
        } else {
            name.as_bytes()
        };
        if self
            .api
            .broker
            .users()
            .check(&self.name, vhost, op, resource)
        {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Access refused."))
        }
    }
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> ApiResult<Caller> {
        let (user, password) = basic_credentials(parts).ok_or_else(ApiError::challenge)?;
        let mut response = Vec::with_capacity(user.len() + password.len() + 2);
        response.push(0);
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.extend_from_slice(&password);
        let users = api.broker.users();
        let name = users
            .authenticate(b"PLAIN", &response)
            .map_err(|_| ApiError::login_failed())?;
        let caller = Caller {
            tags: users.user_tags(&name),
            name,
            api: api.clone(),
        };
        caller.require(Tag::Management)?;
        Ok(caller)
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(parts: &Parts) -> Option<(String, Vec<u8>)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::decode(encoded.trim())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

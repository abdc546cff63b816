//! What a link writes into messages and bindings so that federated brokers never loop:
//! RabbitMQ's `x-received-from` entry on each message brought down, and the
//! `x-bound-from` entry on each binding mirrored up.
//!
//! Bindings travel against the messages: a binding goes up at most as far as messages
//! could come down, so each hop records its cluster, vhost and exchange and the hops
//! left (`min(previous - 1, this link's max-hops)`); at 0, or back at a cluster already
//! in the list, the binding goes no further.

use bytes::Bytes;

use crate::broker::routing::upstream::{RECEIVED_FROM, already_seen};
use crate::protocol::generated::properties::EncodedBasicProperties;
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// The header a mirrored binding carries (RabbitMQ's name).
pub const BOUND_FROM: &str = "x-bound-from";

fn text(s: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()))
}

fn key(s: &'static str) -> ShortString {
    ShortString::from_static(s)
}

/// Where a message came from, as its `x-received-from` entry says it.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The upstream's URI without credentials.
    pub uri: String,
    pub exchange: String,
    /// The upstream's cluster name (its `cluster_name` server property), if it said.
    pub cluster_name: Option<String>,
    pub vhost: String,
}

/// Prepends this hop's entry to `headers`' `x-received-from` (made if absent).
pub fn prepend_received_from(headers: &mut FieldTable, origin: &Origin, redelivered: bool) {
    let mut entry = FieldTable::new();
    entry.insert(key("uri"), text(&origin.uri));
    entry.insert(key("exchange"), text(&origin.exchange));
    entry.insert(key("redelivered"), FieldValue::Bool(redelivered));
    if let Some(c) = &origin.cluster_name {
        entry.insert(key("cluster-name"), text(c));
    }
    entry.insert(key("vhost"), text(&origin.vhost));
    prepend(headers, RECEIVED_FROM, entry);
}

/// Prepends an entry for a message forwarded up from this node (publisher, locator,
/// service mode): the upstream's `x-federation-upstream` exchanges then never send it
/// back here, and `max-hops` counts the hop.
pub fn prepend_forwarded_from(
    headers: &mut FieldTable,
    cluster_name: &str,
    vhost: &str,
    exchange: &str,
) {
    let mut entry = FieldTable::new();
    entry.insert(key("exchange"), text(exchange));
    entry.insert(key("redelivered"), FieldValue::Bool(false));
    entry.insert(key("cluster-name"), text(cluster_name));
    entry.insert(key("vhost"), text(vhost));
    prepend(headers, RECEIVED_FROM, entry);
}

/// A forward's properties as it is sent again after the upstream connection was lost
/// (the peering's [`MarkResent`](crate::peering::MarkResent)): `redelivered` set in its
/// `x-received-from` entry, the first (see [`prepend_forwarded_from`]), as a message
/// brought down again is flagged, so a copy the upstream got twice is told apart.
pub fn mark_forward_resent(properties: &EncodedBasicProperties) -> EncodedBasicProperties {
    let mut p = properties.to_properties();
    let Some(headers) = p.headers.as_mut() else {
        return properties.clone();
    };
    let Some(FieldValue::Array(mut hops)) = headers.remove(RECEIVED_FROM) else {
        return properties.clone();
    };
    if let Some(FieldValue::Table(ours)) = hops.first_mut() {
        ours.insert(key("redelivered"), FieldValue::Bool(true));
    }
    headers.insert(key(RECEIVED_FROM), FieldValue::Array(hops));
    EncodedBasicProperties::encode(&p)
}

fn prepend(table: &mut FieldTable, name: &'static str, entry: FieldTable) {
    let mut list = vec![FieldValue::Table(entry)];
    if let Some(FieldValue::Array(old)) = table.remove(name) {
        list.extend(old);
    }
    table.insert(key(name), FieldValue::Array(list));
}

/// Who this link is, for the `x-bound-from` entries of the bindings it mirrors.
#[derive(Debug, Clone)]
pub struct BindingHop<'a> {
    /// This node's cluster name.
    pub cluster_name: &'a str,
    pub vhost: &'a str,
    /// `"<vhost>:<exchange> <suffix>"`, as RabbitMQ names the downstream.
    pub exchange: &'a str,
    pub max_hops: i64,
    /// The upstream's cluster name and vhost: a binding that came from there goes no
    /// further.
    pub upstream_cluster: Option<&'a str>,
    pub upstream_vhost: &'a str,
}

/// The arguments a local binding is mirrored upstream with, or `None` when it must not
/// go up (no hops left, or it came from the upstream).
pub fn bound_from(arguments: &FieldTable, hop: &BindingHop<'_>) -> Option<FieldTable> {
    let hops = match arguments.get(BOUND_FROM) {
        None => hop.max_hops,
        Some(FieldValue::Array(all)) => {
            if already_seen(
                all,
                hop.upstream_cluster.map(str::as_bytes),
                Some(hop.upstream_vhost.as_bytes()),
            ) {
                0
            } else {
                let previous = all
                    .first()
                    .and_then(FieldValue::as_table)
                    .and_then(|t| t.get("hops"))
                    .and_then(FieldValue::as_i64)
                    .unwrap_or(0);
                (previous - 1).min(hop.max_hops)
            }
        }
        Some(_) => hop.max_hops,
    };
    if hops <= 0 {
        return None;
    }
    let mut entry = FieldTable::new();
    entry.insert(key("cluster-name"), text(hop.cluster_name));
    entry.insert(key("vhost"), text(hop.vhost));
    entry.insert(key("exchange"), text(hop.exchange));
    entry.insert(
        key("hops"),
        FieldValue::I16(i16::try_from(hops).unwrap_or(i16::MAX)),
    );
    let mut args = arguments.clone();
    prepend(&mut args, BOUND_FROM, entry);
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::generated::properties::BasicProperties;

    fn hop(max_hops: i64) -> BindingHop<'static> {
        BindingHop {
            cluster_name: "down",
            vhost: "/",
            exchange: "/:x A",
            max_hops,
            upstream_cluster: Some("up"),
            upstream_vhost: "/",
        }
    }

    #[test]
    fn received_from_is_prepended() {
        let mut h = FieldTable::new();
        let origin = |c: &str| Origin {
            uri: "amqp://h".into(),
            exchange: "x".into(),
            cluster_name: Some(c.into()),
            vhost: "/".into(),
        };
        prepend_received_from(&mut h, &origin("a"), false);
        prepend_received_from(&mut h, &origin("b"), true);
        let list = h.get(RECEIVED_FROM).and_then(FieldValue::as_array).unwrap();
        assert_eq!(list.len(), 2);
        let first = list[0].as_table().unwrap();
        assert_eq!(
            first.get("cluster-name").and_then(FieldValue::as_str),
            Some("b")
        );
        assert_eq!(first.get("redelivered"), Some(&FieldValue::Bool(true)));
    }

    #[test]
    fn a_resent_forward_is_flagged_redelivered() {
        let mut h = FieldTable::new();
        h.insert(key("app"), text("kept"));
        prepend_received_from(
            &mut h,
            &Origin {
                uri: "amqp://far".into(),
                exchange: "x".into(),
                cluster_name: Some("far".into()),
                vhost: "/".into(),
            },
            false,
        );
        prepend_forwarded_from(&mut h, "down", "/", "x");
        let sent = EncodedBasicProperties::encode(&BasicProperties {
            headers: Some(h),
            ..Default::default()
        });
        let again = mark_forward_resent(&mark_forward_resent(&sent));
        let h = again.to_properties().headers.unwrap();
        assert_eq!(h.get("app").and_then(FieldValue::as_str), Some("kept"));
        let hops = h.get(RECEIVED_FROM).and_then(FieldValue::as_array).unwrap();
        let flag = |i: usize| hops[i].as_table().unwrap().get("redelivered").cloned();
        assert_eq!(hops.len(), 2);
        // Ours is flagged; the hop before keeps what it said.
        assert_eq!(flag(0), Some(FieldValue::Bool(true)));
        assert_eq!(flag(1), Some(FieldValue::Bool(false)));
        // Without an entry there is nothing to flag.
        let plain = EncodedBasicProperties::encode(&BasicProperties::default());
        assert_eq!(mark_forward_resent(&plain).as_bytes(), plain.as_bytes());
    }

    #[test]
    fn bindings_go_no_further_than_messages_could_come() {
        let plain = FieldTable::new();
        let once = bound_from(&plain, &hop(2)).unwrap();
        let entry = once.get(BOUND_FROM).and_then(FieldValue::as_array).unwrap()[0]
            .as_table()
            .unwrap()
            .clone();
        assert_eq!(entry.get("hops").and_then(FieldValue::as_i64), Some(2));
        // The next hop has one left, the one after none.
        let twice = bound_from(&once, &hop(5)).unwrap();
        let hops = twice
            .get(BOUND_FROM)
            .and_then(FieldValue::as_array)
            .unwrap();
        assert_eq!(hops.len(), 2);
        assert_eq!(
            hops[0]
                .as_table()
                .unwrap()
                .get("hops")
                .and_then(FieldValue::as_i64),
            Some(1)
        );
        assert!(bound_from(&twice, &hop(5)).is_none());
        // A binding that came from the upstream does not go back to it.
        let mut from_up = FieldTable::new();
        let mut e = FieldTable::new();
        e.insert(key("cluster-name"), text("up"));
        e.insert(key("vhost"), text("/"));
        e.insert(key("hops"), FieldValue::I16(5));
        prepend(&mut from_up, BOUND_FROM, e);
        assert!(bound_from(&from_up, &hop(5)).is_none());
    }
}

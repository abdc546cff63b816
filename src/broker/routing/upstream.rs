//! The `x-federation-upstream` exchange's rule: which messages a downstream gets.
//!
//! A federation link (RabbitMQ's, or fedamq's own in `crate::federation`) declares on
//! its upstream an internal exchange of this type, bound from the federated exchange
//! and to the link's upstream queue. Its arguments name the downstream
//! (`x-downstream-name`: its cluster name, `x-downstream-vhost`) and how far a message
//! may travel (`x-max-hops`). Every hop prepends an entry to the message's
//! `x-received-from` header, so the exchange forwards a message only while it has made
//! fewer than `x-max-hops` hops and has never been through the downstream: a message
//! never goes back where it came from, however the brokers are linked. The link checks
//! the same rule again when a message arrives, for upstreams without this type.

use crate::protocol::{FieldTable, FieldValue};

/// The header each hop prepends an entry to (RabbitMQ's name).
pub const RECEIVED_FROM: &str = "x-received-from";
pub const MAX_HOPS_ARG: &str = "x-max-hops";
pub const DOWNSTREAM_NAME_ARG: &str = "x-downstream-name";
pub const DOWNSTREAM_VHOST_ARG: &str = "x-downstream-vhost";

/// Whether a message with `headers` should go on to the downstream named
/// `downstream` (cluster name) and `vhost`: fewer than `max_hops` entries in
/// `x-received-from` and none of them from that downstream. `None` for a name or vhost
/// matches no entry (RabbitMQ's `unknown`, from links too old to say).
pub fn should_forward(
    headers: Option<&FieldTable>,
    max_hops: i64,
    downstream: Option<&[u8]>,
    vhost: Option<&[u8]>,
) -> bool {
    let Some(FieldValue::Array(hops)) = headers.and_then(|h| h.get(RECEIVED_FROM)) else {
        return true;
    };
    (hops.len() as i64) < max_hops && !already_seen(hops, downstream, vhost)
}

/// Whether an entry of `hops` (an `x-received-from` or `x-bound-from` array) names
/// this cluster and vhost.
pub fn already_seen(hops: &[FieldValue], cluster: Option<&[u8]>, vhost: Option<&[u8]>) -> bool {
    let (Some(cluster), Some(vhost)) = (cluster, vhost) else {
        return false;
    };
    hops.iter().filter_map(FieldValue::as_table).any(|entry| {
        entry.get("cluster-name").and_then(FieldValue::as_bytes) == Some(cluster)
            && entry.get("vhost").and_then(FieldValue::as_bytes) == Some(vhost)
    })
}

/// The rule as an exchange of this type applies it, from its declared arguments.
/// RabbitMQ requires `x-max-hops`; without it nothing is forwarded.
pub fn forwards(arguments: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let Some(max_hops) = arguments.get(MAX_HOPS_ARG).and_then(FieldValue::as_i64) else {
        return false;
    };
    let name = arguments
        .get(DOWNSTREAM_NAME_ARG)
        .and_then(FieldValue::as_bytes);
    let vhost = arguments
        .get(DOWNSTREAM_VHOST_ARG)
        .and_then(FieldValue::as_bytes);
    should_forward(headers, max_hops, name, vhost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortString;
    use bytes::Bytes;

    fn s(v: &'static str) -> FieldValue {
        FieldValue::LongString(Bytes::from_static(v.as_bytes()))
    }

    fn hop(cluster: &'static str, vhost: &'static str) -> FieldValue {
        let mut t = FieldTable::new();
        t.insert(ShortString::from_static("cluster-name"), s(cluster));
        t.insert(ShortString::from_static("vhost"), s(vhost));
        FieldValue::Table(t)
    }

    fn headers(hops: Vec<FieldValue>) -> FieldTable {
        let mut h = FieldTable::new();
        h.insert(
            ShortString::from_static(RECEIVED_FROM),
            FieldValue::Array(hops),
        );
        h
    }

    #[test]
    fn forwards_until_max_hops_and_never_back_to_a_downstream_seen() {
        let (b, root) = (Some(&b"b"[..]), Some(&b"/"[..]));
        assert!(should_forward(None, 1, b, root));
        assert!(!should_forward(
            Some(&headers(vec![hop("a", "/")])),
            1,
            b,
            root
        ));
        assert!(should_forward(
            Some(&headers(vec![hop("a", "/")])),
            2,
            b,
            root
        ));
        assert!(!should_forward(
            Some(&headers(vec![hop("b", "/")])),
            5,
            b,
            root
        ));
        assert!(should_forward(
            Some(&headers(vec![hop("b", "v")])),
            5,
            b,
            root
        ));
        // An unknown downstream matches nothing.
        assert!(should_forward(
            Some(&headers(vec![hop("b", "/")])),
            5,
            None,
            root
        ));

        let mut args = FieldTable::new();
        assert!(!forwards(&args, None), "x-max-hops is required");
        args.insert(ShortString::from_static(MAX_HOPS_ARG), FieldValue::I32(2));
        args.insert(ShortString::from_static(DOWNSTREAM_NAME_ARG), s("b"));
        args.insert(ShortString::from_static(DOWNSTREAM_VHOST_ARG), s("/"));
        assert!(forwards(&args, Some(&headers(vec![hop("a", "/")]))));
        assert!(!forwards(&args, Some(&headers(vec![hop("b", "/")]))));
    }
}

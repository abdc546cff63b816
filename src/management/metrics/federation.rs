//! Each federation link's state and counters in `/metrics`, labelled `vhost`,
//! `exchange` and `upstream` (RabbitMQ's plugin exports none: the names are fedamq's).
//! The state is one series per possible state, 1 for the link's current one, so that
//! an alert can match `state="blocked"` without knowing the encoding.

use super::exposition::{Exposition, Kind};
use crate::federation::status::LinkCounters;
use crate::federation::{LinkState, LinkStatus};

/// Every state a link can show, in the order they are exported.
const STATES: [LinkState; 7] = [
    LinkState::Starting,
    LinkState::Running,
    LinkState::Flow,
    LinkState::Blocked,
    LinkState::Backoff,
    LinkState::Error,
    LinkState::Stopped,
];

type Field = fn(&LinkCounters) -> u64;

/// The links' families (none when there is no link).
pub(super) fn render(e: &mut Exposition, links: &[LinkStatus]) {
    if links.is_empty() {
        return;
    }
    let labels = |l: &LinkStatus| {
        [
            ("vhost", l.vhost.clone()),
            ("exchange", l.exchange.clone()),
            ("upstream", l.upstream.clone()),
        ]
    };
    let name = "fedamq_federation_link_state";
    e.family(
        name,
        Kind::Gauge,
        "Federation link state: 1 for the state the link is in, 0 for the others",
    );
    for l in links {
        let base = labels(l);
        for state in STATES {
            let mut with: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
            with.push(("state", state.as_str()));
            e.sample(name, &with, u8::from(l.state == state));
        }
    }
    let families: [(&str, Kind, &str, Field); 13] = [
        (
            "fedamq_federation_link_messages_received_total",
            Kind::Counter,
            "Messages the link received from its upstream",
            |c| c.received,
        ),
        (
            "fedamq_federation_link_messages_acked_total",
            Kind::Counter,
            "Messages the link settled upstream",
            |c| c.acked,
        ),
        (
            "fedamq_federation_link_messages_redelivered_total",
            Kind::Counter,
            "Messages the upstream delivered to the link again",
            |c| c.redelivered,
        ),
        (
            "fedamq_federation_link_messages_dropped_total",
            Kind::Counter,
            "Messages the link dropped for loop prevention or max-hops",
            |c| c.dropped,
        ),
        (
            "fedamq_federation_link_messages_in_flight",
            Kind::Gauge,
            "Messages received and not yet settled upstream",
            |c| c.received.saturating_sub(c.acked + c.dropped),
        ),
        (
            "fedamq_federation_link_messages_forwarded_total",
            Kind::Counter,
            "Local publishes the link forwarded up and the upstream confirmed",
            |c| c.forwarded,
        ),
        (
            "fedamq_federation_link_messages_forward_failed_total",
            Kind::Counter,
            "Forwards the upstream refused",
            |c| c.forward_failed,
        ),
        (
            "fedamq_federation_link_messages_forward_resent_total",
            Kind::Counter,
            "Forwards sent again after the upstream connection was lost",
            |c| c.resent,
        ),
        (
            "fedamq_federation_link_messages_returned_total",
            Kind::Counter,
            "Forwards the upstream returned, handed to their publishers",
            |c| c.returned,
        ),
        (
            "fedamq_federation_link_returns_lost_total",
            Kind::Counter,
            "Returns whose publisher had gone",
            |c| c.returns_lost,
        ),
        (
            "fedamq_federation_link_reconnects_total",
            Kind::Counter,
            "Times the link connected again after its first connection",
            |c| c.connects.saturating_sub(1),
        ),
        (
            "fedamq_federation_link_bindings",
            Kind::Gauge,
            "Bindings the link mirrors upstream",
            |c| c.bindings,
        ),
        (
            "fedamq_federation_link_bindings_pending",
            Kind::Gauge,
            "Binding changes sent upstream and not yet answered",
            |c| c.bindings_pending,
        ),
    ];
    for (name, kind, help, field) in families {
        e.family(name, kind, help);
        for l in links {
            let base = labels(l);
            let with: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.sample(name, &with, field(&l.counters));
        }
    }
}

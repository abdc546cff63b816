//! Dead-lettering: the message a queue republishes to its dead-letter exchange, with the
//! `x-death` history RabbitMQ writes, and RabbitMQ's rule for dropping dead-letter cycles.
//!
//! Consumers of dead-letter queues read these headers (retry counters, routing by
//! `x-first-death-reason` on a headers exchange), so they must look exactly as RabbitMQ
//! writes them. Pure functions: the caller supplies the time and publishes the result.
//!
//! # What is written (RabbitMQ 3.13+, compatible with 3.12)
//!
//! - `x-death`: an array of tables, one per (queue, reason), most recent first. A new
//!   entry is `[original-expiration,] count, reason, queue, time, exchange, routing-keys`
//!   in that order (3.13+'s order), with types long, longstr, longstr, timestamp
//!   (seconds), longstr, array of longstr, and `original-expiration` a longstr present
//!   when the message had a per-message `expiration`. `exchange` and `routing-keys` are
//!   those the message was published with (routing key plus `CC`, never `BCC`). Dying
//!   again in the same queue for the same reason increments that entry's `count` and
//!   moves it to the front; its `time`, `exchange` and `routing-keys` stay those of the
//!   first such death (RabbitMQ keeps the first time in both 3.12 and 3.13).
//! - `x-first-death-reason` / `-queue` / `-exchange`: set when the message had no
//!   `x-death` yet (3.12 and 3.13).
//! - `x-last-death-reason` / `-queue` / `-exchange`: set on every death. New in 3.13;
//!   3.12 did not write them.
//! - The `expiration` property is removed, so the message does not expire again wherever
//!   it is routed. With a dead-letter routing key the `CC` header is removed (only that
//!   key routes the message); `BCC` is always removed. See the RabbitMQ DLX guide.
//! - The headers come out sorted by name: RabbitMQ rewrites the table with
//!   `rabbit_misc:set_table_value`, which sorts it (3.12), and 3.13 sorts and de-duplicates
//!   it when it adds the death headers. Duplicate names keep the first.
//!
//! The history is read back from the message's own `x-death` header, so a message a
//! client consumed from a dead-letter queue and republished with its headers keeps
//! counting. That is 3.12's behaviour and that of 3.13.3+ (which re-interprets the header
//! for AMQP 0-9-1 clients, rabbitmq-server#11339); 4.0 stopped doing so. An `x-death`
//! that is not an array is replaced, as 3.12 does.

use bytes::Bytes;

use super::message::Message;
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `basic.reject` / `basic.nack` with `requeue = false`.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped (or refused under `reject-publish-dlx`) by a length limit.
    MaxLen,
    /// Returned more often than the delivery limit allows.
    DeliveryLimit,
}

impl Reason {
    /// The name RabbitMQ writes in `x-death` and the death headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::MaxLen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

const X_DEATH: &str = "x-death";
const COUNT: &str = "count";
const REASON: &str = "reason";
const QUEUE: &str = "queue";
const TIME: &str = "time";
const EXCHANGE: &str = "exchange";
const ROUTING_KEYS: &str = "routing-keys";
const ORIGINAL_EXPIRATION: &str = "original-expiration";

fn key(s: &'static str) -> ShortString {
    ShortString::from_static(s)
}

fn longstr(b: &[u8]) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(b))
}

/// The octets of a long string (or byte array) value.
fn bytes_of(v: Option<&FieldValue>) -> Option<&[u8]> {
    v.and_then(FieldValue::as_bytes)
}

/// Builds the message to publish to the dead-letter exchange `dlx` for `message` dying
/// in `queue` for `reason`: routed with `dlrk` if the queue has one, else with the
/// original routing key; headers and properties changed as the module documentation
/// says. `now_unix_secs` stamps the `x-death` entry.
pub fn dead_letter(
    message: &Message,
    queue: &ShortString,
    reason: Reason,
    dlx: &ShortString,
    dlrk: Option<&ShortString>,
    now_unix_secs: u64,
) -> Message {
    let mut props = message.properties().to_properties();
    let mut headers = props.headers.take().unwrap_or_default();

    // 3.13 writes the parsed TTL back as decimal; an unparsable one (which a publish
    // would have refused) is kept as sent, as 3.12 does.
    let original_expiration = props
        .expiration
        .take()
        .map(|raw| match message.expiration_ms() {
            Some(ms) => Bytes::from(ms.to_string()),
            None => raw.into_bytes(),
        });

    let exchange_name = message.exchange();
    let exchange = exchange_name.as_bytes();
    let reason_text = reason.as_str().as_bytes();
    let routing_keys = death_routing_keys(message, &headers);
    let fresh = || {
        Death {
            original_expiration: original_expiration.clone().map(FieldValue::LongString),
            count: 1,
            reason: longstr(reason_text),
            queue: longstr(queue.as_bytes()),
            time: FieldValue::Timestamp(now_unix_secs),
            exchange: longstr(exchange),
            routing_keys: FieldValue::Array(
                routing_keys
                    .iter()
                    .cloned()
                    .map(FieldValue::LongString)
                    .collect(),
            ),
        }
        .into_table()
    };

    let deaths = match headers.get(X_DEATH) {
        None => {
            for (k, v) in [
                ("x-first-death-reason", reason_text),
                ("x-first-death-queue", queue.as_bytes()),
                ("x-first-death-exchange", exchange),
            ] {
                headers.insert(key(k), longstr(v));
            }
            vec![fresh()]
        }
        Some(FieldValue::Array(existing)) => {
            let mut deaths = group_by_queue_and_reason(existing);
            let same = deaths.iter().position(|d| {
                d.as_table().is_some_and(|t| {
                    bytes_of(t.get(QUEUE)) == Some(queue.as_bytes())
                        && bytes_of(t.get(REASON)) == Some(reason_text)
                })
            });
            let front = match same {
                Some(i) => {
                    let old = deaths.remove(i);
                    match old.as_table() {
                        Some(t) => Death::again(t, &fresh()),
                        None => fresh(),
                    }
                }
                None => fresh(),
            };
            deaths.insert(0, front);
            deaths
        }
        // Some client rewrote it (e.g. as a string): start again, as RabbitMQ does.
        Some(_) => vec![fresh()],
    };
    headers.insert(key(X_DEATH), FieldValue::Array(deaths));
    for (k, v) in [
        ("x-last-death-reason", reason_text),
        ("x-last-death-queue", queue.as_bytes()),
        ("x-last-death-exchange", exchange),
    ] {
        headers.insert(key(k), longstr(v));
    }
    if dlrk.is_some() {
        while headers.remove("CC").is_some() {}
    }
    while headers.remove("BCC").is_some() {}
    props.headers = Some(sorted(headers));

    Message::new(
        dlx.clone(),
        dlrk.cloned().unwrap_or_else(|| message.routing_key()),
        props,
        message.body_bytes(),
    )
}

/// The routing keys recorded in `x-death`: the one published with, then the `CC` ones
/// (RabbitMQ records CC but never BCC).
fn death_routing_keys(message: &Message, headers: &FieldTable) -> Vec<Bytes> {
    let mut keys = vec![message.routing_key().into_bytes()];
    if let Some(FieldValue::Array(cc)) = headers.get("CC") {
        keys.extend(cc.iter().filter_map(|v| match v {
            FieldValue::LongString(b) => Some(b.clone()),
            _ => None,
        }));
    }
    keys
}

/// One `x-death` entry.
struct Death {
    original_expiration: Option<FieldValue>,
    count: i64,
    reason: FieldValue,
    queue: FieldValue,
    time: FieldValue,
    exchange: FieldValue,
    routing_keys: FieldValue,
}

impl Death {
    /// In 3.13's order: original-expiration first when present.
    fn into_table(self) -> FieldValue {
        let mut t = FieldTable::with_capacity(7);
        if let Some(e) = self.original_expiration {
            t.insert(key(ORIGINAL_EXPIRATION), e);
        }
        t.insert(key(COUNT), FieldValue::I64(self.count));
        t.insert(key(REASON), self.reason);
        t.insert(key(QUEUE), self.queue);
        t.insert(key(TIME), self.time);
        t.insert(key(EXCHANGE), self.exchange);
        t.insert(key(ROUTING_KEYS), self.routing_keys);
        FieldValue::Table(t)
    }

    /// A repeat death for the same (queue, reason): `old` with its count incremented,
    /// keeping its first time, exchange, routing keys and original expiration. Queue and
    /// reason are written as long strings whatever type matched; fields missing from
    /// `old` (a client edited it) are taken from `fresh`.
    fn again(old: &FieldTable, fresh: &FieldValue) -> FieldValue {
        let empty = FieldTable::new();
        let fresh = fresh.as_table().unwrap_or(&empty);
        let pick = |k: &str| {
            old.get(k)
                .or_else(|| fresh.get(k))
                .cloned()
                .unwrap_or(FieldValue::Void)
        };
        // A count that is not an integer (client-edited) restarts from 0.
        let count = old.get(COUNT).and_then(FieldValue::as_i64).unwrap_or(0);
        Death {
            original_expiration: old.get(ORIGINAL_EXPIRATION).cloned(),
            count: count.saturating_add(1),
            reason: fresh.get(REASON).cloned().unwrap_or(FieldValue::Void),
            queue: fresh.get(QUEUE).cloned().unwrap_or(FieldValue::Void),
            time: pick(TIME),
            exchange: pick(EXCHANGE),
            routing_keys: pick(ROUTING_KEYS),
        }
        .into_table()
    }
}

/// What identifies an `x-death` entry: its queue and reason.
type DeathId<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// RabbitMQ's `group_by_queue_and_reason`: collapses duplicate (queue, reason) entries
/// left by brokers before 3.5 into the first, whose count (if it has none) becomes the
/// number of duplicates. Anything that is not a table is kept as is.
fn group_by_queue_and_reason(deaths: &[FieldValue]) -> Vec<FieldValue> {
    fn id(v: &FieldValue) -> Option<DeathId<'_>> {
        v.as_table()
            .map(|t| (bytes_of(t.get(QUEUE)), bytes_of(t.get(REASON))))
    }
    let mut out: Vec<FieldValue> = Vec::with_capacity(deaths.len());
    let mut seen: Vec<DeathId<'_>> = Vec::new();
    for d in deaths {
        let Some(k) = id(d) else {
            out.push(d.clone());
            continue;
        };
        if seen.contains(&k) {
            continue;
        }
        let mut d = d.clone();
        if let FieldValue::Table(t) = &mut d {
            if !t.contains_key(COUNT) {
                let n = deaths.iter().filter(|o| id(o).as_ref() == Some(&k)).count();
                t.insert(
                    key(COUNT),
                    FieldValue::I64(i64::try_from(n).unwrap_or(i64::MAX)),
                );
            }
        }
        seen.push(k);
        out.push(d);
    }
    out
}

/// The table sorted by key octets (stable), duplicates after the first dropped: what
/// RabbitMQ's rewrite of the headers leaves.
fn sorted(table: FieldTable) -> FieldTable {
    let mut out = FieldTable::with_capacity(table.len());
    let mut last: Option<&ShortString> = None;
    for (k, v) in table.sorted_by_key() {
        if last != Some(k) {
            out.push(k.clone(), v.clone());
        }
        last = Some(k);
    }
    out
}

/// RabbitMQ's dead-letter cycle rule (`mc:is_death_cycle`, header form): should the
/// dead-lettered `message` (the output of [`dead_letter`], its newest death first in
/// `x-death`) be kept from `queue`, one of the queues the dead-letter exchange routes it
/// to?
///
/// Yes when `x-death` has an entry for `queue` and neither that entry nor any newer one
/// has reason `rejected`: the message went round a loop of queues with no client
/// rejecting it anywhere (e.g. a TTL queue dead-lettering to the default exchange with no
/// routing key, back into itself), and would go round forever. A rejection anywhere in
/// the loop means a client is involved, so it is delivered. An `x-death` element that is
/// not a table counts as client-made, so not a cycle. Call it per target queue: only the
/// cycling queues are skipped; RabbitMQ logs the dropped cycle once.
pub fn is_cycle(message: &Message, queue: &ShortString) -> bool {
    let headers = message.properties().headers();
    let deaths = match headers.as_ref().and_then(|h| h.get(X_DEATH)) {
        Some(FieldValue::Array(d)) => d,
        _ => return false,
    };
    let Some(pos) = deaths.iter().position(|d| {
        d.as_table().is_some_and(|t| {
            matches!(t.get(QUEUE), Some(FieldValue::LongString(q)) if q[..] == *queue.as_bytes())
        })
    }) else {
        return false;
    };
    deaths[..=pos].iter().all(|d| match d {
        FieldValue::Table(t) => {
            !matches!(t.get(REASON), Some(FieldValue::LongString(r)) if &r[..] == b"rejected")
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::generated::properties::BasicProperties;

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    fn ls(s: &str) -> FieldValue {
        FieldValue::from(s)
    }

    fn message(headers: Option<FieldTable>, expiration: Option<&'static str>) -> Message {
        let props = BasicProperties {
            content_type: Some(ss("text/plain")),
            headers,
            delivery_mode: Some(2),
            expiration: expiration.map(ss),
            message_id: Some(ss("m1")),
            ..Default::default()
        };
        Message::new(ss("orders"), ss("new"), props, Bytes::from_static(b"body"))
    }

    fn headers(m: &Message) -> FieldTable {
        m.properties().headers().unwrap()
    }

    fn keys(t: &FieldTable) -> Vec<String> {
        t.iter().map(|(k, _)| k.to_string()).collect()
    }

    fn deaths(m: &Message) -> Vec<FieldValue> {
        headers(m)
            .get("x-death")
            .unwrap()
            .as_array()
            .unwrap()
            .to_vec()
    }

    fn death(m: &Message, i: usize) -> FieldTable {
        deaths(m)[i].as_table().unwrap().clone()
    }

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        entries.iter().map(|(k, v)| (ss(k), v.clone())).collect()
    }

    #[test]
    fn reason_names() {
        let names: Vec<_> = [
            Reason::Rejected,
            Reason::Expired,
            Reason::MaxLen,
            Reason::DeliveryLimit,
        ]
        .iter()
        .map(|r| r.as_str())
        .collect();
        assert_eq!(names, ["rejected", "expired", "maxlen", "delivery_limit"]);
    }

    #[test]
    fn first_death() {
        let m = message(None, None);
        let d = dead_letter(
            &m,
            &ss("q1"),
            Reason::Rejected,
            &ss("dlx"),
            None,
            1_700_000_000,
        );
        assert_eq!(d.exchange(), "dlx");
        assert_eq!(d.routing_key(), "new");
        assert_eq!(d.body(), m.body());
        assert_eq!(
            keys(&headers(&d)),
            [
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason",
                "x-last-death-exchange",
                "x-last-death-queue",
                "x-last-death-reason",
            ]
        );
        let h = headers(&d);
        assert_eq!(h.get("x-first-death-reason"), Some(&ls("rejected")));
        assert_eq!(h.get("x-first-death-queue"), Some(&ls("q1")));
        assert_eq!(h.get("x-first-death-exchange"), Some(&ls("orders")));
        assert_eq!(h.get("x-last-death-reason"), Some(&ls("rejected")));
        assert_eq!(h.get("x-last-death-queue"), Some(&ls("q1")));
        assert_eq!(h.get("x-last-death-exchange"), Some(&ls("orders")));
        assert_eq!(deaths(&d).len(), 1);
        let x = death(&d, 0);
        assert_eq!(
            keys(&x),
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(x.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(x.get("reason"), Some(&ls("rejected")));
        assert_eq!(x.get("queue"), Some(&ls("q1")));
        assert_eq!(x.get("time"), Some(&FieldValue::Timestamp(1_700_000_000)));
        assert_eq!(x.get("exchange"), Some(&ls("orders")));
        assert_eq!(
            x.get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("new")]))
        );
        // Type letters as on the wire.
        let letters: Vec<char> = x.iter().map(|(_, v)| char::from(v.type_letter())).collect();
        assert_eq!(letters, ['l', 'S', 'S', 'T', 'S', 'A']);
        // Other properties untouched.
        assert_eq!(d.properties().content_type(), m.properties().content_type());
        assert_eq!(d.properties().delivery_mode(), Some(2));
        assert_eq!(d.properties().message_id(), m.properties().message_id());
    }

    #[test]
    fn properties_are_re_encoded() {
        let m = message(None, Some("60000"));
        let d = dead_letter(&m, &ss("q"), Reason::Expired, &ss("dlx"), None, 1);
        let decoded = BasicProperties::decode_bytes(d.properties().as_bytes()).unwrap();
        assert_eq!(decoded, d.properties().to_properties());
        assert!(decoded.headers.is_some_and(|h| h.get("x-death").is_some()));
        assert_ne!(d.properties().as_bytes(), m.properties().as_bytes());
    }

    #[test]
    fn expiration_moves_into_original_expiration() {
        let m = message(None, Some("60000"));
        let d = dead_letter(&m, &ss("q"), Reason::Expired, &ss("dlx"), None, 5);
        assert_eq!(d.properties().expiration(), None);
        let x = death(&d, 0);
        assert_eq!(
            keys(&x),
            [
                "original-expiration",
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(x.get("original-expiration"), Some(&ls("60000")));
        // Recorded whatever the reason, written as a decimal number.
        let m = message(None, Some("007"));
        let d = dead_letter(&m, &ss("q"), Reason::Rejected, &ss("dlx"), None, 5);
        assert_eq!(death(&d, 0).get("original-expiration"), Some(&ls("7")));
        assert_eq!(d.properties().expiration(), None);
    }

    #[test]
    fn dead_letter_routing_key_replaces_key_and_drops_cc() {
        let h = table(&[
            ("CC", FieldValue::Array(vec![ls("cc1"), ls("cc2")])),
            ("app", ls("v")),
        ]);
        let m = message(Some(h), None);
        let d = dead_letter(
            &m,
            &ss("q"),
            Reason::MaxLen,
            &ss("dlx"),
            Some(&ss("dead")),
            9,
        );
        assert_eq!(d.routing_key(), "dead");
        assert_eq!(headers(&d).get("CC"), None);
        assert_eq!(headers(&d).get("app"), Some(&ls("v")));
        // The death records the keys it was published with, CC included.
        assert_eq!(
            death(&d, 0).get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("new"), ls("cc1"), ls("cc2")]))
        );
    }

    #[test]
    fn without_routing_key_cc_stays_and_bcc_goes() {
        let h = table(&[
            ("CC", FieldValue::Array(vec![ls("cc1"), FieldValue::I32(3)])),
            ("BCC", FieldValue::Array(vec![ls("secret")])),
        ]);
        let m = message(Some(h), None);
        let d = dead_letter(&m, &ss("q"), Reason::Expired, &ss(""), None, 9);
        assert_eq!(d.exchange(), "");
        assert_eq!(d.routing_key(), "new");
        assert_eq!(
            headers(&d).get("CC"),
            Some(&FieldValue::Array(vec![ls("cc1"), FieldValue::I32(3)]))
        );
        assert_eq!(headers(&d).get("BCC"), None);
        assert_eq!(
            death(&d, 0).get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("new"), ls("cc1")]))
        );
    }

    #[test]
    fn headers_come_out_sorted_and_deduplicated() {
        let mut h = FieldTable::new();
        h.push(ss("zeta"), ls("1"));
        h.push(ss("Alpha"), ls("2"));
        h.push(ss("zeta"), ls("dup"));
        h.push(ss("beta"), FieldValue::I32(3));
        let m = message(Some(h), None);
        let d = dead_letter(&m, &ss("q"), Reason::Rejected, &ss("dlx"), None, 1);
        let k = keys(&headers(&d));
        assert_eq!(k.first().map(String::as_str), Some("Alpha"));
        assert_eq!(k.iter().filter(|k| *k == "zeta").count(), 1);
        assert_eq!(headers(&d).get("zeta"), Some(&ls("1")));
        let mut sorted_k = k.clone();
        sorted_k.sort();
        assert_eq!(k, sorted_k);
    }

    #[test]
    fn repeated_death_same_queue_and_reason_increments_and_keeps_first_time() {
        let m = message(None, None);
        let d1 = dead_letter(
            &m,
            &ss("q"),
            Reason::Rejected,
            &ss("dlx"),
            Some(&ss("retry")),
            100,
        );
        // Back in q (via the retry queue), rejected again.
        let d2 = dead_letter(
            &d1,
            &ss("q"),
            Reason::Rejected,
            &ss("dlx"),
            Some(&ss("retry")),
            200,
        );
        assert_eq!(deaths(&d2).len(), 1);
        let x = death(&d2, 0);
        assert_eq!(
            keys(&x),
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(x.get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(x.get("time"), Some(&FieldValue::Timestamp(100)));
        assert_eq!(x.get("exchange"), Some(&ls("orders")));
        assert_eq!(
            x.get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("new")]))
        );
        // First-death headers stay those of the first death.
        assert_eq!(
            headers(&d2).get("x-first-death-exchange"),
            Some(&ls("orders"))
        );
        assert_eq!(headers(&d2).get("x-last-death-exchange"), Some(&ls("dlx")));
    }

    #[test]
    fn different_deaths_are_prepended_and_matching_one_moves_to_front() {
        let m = message(None, Some("1000"));
        let d1 = dead_letter(
            &m,
            &ss("work"),
            Reason::Expired,
            &ss("dlx"),
            Some(&ss("wait")),
            10,
        );
        let d2 = dead_letter(
            &d1,
            &ss("wait"),
            Reason::Expired,
            &ss("retry"),
            Some(&ss("w")),
            20,
        );
        let d3 = dead_letter(&d2, &ss("work"), Reason::Rejected, &ss("dlx"), None, 30);
        let order = |m: &Message| -> Vec<(String, String, i64)> {
            deaths(m)
                .iter()
                .map(|d| {
                    let t = d.as_table().unwrap();
                    let s = |k| {
                        String::from_utf8_lossy(t.get(k).unwrap().as_bytes().unwrap()).into_owned()
                    };
                    (
                        s("queue"),
                        s("reason"),
                        t.get("count").unwrap().as_i64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            order(&d3),
            [
                ("work".into(), "rejected".into(), 1),
                ("wait".into(), "expired".into(), 1),
                ("work".into(), "expired".into(), 1),
            ]
        );
        // The second entry was recorded as published to dlx with key "wait".
        assert_eq!(death(&d3, 1).get("exchange"), Some(&ls("dlx")));
        assert_eq!(
            death(&d3, 1).get("routing-keys"),
            Some(&FieldValue::Array(vec![ls("wait")]))
        );
        // Only the first death had a per-message expiration left.
        assert_eq!(death(&d3, 2).get("original-expiration"), Some(&ls("1000")));
        assert_eq!(death(&d3, 1).get("original-expiration"), None);

        let d4 = dead_letter(&d3, &ss("work"), Reason::Expired, &ss("dlx"), None, 40);
        assert_eq!(
            order(&d4),
            [
                ("work".into(), "expired".into(), 2),
                ("work".into(), "rejected".into(), 1),
                ("wait".into(), "expired".into(), 1),
            ]
        );
        // The moved entry keeps its original-expiration, in first place.
        assert_eq!(keys(&death(&d4, 0))[0], "original-expiration");
        assert_eq!(death(&d4, 0).get("time"), Some(&FieldValue::Timestamp(10)));
        let h = headers(&d4);
        assert_eq!(h.get("x-first-death-reason"), Some(&ls("expired")));
        assert_eq!(h.get("x-first-death-queue"), Some(&ls("work")));
        assert_eq!(h.get("x-last-death-reason"), Some(&ls("expired")));
        assert_eq!(h.get("x-last-death-queue"), Some(&ls("work")));
    }

    #[test]
    fn republished_x_death_keeps_counting() {
        // A client consumed from the DLQ and republished with the headers it got.
        let m = message(None, None);
        let d1 = dead_letter(&m, &ss("q"), Reason::Rejected, &ss("dlx"), None, 1);
        let republished = Message::new(
            ss(""),
            ss("q"),
            d1.properties().to_properties(),
            d1.body_bytes(),
        );
        let d2 = dead_letter(
            &republished,
            &ss("q"),
            Reason::Rejected,
            &ss("dlx"),
            None,
            2,
        );
        assert_eq!(death(&d2, 0).get("count"), Some(&FieldValue::I64(2)));
    }

    #[test]
    fn non_array_x_death_is_reset_without_first_death_headers() {
        let h = table(&[("x-death", ls("mangled"))]);
        let d = dead_letter(
            &message(Some(h), None),
            &ss("q"),
            Reason::Expired,
            &ss("dlx"),
            None,
            3,
        );
        assert_eq!(deaths(&d).len(), 1);
        assert_eq!(death(&d, 0).get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(headers(&d).get("x-first-death-reason"), None);
        assert_eq!(headers(&d).get("x-last-death-reason"), Some(&ls("expired")));
    }

    #[test]
    fn legacy_duplicates_are_grouped_and_odd_entries_kept() {
        let entry = |count: Option<i64>| {
            let mut t = table(&[("reason", ls("expired")), ("queue", ls("a"))]);
            if let Some(c) = count {
                t.insert(ss("count"), FieldValue::I64(c));
            }
            FieldValue::Table(t)
        };
        let h = table(&[(
            "x-death",
            FieldValue::Array(vec![entry(None), ls("junk"), entry(None), entry(Some(9))]),
        )]);
        let d = dead_letter(
            &message(Some(h), None),
            &ss("b"),
            Reason::Rejected,
            &ss("dlx"),
            None,
            3,
        );
        let ds = deaths(&d);
        assert_eq!(ds.len(), 3);
        assert_eq!(death(&d, 0).get("queue"), Some(&ls("b")));
        // Three entries for (a, expired) without a count: one entry, count 3.
        assert_eq!(
            ds[1].as_table().unwrap().get("count"),
            Some(&FieldValue::I64(3))
        );
        assert_eq!(ds[2], ls("junk"));
    }

    #[test]
    fn client_edited_entry_is_repaired_on_increment() {
        let edited = table(&[
            ("queue", ls("q")),
            ("reason", ls("rejected")),
            ("count", ls("lots")),
            ("extra", FieldValue::Bool(true)),
        ]);
        let h = table(&[(
            "x-death",
            FieldValue::Array(vec![FieldValue::Table(edited)]),
        )]);
        let d = dead_letter(
            &message(Some(h), None),
            &ss("q"),
            Reason::Rejected,
            &ss("dlx"),
            None,
            7,
        );
        let x = death(&d, 0);
        assert_eq!(
            keys(&x),
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys"
            ]
        );
        assert_eq!(x.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(x.get("time"), Some(&FieldValue::Timestamp(7)));
    }

    #[test]
    fn cycle_detection() {
        let m = message(None, None);
        // A TTL queue dead-lettering back into itself: a cycle.
        let d = dead_letter(&m, &ss("q"), Reason::Expired, &ss(""), None, 1);
        assert!(is_cycle(&d, &ss("q")));
        assert!(!is_cycle(&d, &ss("other")));
        // A rejection: never a cycle.
        let r = dead_letter(&m, &ss("q"), Reason::Rejected, &ss(""), None, 1);
        assert!(!is_cycle(&r, &ss("q")));
        // q -expired-> p -rejected-> back to q: a client took part.
        let p = dead_letter(&d, &ss("p"), Reason::Rejected, &ss(""), Some(&ss("q")), 2);
        assert!(!is_cycle(&p, &ss("q")));
        // q -rejected-> p -expired-> q: q's own entry is the rejection, so a client took
        // part in the loop: not a cycle.
        let p2 = dead_letter(&r, &ss("p"), Reason::Expired, &ss(""), Some(&ss("q")), 2);
        assert!(!is_cycle(&p2, &ss("q")));
        // But routed to p again, the loop p -> p is automatic.
        assert!(is_cycle(&p2, &ss("p")));
        // q -maxlen-> p -expired-> q: fully automatic.
        let a = dead_letter(&m, &ss("q"), Reason::MaxLen, &ss(""), Some(&ss("p")), 1);
        let b = dead_letter(&a, &ss("p"), Reason::Expired, &ss(""), Some(&ss("q")), 2);
        assert!(is_cycle(&b, &ss("q")));
        assert!(is_cycle(&b, &ss("p")));
        // No history at all.
        assert!(!is_cycle(&m, &ss("q")));
    }

    #[test]
    fn cycle_detection_with_client_made_history() {
        let with = |deaths: Vec<FieldValue>| {
            message(Some(table(&[("x-death", FieldValue::Array(deaths))])), None)
        };
        let t =
            |q: &str, r: FieldValue| FieldValue::Table(table(&[("queue", ls(q)), ("reason", r)]));
        // Something that is not a table before the match: not automatic.
        assert!(!is_cycle(
            &with(vec![ls("junk"), t("q", ls("expired"))]),
            &ss("q")
        ));
        // A reason of another type is not "rejected".
        assert!(is_cycle(&with(vec![t("q", FieldValue::I32(1))]), &ss("q")));
        // The queue must be a long string to match.
        let bin = FieldValue::Table(table(&[
            ("queue", FieldValue::ByteArray(Bytes::from_static(b"q"))),
            ("reason", ls("expired")),
        ]));
        assert!(!is_cycle(&with(vec![bin]), &ss("q")));
        // Not an array.
        assert!(!is_cycle(
            &message(Some(table(&[("x-death", ls("x"))])), None),
            &ss("q")
        ));
    }

    proptest::proptest! {
        /// Arbitrary headers never panic, and the result always carries a well-formed
        /// newest death for this queue and reason.
        #[test]
        fn arbitrary_headers(h in crate::protocol::field_table::strategies::field_table(),
                             x_death in proptest::option::of(
                                 crate::protocol::field_table::strategies::field_value()),
                             dlrk in proptest::option::of("[a-z]{0,5}")) {
            let mut h = h;
            if let Some(v) = x_death {
                h.insert(ss("x-death"), v);
            }
            let m = message(Some(h), Some("5"));
            let dlrk = dlrk.map(|k| ShortString::try_from(k.as_str()).unwrap());
            let d = dead_letter(&m, &ss("q"), Reason::Expired, &ss("dlx"), dlrk.as_ref(), 1);
            let first = death(&d, 0);
            proptest::prop_assert_eq!(first.get("queue"), Some(&ls("q")));
            proptest::prop_assert_eq!(first.get("reason"), Some(&ls("expired")));
            proptest::prop_assert!(first.get("count").and_then(FieldValue::as_i64).is_some());
            proptest::prop_assert_eq!(d.properties().expiration(), None);
            let _ = is_cycle(&d, &ss("q"));
            let _ = is_cycle(&m, &ss("q"));
            let k: Vec<Vec<u8>> = headers(&d).iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
            let mut s = k.clone();
            s.sort();
            s.dedup();
            proptest::prop_assert_eq!(k, s);
        }
    }
}

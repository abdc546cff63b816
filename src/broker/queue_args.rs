//! Optional `queue.declare` arguments (`x-message-ttl`, `x-max-length`, …), validated and
//! parsed once, at declare time, into typed settings.
//!
//! Clients and tools are written against RabbitMQ, so a bad argument must fail the same
//! way: a 406 PRECONDITION_FAILED whose reply text is RabbitMQ's, checked in RabbitMQ's
//! order (`rabbit_amqqueue:declare_args/0`), with error terms printed as Erlang prints
//! them (`{value_negative,-1}`). Any integer type is accepted where RabbitMQ takes an
//! integer (clients disagree on the width they send); arguments this broker does not know
//! are ignored, as RabbitMQ ignores them. Comparing the arguments of a redeclaration is
//! done on the raw tables, elsewhere.

use std::fmt;

use crate::protocol::{FieldTable, FieldValue, ShortString};

/// RabbitMQ's `MAX_EXPIRY_TIMER`: the largest `x-message-ttl` / `x-expires` (ms), the
/// limit of an Erlang timer.
pub const MAX_EXPIRY_MS: i64 = 4_294_967_295;

/// RabbitMQ's `MAX_SUPPORTED_PRIORITY`.
pub const MAX_SUPPORTED_PRIORITY: i64 = 255;

/// What a full queue does with one more message (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (dead-letter as `maxlen`) from the head until the queue fits again.
    #[default]
    DropHead,
    /// Refuse the new message; a confirming publisher gets a nack.
    RejectPublish,
    /// As `RejectPublish`, and the refused message is dead-lettered as `maxlen`.
    RejectPublishDlx,
}

impl Overflow {
    /// The argument value that selects this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// A queue's settings from its declare arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueArgs {
    /// `x-message-ttl`, ms (0 allowed: expire unless delivered at once).
    pub message_ttl: Option<u64>,
    /// `x-expires`, ms, always > 0: delete the queue after this long unused.
    pub expires: Option<u64>,
    /// `x-max-length`: ready messages, unacknowledged ones not counted.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: total body size of the ready messages.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` (may be "", the default exchange).
    pub dead_letter_exchange: Option<ShortString>,
    /// `x-dead-letter-routing-key`; only accepted with a dead-letter exchange.
    pub dead_letter_routing_key: Option<ShortString>,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-max-priority`, 0..=255.
    pub max_priority: Option<u8>,
}

/// Which of RabbitMQ's two messages an [`ArgError`] is worded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgErrorKind {
    /// `invalid arg 'K' for queue 'Q' in vhost 'V': TERM` (rabbit_amqqueue's checks).
    InvalidArg,
    /// `invalid type 'T' for arg 'K' in queue 'Q' in vhost 'V'`: rabbit_channel's check of
    /// `x-dead-letter-exchange`, which runs before all the others.
    InvalidType,
}

/// A refused argument. Becomes a 406 PRECONDITION_FAILED; [`ArgError::text_for`] is the
/// reply text after "PRECONDITION_FAILED - ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The argument, e.g. `x-message-ttl`.
    pub arg: &'static str,
    /// The reason as RabbitMQ prints it: an Erlang term such as `{value_negative,-1}` for
    /// [`ArgErrorKind::InvalidArg`], the type name (`long`) for
    /// [`ArgErrorKind::InvalidType`].
    pub text: String,
    pub kind: ArgErrorKind,
}

impl ArgError {
    fn invalid(arg: &'static str, text: impl Into<String>) -> ArgError {
        ArgError {
            arg,
            text: text.into(),
            kind: ArgErrorKind::InvalidArg,
        }
    }

    /// The whole reply text (after "PRECONDITION_FAILED - ") for queue `queue` in `vhost`.
    pub fn text_for(&self, queue: &str, vhost: &str) -> String {
        match self.kind {
            ArgErrorKind::InvalidArg => format!(
                "invalid arg '{}' for queue '{queue}' in vhost '{vhost}': {}",
                self.arg, self.text
            ),
            ArgErrorKind::InvalidType => format!(
                "invalid type '{}' for arg '{}' in queue '{queue}' in vhost '{vhost}'",
                self.text, self.arg
            ),
        }
    }
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ArgErrorKind::InvalidArg => write!(f, "invalid arg '{}': {}", self.arg, self.text),
            ArgErrorKind::InvalidType => {
                write!(f, "invalid type '{}' for arg '{}'", self.text, self.arg)
            }
        }
    }
}

impl std::error::Error for ArgError {}

const EXPIRES: &str = "x-expires";
const MESSAGE_TTL: &str = "x-message-ttl";
const DLX: &str = "x-dead-letter-exchange";
const DLRK: &str = "x-dead-letter-routing-key";
const MAX_LENGTH: &str = "x-max-length";
const MAX_LENGTH_BYTES: &str = "x-max-length-bytes";
const MAX_PRIORITY: &str = "x-max-priority";
const OVERFLOW: &str = "x-overflow";
const QUEUE_MODE: &str = "x-queue-mode";
const QUEUE_VERSION: &str = "x-queue-version";
const SINGLE_ACTIVE_CONSUMER: &str = "x-single-active-consumer";

/// The name RabbitMQ gives a field-table type in its error terms.
pub fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal { .. } => "decimal",
        FieldValue::LongString(_) => "longstr",
        FieldValue::ByteArray(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

/// An Erlang string as `~p` prints it: in double quotes, `"` and `\` escaped.
fn erlang_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn unacceptable_type(arg: &'static str, v: &FieldValue) -> ArgError {
    ArgError::invalid(arg, format!("{{unacceptable_type,{}}}", type_name(v)))
}

/// `check_int_arg`: any of RabbitMQ's integer types (b B s u I i l).
fn int_arg(arg: &'static str, v: &FieldValue) -> Result<i64, ArgError> {
    v.as_i64().ok_or_else(|| {
        let reason = format!("expected integer, got {}", type_name(v));
        ArgError::invalid(arg, erlang_string(&reason))
    })
}

/// `check_non_neg_int_arg`.
fn non_neg_int_arg(arg: &'static str, v: &FieldValue) -> Result<u64, ArgError> {
    let n = int_arg(arg, v)?;
    u64::try_from(n).map_err(|_| ArgError::invalid(arg, format!("{{value_negative,{n}}}")))
}

/// `rabbit_misc:check_expiry`, applied to an integer already checked.
fn expiry(arg: &'static str, n: i64) -> Result<u64, ArgError> {
    if n > MAX_EXPIRY_MS {
        return Err(ArgError::invalid(arg, format!("{{value_too_big,{n}}}")));
    }
    u64::try_from(n).map_err(|_| ArgError::invalid(arg, format!("{{value_negative,{n}}}")))
}

/// A string argument that names an exchange or routing key. RabbitMQ takes any long
/// string; names here are shortstrs, and no exchange can have a longer name, so a longer
/// value is refused (fedamq's own term, `value_too_long`).
fn short_string_arg(arg: &'static str, bytes: &[u8]) -> Result<ShortString, ArgError> {
    ShortString::try_from(bytes)
        .map_err(|e| ArgError::invalid(arg, format!("{{value_too_long,{}}}", e.0)))
}

impl QueueArgs {
    /// Validates `args` as RabbitMQ does for a classic queue and extracts the settings.
    /// The first failing argument, in RabbitMQ's order, is the error.
    pub fn parse(args: &FieldTable) -> Result<QueueArgs, ArgError> {
        let mut out = QueueArgs::default();

        // rabbit_channel checks the dead-letter exchange's type before the queue's own
        // argument checks run, with a message of its own.
        if let Some(v) = args.get(DLX) {
            if !matches!(v, FieldValue::LongString(_)) {
                return Err(ArgError {
                    arg: DLX,
                    text: type_name(v).to_owned(),
                    kind: ArgErrorKind::InvalidType,
                });
            }
        }

        if let Some(v) = args.get(EXPIRES) {
            let n = int_arg(EXPIRES, v)?;
            if n == 0 {
                return Err(ArgError::invalid(EXPIRES, "{value_zero,0}"));
            }
            out.expires = Some(expiry(EXPIRES, n)?);
        }
        if let Some(v) = args.get(MESSAGE_TTL) {
            let n = int_arg(MESSAGE_TTL, v)?;
            out.message_ttl = Some(expiry(MESSAGE_TTL, n)?);
        }
        if let Some(v) = args.get(DLX) {
            match v {
                FieldValue::LongString(b) => {
                    out.dead_letter_exchange = Some(short_string_arg(DLX, b)?);
                }
                other => return Err(unacceptable_type(DLX, other)),
            }
        }
        if let Some(v) = args.get(DLRK) {
            match v {
                FieldValue::LongString(b) => {
                    // Only the key's presence counts: its type was checked above.
                    if !args.contains_key(DLX) {
                        return Err(ArgError::invalid(DLRK, "routing_key_but_no_dlx_defined"));
                    }
                    out.dead_letter_routing_key = Some(short_string_arg(DLRK, b)?);
                }
                other => return Err(unacceptable_type(DLRK, other)),
            }
        }
        if let Some(v) = args.get(MAX_LENGTH) {
            out.max_length = Some(non_neg_int_arg(MAX_LENGTH, v)?);
        }
        if let Some(v) = args.get(MAX_LENGTH_BYTES) {
            out.max_length_bytes = Some(non_neg_int_arg(MAX_LENGTH_BYTES, v)?);
        }
        if let Some(v) = args.get(MAX_PRIORITY) {
            let n = non_neg_int_arg(MAX_PRIORITY, v)?;
            match u8::try_from(n) {
                Ok(p) => out.max_priority = Some(p),
                Err(_) => {
                    return Err(ArgError::invalid(
                        MAX_PRIORITY,
                        format!("{{max_value_exceeded,{n}}}"),
                    ));
                }
            }
        }
        if let Some(v) = args.get(OVERFLOW) {
            out.overflow = match v {
                FieldValue::LongString(b) => match &b[..] {
                    b"drop-head" => Overflow::DropHead,
                    b"reject-publish" => Overflow::RejectPublish,
                    b"reject-publish-dlx" => Overflow::RejectPublishDlx,
                    _ => return Err(ArgError::invalid(OVERFLOW, "invalid_overflow")),
                },
                other => return Err(unacceptable_type(OVERFLOW, other)),
            };
        }
        // Validated only: lazy/default and the storage version change nothing here, but
        // a value RabbitMQ refuses must be refused.
        if let Some(v) = args.get(QUEUE_MODE) {
            match v {
                FieldValue::LongString(b) => {
                    if &b[..] != b"default" && &b[..] != b"lazy" {
                        let reason =
                            format!("unsupported queue mode '{}'", String::from_utf8_lossy(b));
                        return Err(ArgError::invalid(QUEUE_MODE, erlang_string(&reason)));
                    }
                }
                other => return Err(unacceptable_type(QUEUE_MODE, other)),
            }
        }
        if let Some(v) = args.get(QUEUE_VERSION) {
            let n = non_neg_int_arg(QUEUE_VERSION, v)?;
            if n != 1 && n != 2 {
                let reason = format!("unsupported queue version '{n}'");
                return Err(ArgError::invalid(QUEUE_VERSION, erlang_string(&reason)));
            }
        }
        if let Some(v) = args.get(SINGLE_ACTIVE_CONSUMER) {
            match v {
                FieldValue::Bool(b) => out.single_active_consumer = *b,
                other => return Err(unacceptable_type(SINGLE_ACTIVE_CONSUMER, other)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        entries
            .iter()
            .map(|(k, v)| (ShortString::from_static(k), v.clone()))
            .collect()
    }

    fn parse(entries: &[(&'static str, FieldValue)]) -> Result<QueueArgs, ArgError> {
        QueueArgs::parse(&table(entries))
    }

    /// The full reply text for queue 'q' in vhost '/'.
    fn err(entries: &[(&'static str, FieldValue)]) -> String {
        match parse(entries) {
            Ok(a) => panic!("expected an error, parsed {a:?}"),
            Err(e) => e.text_for("q", "/"),
        }
    }

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    /// One value of every integer type a client may send.
    fn ints(n: i8) -> Vec<FieldValue> {
        let mut v = vec![
            FieldValue::I8(n),
            FieldValue::I16(n.into()),
            FieldValue::I32(n.into()),
            FieldValue::I64(n.into()),
        ];
        if let Ok(u) = u8::try_from(n) {
            v.extend([
                FieldValue::U8(u),
                FieldValue::U16(u.into()),
                FieldValue::U32(u.into()),
            ]);
        }
        v
    }

    /// Non-integers with the type name RabbitMQ prints for each.
    fn non_ints() -> Vec<(FieldValue, &'static str)> {
        vec![
            (FieldValue::from("10"), "longstr"),
            (FieldValue::Bool(true), "bool"),
            (FieldValue::F32(1.0), "float"),
            (FieldValue::F64(1.0), "double"),
            (FieldValue::Decimal { scale: 0, value: 1 }, "decimal"),
            (FieldValue::ByteArray(Bytes::from_static(b"1")), "binary"),
            (FieldValue::Array(vec![]), "array"),
            (FieldValue::Timestamp(1), "timestamp"),
            (FieldValue::Table(FieldTable::new()), "table"),
            (FieldValue::Void, "void"),
        ]
    }

    #[test]
    fn empty_table_gives_defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a, QueueArgs::default());
        assert_eq!(a.overflow, Overflow::DropHead);
        assert!(!a.single_active_consumer);
    }

    #[test]
    fn unknown_arguments_are_ignored() {
        let a = parse(&[
            ("x-unknown", FieldValue::from("whatever")),
            ("x-queue-type", FieldValue::from("classic")),
            ("x-delivery-limit", FieldValue::I32(-5)),
            ("not-x", FieldValue::Void),
        ])
        .unwrap();
        assert_eq!(a, QueueArgs::default());
    }

    #[test]
    fn message_ttl_accepts_every_integer_type() {
        for v in ints(42) {
            let a = parse(&[("x-message-ttl", v.clone())]).unwrap();
            assert_eq!(a.message_ttl, Some(42), "{v:?}");
        }
        for v in ints(0) {
            assert_eq!(parse(&[("x-message-ttl", v)]).unwrap().message_ttl, Some(0));
        }
        let max = parse(&[("x-message-ttl", FieldValue::U32(u32::MAX))]).unwrap();
        assert_eq!(max.message_ttl, Some(4_294_967_295));
    }

    #[test]
    fn message_ttl_errors() {
        for v in ints(-1) {
            assert_eq!(
                err(&[("x-message-ttl", v)]),
                "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
            );
        }
        assert_eq!(
            err(&[("x-message-ttl", FieldValue::I64(4_294_967_296))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_too_big,4294967296}"
        );
        for (v, name) in non_ints() {
            assert_eq!(
                err(&[("x-message-ttl", v)]),
                format!(
                    "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \
                     \"expected integer, got {name}\""
                )
            );
        }
    }

    #[test]
    fn expires_must_be_positive() {
        for v in ints(100) {
            assert_eq!(parse(&[("x-expires", v)]).unwrap().expires, Some(100));
        }
        for v in ints(0) {
            assert_eq!(
                err(&[("x-expires", v)]),
                "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
            );
        }
        assert_eq!(
            err(&[("x-expires", FieldValue::I32(-3))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_negative,-3}"
        );
        assert_eq!(
            err(&[("x-expires", FieldValue::I64(i64::MAX))]),
            format!(
                "invalid arg 'x-expires' for queue 'q' in vhost '/': {{value_too_big,{}}}",
                i64::MAX
            )
        );
        assert_eq!(
            err(&[("x-expires", FieldValue::from("1000"))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': \
             \"expected integer, got longstr\""
        );
    }

    #[test]
    fn max_length_and_bytes() {
        for key in ["x-max-length", "x-max-length-bytes"] {
            for v in ints(0).into_iter().chain(ints(7)) {
                let n = v.as_i64().unwrap() as u64;
                let a = parse(&[(key, v)]).unwrap();
                let got = if key == "x-max-length" {
                    a.max_length
                } else {
                    a.max_length_bytes
                };
                assert_eq!(got, Some(n));
            }
            assert_eq!(
                err(&[(key, FieldValue::I16(-2))]),
                format!("invalid arg '{key}' for queue 'q' in vhost '/': {{value_negative,-2}}")
            );
            assert_eq!(
                err(&[(key, FieldValue::F64(2.0))]),
                format!(
                    "invalid arg '{key}' for queue 'q' in vhost '/': \
                     \"expected integer, got double\""
                )
            );
        }
        let big = parse(&[("x-max-length-bytes", FieldValue::I64(i64::MAX))]).unwrap();
        assert_eq!(big.max_length_bytes, Some(i64::MAX as u64));
    }

    #[test]
    fn max_priority_range() {
        for (v, want) in [
            (FieldValue::U8(0), 0),
            (FieldValue::U8(10), 10),
            (FieldValue::I32(255), 255),
            (FieldValue::I64(255), 255),
            (FieldValue::U16(255), 255),
        ] {
            assert_eq!(
                parse(&[("x-max-priority", v)]).unwrap().max_priority,
                Some(want)
            );
        }
        assert_eq!(
            err(&[("x-max-priority", FieldValue::I32(256))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            err(&[("x-max-priority", FieldValue::I8(-1))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            err(&[("x-max-priority", FieldValue::from("10"))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': \
             \"expected integer, got longstr\""
        );
    }

    #[test]
    fn overflow_values() {
        for (s, want) in [
            ("drop-head", Overflow::DropHead),
            ("reject-publish", Overflow::RejectPublish),
            ("reject-publish-dlx", Overflow::RejectPublishDlx),
        ] {
            assert_eq!(parse(&[("x-overflow", s.into())]).unwrap().overflow, want);
            assert_eq!(want.as_str(), s);
        }
        assert_eq!(
            err(&[("x-overflow", "drop-tail".into())]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        assert_eq!(
            err(&[("x-overflow", FieldValue::I32(1))]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': {unacceptable_type,signedint}"
        );
    }

    #[test]
    fn single_active_consumer() {
        let a = parse(&[("x-single-active-consumer", FieldValue::Bool(true))]).unwrap();
        assert!(a.single_active_consumer);
        let a = parse(&[("x-single-active-consumer", FieldValue::Bool(false))]).unwrap();
        assert!(!a.single_active_consumer);
        assert_eq!(
            err(&[("x-single-active-consumer", "true".into())]),
            "invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': \
             {unacceptable_type,longstr}"
        );
        assert_eq!(
            err(&[("x-single-active-consumer", FieldValue::U8(1))]),
            "invalid arg 'x-single-active-consumer' for queue 'q' in vhost '/': \
             {unacceptable_type,unsignedbyte}"
        );
    }

    #[test]
    fn dead_letter_exchange_and_key() {
        let a = parse(&[
            ("x-dead-letter-exchange", "dlx".into()),
            ("x-dead-letter-routing-key", "dead".into()),
        ])
        .unwrap();
        assert_eq!(a.dead_letter_exchange, Some(ss("dlx")));
        assert_eq!(a.dead_letter_routing_key, Some(ss("dead")));

        // The default exchange is a valid dead-letter exchange.
        let a = parse(&[("x-dead-letter-exchange", "".into())]).unwrap();
        assert_eq!(a.dead_letter_exchange, Some(ss("")));
        assert_eq!(a.dead_letter_routing_key, None);

        assert_eq!(
            err(&[("x-dead-letter-routing-key", "dead".into())]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': \
             routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            err(&[
                ("x-dead-letter-exchange", "dlx".into()),
                ("x-dead-letter-routing-key", FieldValue::I64(1)),
            ]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': \
             {unacceptable_type,long}"
        );
    }

    #[test]
    fn dead_letter_exchange_type_is_checked_first_with_channel_wording() {
        // rabbit_channel's check: its own wording, and before x-expires is looked at.
        let e = parse(&[
            ("x-expires", FieldValue::I32(0)),
            ("x-dead-letter-exchange", FieldValue::I64(5)),
        ])
        .unwrap_err();
        assert_eq!(e.kind, ArgErrorKind::InvalidType);
        assert_eq!(
            e.text_for("q", "/"),
            "invalid type 'long' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(
            err(&[(
                "x-dead-letter-exchange",
                FieldValue::ByteArray(Bytes::from_static(b"x"))
            )]),
            "invalid type 'binary' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
    }

    #[test]
    fn names_longer_than_a_shortstr_are_refused() {
        let long = FieldValue::from("x".repeat(256));
        assert_eq!(
            err(&[("x-dead-letter-exchange", long.clone())]),
            "invalid arg 'x-dead-letter-exchange' for queue 'q' in vhost '/': \
             {value_too_long,256}"
        );
        assert_eq!(
            err(&[
                ("x-dead-letter-exchange", "dlx".into()),
                ("x-dead-letter-routing-key", long),
            ]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': \
             {value_too_long,256}"
        );
    }

    #[test]
    fn queue_mode_and_version_are_validated_only() {
        for mode in ["default", "lazy"] {
            assert_eq!(
                parse(&[("x-queue-mode", mode.into())]).unwrap(),
                QueueArgs::default()
            );
        }
        assert_eq!(
            err(&[("x-queue-mode", "eager".into())]),
            "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': \
             \"unsupported queue mode 'eager'\""
        );
        assert_eq!(
            err(&[("x-queue-mode", "a\"b".into())]),
            "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': \
             \"unsupported queue mode 'a\\\"b'\""
        );
        assert_eq!(
            err(&[("x-queue-mode", FieldValue::Bool(true))]),
            "invalid arg 'x-queue-mode' for queue 'q' in vhost '/': {unacceptable_type,bool}"
        );
        for v in [1, 2] {
            assert!(parse(&[("x-queue-version", FieldValue::I32(v))]).is_ok());
        }
        assert_eq!(
            err(&[("x-queue-version", FieldValue::I32(3))]),
            "invalid arg 'x-queue-version' for queue 'q' in vhost '/': \
             \"unsupported queue version '3'\""
        );
        assert_eq!(
            err(&[("x-queue-version", FieldValue::I32(-1))]),
            "invalid arg 'x-queue-version' for queue 'q' in vhost '/': {value_negative,-1}"
        );
    }

    #[test]
    fn first_failure_in_rabbitmq_order_wins() {
        // Table order does not matter: x-expires is checked before x-message-ttl, which
        // is checked before x-max-length.
        let t = [
            ("x-max-length", FieldValue::I32(-1)),
            ("x-message-ttl", FieldValue::I32(-1)),
            ("x-expires", FieldValue::I32(0)),
        ];
        assert!(err(&t).starts_with("invalid arg 'x-expires'"));
        assert!(err(&t[..2]).starts_with("invalid arg 'x-message-ttl'"));
        assert!(err(&t[..1]).starts_with("invalid arg 'x-max-length'"));
    }

    #[test]
    fn duplicate_keys_use_the_first() {
        let mut t = FieldTable::new();
        t.push(ss("x-max-length"), FieldValue::I32(3));
        t.push(ss("x-max-length"), FieldValue::I32(-1));
        assert_eq!(QueueArgs::parse(&t).unwrap().max_length, Some(3));
    }

    #[test]
    fn everything_together() {
        let a = parse(&[
            ("x-message-ttl", FieldValue::I64(60_000)),
            ("x-expires", FieldValue::I32(1_800_000)),
            ("x-max-length", FieldValue::U32(1000)),
            ("x-max-length-bytes", FieldValue::I64(1 << 20)),
            ("x-overflow", "reject-publish-dlx".into()),
            ("x-dead-letter-exchange", "dlx".into()),
            ("x-dead-letter-routing-key", "dead".into()),
            ("x-single-active-consumer", FieldValue::Bool(true)),
            ("x-max-priority", FieldValue::U8(9)),
        ])
        .unwrap();
        assert_eq!(
            a,
            QueueArgs {
                message_ttl: Some(60_000),
                expires: Some(1_800_000),
                max_length: Some(1000),
                max_length_bytes: Some(1 << 20),
                overflow: Overflow::RejectPublishDlx,
                dead_letter_exchange: Some(ss("dlx")),
                dead_letter_routing_key: Some(ss("dead")),
                single_active_consumer: true,
                max_priority: Some(9),
            }
        );
    }

    #[test]
    fn display_and_error_trait() {
        let e = parse(&[("x-max-length", FieldValue::I32(-1))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid arg 'x-max-length': {value_negative,-1}"
        );
        let e: Box<dyn std::error::Error> = Box::new(e);
        assert!(e.to_string().contains("x-max-length"));
        let t = parse(&[("x-dead-letter-exchange", FieldValue::Void)]).unwrap_err();
        assert_eq!(
            t.to_string(),
            "invalid type 'void' for arg 'x-dead-letter-exchange'"
        );
    }

    proptest::proptest! {
        /// Any table parses or fails without panicking.
        #[test]
        fn never_panics(t in crate::protocol::field_table::strategies::field_table()) {
            let _ = QueueArgs::parse(&t);
        }

        /// Any table with known keys and arbitrary values parses or fails without panic.
        #[test]
        fn never_panics_on_known_keys(
            vals in proptest::collection::vec(
                crate::protocol::field_table::strategies::field_value(), 11)
        ) {
            let keys = [EXPIRES, MESSAGE_TTL, DLX, DLRK, MAX_LENGTH, MAX_LENGTH_BYTES,
                        MAX_PRIORITY, OVERFLOW, QUEUE_MODE, QUEUE_VERSION,
                        SINGLE_ACTIVE_CONSUMER];
            let t: FieldTable = keys.iter().zip(vals)
                .map(|(k, v)| (ShortString::from_static(k), v)).collect();
            if let Err(e) = QueueArgs::parse(&t) {
                proptest::prop_assert!(!e.text_for("q", "/").is_empty());
            }
        }
    }
}

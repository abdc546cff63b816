//! The SASL mechanisms a client may log in with, and how a failed login is reported.
//!
//! [`MECHANISMS`] are offered in `connection.start`:
//!
//! - `PLAIN` (RFC 4616): the response is `authzid \0 authcid \0 password`. RabbitMQ
//!   requires the authzid to be empty; we also accept one equal to the user name (RFC
//!   4616 says that means the same thing) and refuse any other, since acting as another
//!   user is not supported. Nothing may follow the password.
//! - `AMQPLAIN`: the response is a field table *without* its 4-byte length prefix
//!   (py-amqp and amq-protocol/lapin both strip it), holding `LOGIN` and `PASSWORD` as
//!   long strings (`S`). If a key repeats, the first one counts (RabbitMQ uses
//!   `lists:keysearch`).
//!
//! - `EXTERNAL` (RFC 4422 appendix A): offered only on a TLS connection whose client
//!   sent a certificate the listener verified. The user is the one the certificate
//!   names (its subject CN by default; see `ssl_cert_login_from`), and must exist; there
//!   is no password. The response (an authorization identity) is ignored, as RabbitMQ's
//!   rabbitmq_auth_mechanism_ssl does.
//!
//! How RabbitMQ reports failures (`rabbit_reader`), which [`AuthError::reply_code`] and
//! [`AuthError::reply_text`] mirror:
//!
//! | failure | RabbitMQ | what the client sees |
//! |---|---|---|
//! | unknown mechanism | 503 COMMAND_INVALID "unknown authentication mechanism 'X'" | socket closed (after a 3 s delay), no `connection.close` |
//! | malformed response | 502 SYNTAX_ERROR | socket closed (after a 3 s delay), no `connection.close` |
//! | wrong user or password | 403 ACCESS_REFUSED | `connection.close` 403 "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile." if the client announced the `authentication_failure_close` capability (every current client does); otherwise the socket is closed |
//!
//! The detailed reason (e.g. "user 'bob' - invalid credentials") is only for the log,
//! which is what [`AuthError`]'s `Display` gives.

use bytes::Bytes;

use crate::protocol::FieldValue;
use crate::protocol::wire::Decoder;

/// The mechanisms to offer in `connection.start`, in order of preference (RabbitMQ's
/// default `auth_mechanisms`).
pub const MECHANISMS: &str = "PLAIN AMQPLAIN";

/// The mechanisms offered on a TLS connection with a verified client certificate.
pub const MECHANISMS_WITH_EXTERNAL: &str = "PLAIN AMQPLAIN EXTERNAL";

/// Why a login failed. `Display` is the detailed reason, for the log only; tell the
/// client [`reply_text`](Self::reply_text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown authentication mechanism '{0}'")]
    UnknownMechanism(String),
    #[error("{mechanism} response invalid: {reason}")]
    BadResponse {
        mechanism: String,
        reason: &'static str,
    },
    #[error("{mechanism} login refused: user '{user}' - invalid credentials")]
    InvalidCredentials { mechanism: String, user: String },
    #[error("EXTERNAL login refused: user '{0}' (named by the client certificate) does not exist")]
    NoCertificateUser(String),
    #[error(
        "{mechanism} login refused: user '{user}' attempted to log in with a blank password, \
         which is prohibited"
    )]
    BlankPassword { mechanism: String, user: String },
}

impl AuthError {
    /// RabbitMQ's reply code for this failure: 503 COMMAND_INVALID for an unknown
    /// mechanism, 502 SYNTAX_ERROR for a malformed response, 403 ACCESS_REFUSED for bad
    /// credentials. (RabbitMQ sends only the 403 as a `connection.close`; see the module
    /// docs.)
    pub fn reply_code(&self) -> u16 {
        match self {
            AuthError::UnknownMechanism(_) => 503,
            AuthError::BadResponse { .. } => 502,
            AuthError::InvalidCredentials { .. }
            | AuthError::BlankPassword { .. }
            | AuthError::NoCertificateUser(_) => 403,
        }
    }

    /// Text safe to send to the client: it never says whether the user exists, and never
    /// echoes the response (which holds the password).
    pub fn reply_text(&self) -> String {
        match self {
            AuthError::UnknownMechanism(m) => format!("unknown authentication mechanism '{m}'"),
            AuthError::BadResponse { mechanism, .. } => format!("{mechanism} response invalid"),
            AuthError::InvalidCredentials { mechanism, .. }
            | AuthError::BlankPassword { mechanism, .. } => {
                format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                )
            }
            AuthError::NoCertificateUser(_) => "Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.".into(),
        }
    }
}

/// The user name and password a `connection.start-ok` response carries, not yet checked.
#[derive(Debug)]
pub struct Credentials {
    /// The mechanism's name, for log and reply texts.
    pub mechanism: String,
    pub user: Bytes,
    pub password: Bytes,
}

impl Credentials {
    /// Reads `response` as `mechanism` says. A blank password is refused here, before
    /// any user lookup, as RabbitMQ does.
    pub fn read(mechanism: &[u8], response: &[u8]) -> Result<Credentials, AuthError> {
        let mech_name = String::from_utf8_lossy(mechanism).into_owned();
        let parsed = match mechanism {
            b"PLAIN" => parse_plain(response),
            b"AMQPLAIN" => parse_amqplain(response),
            _ => return Err(AuthError::UnknownMechanism(mech_name)),
        };
        let (user, password) = parsed.map_err(|reason| AuthError::BadResponse {
            mechanism: mech_name.clone(),
            reason,
        })?;
        if password.is_empty() {
            return Err(AuthError::BlankPassword {
                mechanism: mech_name,
                user: String::from_utf8_lossy(&user).into_owned(),
            });
        }
        Ok(Credentials {
            mechanism: mech_name,
            user,
            password,
        })
    }

    /// The user name as text (lossy), for logs and errors.
    pub fn user_name(&self) -> String {
        String::from_utf8_lossy(&self.user).into_owned()
    }
}

/// Splits a SASL PLAIN response into (user, password).
fn parse_plain(response: &[u8]) -> Result<(Bytes, Bytes), &'static str> {
    let mut parts = response.splitn(3, |&b| b == 0);
    let authzid = parts.next().unwrap_or_default();
    let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
        return Err("expected \\0user\\0password");
    };
    if password.contains(&0) {
        return Err("unexpected bytes after the password");
    }
    if !authzid.is_empty() && authzid != user {
        return Err("authorization identity differs from the user name");
    }
    Ok((
        Bytes::copy_from_slice(user),
        Bytes::copy_from_slice(password),
    ))
}

/// Reads an AMQPLAIN response (a field table without its length prefix) into
/// (LOGIN, PASSWORD).
fn parse_amqplain(response: &[u8]) -> Result<(Bytes, Bytes), &'static str> {
    let mut decoder = Decoder::from_slice(response);
    let (mut login, mut password) = (None, None);
    while !decoder.is_empty() {
        let key = decoder.shortstr().map_err(|_| "malformed field table")?;
        let value = decoder.field_value().map_err(|_| "malformed field table")?;
        let slot = match key.as_bytes() {
            b"LOGIN" => &mut login,
            b"PASSWORD" => &mut password,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    match (login, password) {
        (Some(FieldValue::LongString(l)), Some(FieldValue::LongString(p))) => Ok((l, p)),
        (Some(_), Some(_)) => Err("LOGIN and PASSWORD must be long strings"),
        _ => Err("missing LOGIN or PASSWORD field"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An AMQPLAIN response: a field table without its length prefix.
    pub(crate) fn amqplain(entries: &[(&str, FieldValue)]) -> Vec<u8> {
        use crate::protocol::FieldTable;
        use crate::protocol::wire::encode;
        let table: FieldTable = entries
            .iter()
            .map(|(k, v)| ((*k).try_into().unwrap(), v.clone()))
            .collect();
        let mut buf = bytes::BytesMut::new();
        encode::table(&mut buf, &table);
        buf[4..].to_vec()
    }

    fn read(mechanism: &[u8], response: &[u8]) -> Result<(String, String), AuthError> {
        let c = Credentials::read(mechanism, response)?;
        let password = String::from_utf8_lossy(&c.password).into_owned();
        Ok((c.user_name(), password))
    }

    #[test]
    fn plain() {
        let ok = |u: &str, p: &str| Ok((u.to_string(), p.to_string()));
        assert_eq!(read(b"PLAIN", b"\0guest\0guest"), ok("guest", "guest"));
        assert_eq!(read(b"PLAIN", b"guest\0guest\0pw"), ok("guest", "pw"));
        assert!(matches!(
            read(b"PLAIN", b"\0guest\0"),
            Err(AuthError::BlankPassword { .. })
        ));
    }

    #[test]
    fn plain_malformed() {
        for bad in [
            &b""[..],
            b"guest",
            b"\0guest",
            b"\0guest\0guest\0",
            b"\0guest\0gu\0est",
            b"bob\0guest\0guest",
        ] {
            let e = read(b"PLAIN", bad).unwrap_err();
            assert!(matches!(e, AuthError::BadResponse { .. }), "{bad:?}: {e:?}");
            assert_eq!(e.reply_code(), 502);
            assert!(!e.reply_text().contains("guest"));
        }
    }

    #[test]
    fn amqplain_login() {
        // Byte-for-byte what amq-protocol (lapin) sends for guest/guest.
        let lapin = b"\x05LOGINS\0\0\0\x05guest\x08PASSWORDS\0\0\0\x05guest";
        assert_eq!(
            read(b"AMQPLAIN", lapin),
            Ok(("guest".into(), "guest".into()))
        );
        let extra = amqplain(&[
            ("PASSWORD", "s3cret".into()),
            ("extra", FieldValue::Bool(true)),
            ("LOGIN", "bob".into()),
        ]);
        assert_eq!(
            read(b"AMQPLAIN", &extra),
            Ok(("bob".into(), "s3cret".into()))
        );
        // First of repeated keys wins, as with RabbitMQ's lists:keysearch.
        // (FieldTable merges repeated keys, so the repeat is spliced in by hand.)
        let mut dup = amqplain(&[("LOGIN", "bob".into())]);
        dup.extend(amqplain(&[
            ("LOGIN", "guest".into()),
            ("PASSWORD", "s3cret".into()),
        ]));
        assert_eq!(read(b"AMQPLAIN", &dup).unwrap().0, "bob");
    }

    #[test]
    fn amqplain_malformed() {
        let missing = amqplain(&[("LOGIN", "guest".into())]);
        let wrong_type = amqplain(&[("LOGIN", "guest".into()), ("PASSWORD", FieldValue::I32(5))]);
        let mut with_prefix = vec![0, 0, 0, 34];
        with_prefix.extend_from_slice(b"\x05LOGINS\0\0\0\x05guest\x08PASSWORDS\0\0\0\x05guest");
        for bad in [
            missing,
            wrong_type,
            with_prefix,
            b"\x05LOG".to_vec(),
            b"\x05LOGINZ".to_vec(),
            Vec::new(),
        ] {
            let e = read(b"AMQPLAIN", &bad).unwrap_err();
            assert!(matches!(e, AuthError::BadResponse { .. }), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn unknown_mechanism() {
        let e = read(b"EXTERNAL", b"").unwrap_err();
        assert_eq!(e, AuthError::UnknownMechanism("EXTERNAL".into()));
        assert_eq!(e.reply_code(), 503);
        assert_eq!(
            e.reply_text(),
            "unknown authentication mechanism 'EXTERNAL'"
        );
        // Mechanism names are case-sensitive, as in RabbitMQ's registry.
        assert!(matches!(
            read(b"plain", b"\0guest\0guest"),
            Err(AuthError::UnknownMechanism(_))
        ));
    }

    proptest! {
        #[test]
        fn any_response_never_panics(mech in prop::sample::select(vec!["PLAIN", "AMQPLAIN", "X"]), resp in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Credentials::read(mech.as_bytes(), &resp);
        }

        #[test]
        fn table_like_responses_never_panic(resp in prop::collection::vec(prop::sample::select(vec![0u8, 1, 4, 5, b'S', b'F', b'A', b'L', 0xff]), 0..64)) {
            let _ = Credentials::read(b"AMQPLAIN", &resp);
        }
    }
}

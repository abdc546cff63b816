//! The client's side of SASL: the response for PLAIN or AMQPLAIN (the server side, which
//! reads them, is `auth::sasl`).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{Error, Result};
use crate::protocol::wire::encode;
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// PLAIN when offered (every current server), else AMQPLAIN: the mechanism's name and
/// the response for `user` and `password`.
pub(super) fn respond(offered: &[u8], user: &str, password: &str) -> Result<(ShortString, Bytes)> {
    let offers = |name: &[u8]| offered.split(|b| *b == b' ').any(|m| m == name);
    if offers(b"PLAIN") {
        let mut r = BytesMut::with_capacity(user.len() + password.len() + 2);
        r.put_u8(0);
        r.put_slice(user.as_bytes());
        r.put_u8(0);
        r.put_slice(password.as_bytes());
        return Ok((ShortString::from_static("PLAIN"), r.freeze()));
    }
    if offers(b"AMQPLAIN") {
        // A field table without its length prefix.
        let table: FieldTable = [
            (ShortString::from_static("LOGIN"), FieldValue::from(user)),
            (
                ShortString::from_static("PASSWORD"),
                FieldValue::from(password),
            ),
        ]
        .into_iter()
        .collect();
        let mut r = BytesMut::new();
        encode::table(&mut r, &table);
        return Ok((ShortString::from_static("AMQPLAIN"), r.freeze().slice(4..)));
    }
    Err(Error::Protocol(format!(
        "the server offers neither PLAIN nor AMQPLAIN (it offers {:?})",
        String::from_utf8_lossy(offered)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{PasswordHash, Users};

    /// Both responses are what the broker's own (independently written) SASL parser
    /// accepts.
    #[test]
    fn plain_when_offered_else_amqplain() {
        let users = Users::new();
        users
            .add_user("guest", PasswordHash::new("pw"), vec![])
            .unwrap();
        let (m, r) = respond(b"AMQPLAIN PLAIN", "guest", "pw").unwrap();
        assert_eq!(m, "PLAIN");
        assert_eq!(users.authenticate(b"PLAIN", &r).unwrap(), "guest");
        let (m, r) = respond(b"AMQPLAIN", "guest", "pw").unwrap();
        assert_eq!(m, "AMQPLAIN");
        assert_eq!(users.authenticate(b"AMQPLAIN", &r).unwrap(), "guest");
        assert!(respond(b"EXTERNAL", "guest", "pw").is_err());
        // A mechanism name is a whole word of the list.
        assert!(respond(b"PLAINX", "guest", "pw").is_err());
    }
}

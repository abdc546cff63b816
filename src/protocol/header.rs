//! The 8-octet protocol header a client opens every connection with.
//!
//! It is the only thing on the wire that is not a frame, so it gets its own check. The
//! spec's rule for a header we do not accept is to answer with the header we do speak and
//! close the socket; deciding that as soon as one octet differs means a peer speaking
//! something else entirely (HTTP, TLS, another AMQP version) is turned away without
//! waiting for eight octets that may never come.

/// `AMQP`, then protocol id 0 and version 0-9-1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// What the octets received so far say about the protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// All 8 octets are there and they are `AMQP 0 0 9 1`; frames follow them.
    Ok,
    /// Everything so far matches; wait for more.
    NeedMore,
    /// Not AMQP 0-9-1: the server must answer with [`PROTOCOL_HEADER`] and close.
    Mismatch,
}

/// Checks the start of a connection's input. Only the first 8 octets are looked at; what
/// follows them is the first frame and is the caller's to keep.
///
/// Only 0-9-1 is accepted. RabbitMQ also takes the 0-9 header `AMQP 1 1 0 9` as 0-9-1,
/// but fedamq speaks exactly one version, so that is a mismatch too.
pub fn check_protocol_header(buf: &[u8]) -> HeaderCheck {
    if buf.iter().zip(PROTOCOL_HEADER.iter()).any(|(a, b)| a != b) {
        HeaderCheck::Mismatch
    } else if buf.len() < PROTOCOL_HEADER.len() {
        HeaderCheck::NeedMore
    } else {
        HeaderCheck::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_header_is_ok() {
        assert_eq!(
            check_protocol_header(b"AMQP\x00\x00\x09\x01"),
            HeaderCheck::Ok
        );
        assert_eq!(check_protocol_header(&PROTOCOL_HEADER), HeaderCheck::Ok);
    }

    #[test]
    fn trailing_frame_bytes_are_ignored() {
        let mut input = PROTOCOL_HEADER.to_vec();
        input.extend_from_slice(b"\x01\x00\x00\x00\x00\x00\x04");
        assert_eq!(check_protocol_header(&input), HeaderCheck::Ok);
    }

    #[test]
    fn every_proper_prefix_needs_more() {
        for n in 0..PROTOCOL_HEADER.len() {
            assert_eq!(
                check_protocol_header(&PROTOCOL_HEADER[..n]),
                HeaderCheck::NeedMore,
                "{n} octets"
            );
        }
    }

    #[test]
    fn other_versions_mismatch() {
        for other in [
            &b"AMQP\x01\x01\x00\x09"[..], // 0-9 (legacy)
            b"AMQP\x00\x00\x08\x00",      // 0-8
            b"AMQP\x00\x01\x00\x00",      // 1.0
            b"AMQP\x03\x01\x00\x00",      // 1.0 SASL
            b"AMQP\x00\x00\x09\x00",      // 0-9-0 written the 0-9-1 way
            b"AMQP\x00\x00\x09\x02",
            b"amqp\x00\x00\x09\x01",
        ] {
            assert_eq!(
                check_protocol_header(other),
                HeaderCheck::Mismatch,
                "{other:?}"
            );
        }
    }

    #[test]
    fn mismatch_is_decided_as_soon_as_an_octet_differs() {
        assert_eq!(check_protocol_header(b"G"), HeaderCheck::Mismatch);
        assert_eq!(check_protocol_header(b"GET / HTTP"), HeaderCheck::Mismatch);
        assert_eq!(
            check_protocol_header(b"\x16\x03\x01"),
            HeaderCheck::Mismatch
        ); // TLS
        assert_eq!(check_protocol_header(b"AMQP\x01"), HeaderCheck::Mismatch);
        assert_eq!(
            check_protocol_header(b"AMQP\x00\x00\x08"),
            HeaderCheck::Mismatch
        );
        assert_eq!(
            check_protocol_header(b"AMQP\x00\x00\x09"),
            HeaderCheck::NeedMore
        );
    }

    proptest! {
        #[test]
        fn agrees_with_a_plain_comparison(raw in proptest::collection::vec(any::<u8>(), 0..16),
                                          use_prefix in 0usize..=8) {
            // Half the time start from a real prefix so the interesting paths get hit.
            let mut input = PROTOCOL_HEADER[..use_prefix].to_vec();
            input.extend_from_slice(&raw);
            let n = input.len().min(8);
            let expected = if input[..n] != PROTOCOL_HEADER[..n] {
                HeaderCheck::Mismatch
            } else if n < 8 {
                HeaderCheck::NeedMore
            } else {
                HeaderCheck::Ok
            };
            prop_assert_eq!(check_protocol_header(&input), expected);
        }
    }
}

//! encode -> decode is the identity for every method, for the content properties and for
//! field tables; decoding arbitrary bytes never panics.

mod support;

use bytes::{Bytes, BytesMut};
use fedamq::protocol::generated::methods::{METHODS, Method};
use fedamq::protocol::generated::properties::{BasicProperties, EncodedBasicProperties};
use fedamq::protocol::wire::{Decoder, encode};
use proptest::prelude::*;
use support::{arbitrary, prims};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_method_round_trips(method in arbitrary::any_method()) {
        let mut buf = BytesMut::new();
        method.encode(&mut buf);
        let decoded = Method::decode(&buf).map_err(|e| TestCaseError::fail(format!("{}: {e}", method.name())))?;
        prop_assert_eq!(decoded, method);
    }

    #[test]
    fn basic_properties_round_trip(props in arbitrary::basic_properties()) {
        let mut buf = BytesMut::new();
        props.encode(&mut buf);
        let decoded = BasicProperties::decode_bytes(&buf.freeze()).unwrap();
        prop_assert_eq!(decoded, props);
    }

    /// The checked-and-indexed form reads back every property as the full decode does,
    /// and encodes to the same bytes.
    #[test]
    fn encoded_properties_read_back_every_property(props in arbitrary::basic_properties()) {
        let mut buf = BytesMut::new();
        props.encode(&mut buf);
        let wire = buf.freeze();
        let encoded = EncodedBasicProperties::encode(&props);
        prop_assert_eq!(encoded.as_bytes(), &wire);
        let decoded = EncodedBasicProperties::decode(wire).unwrap();
        prop_assert_eq!(&decoded, &encoded);
        for e in [&encoded, &decoded] {
            prop_assert_eq!(e.content_type(), props.content_type.clone());
            prop_assert_eq!(e.content_encoding(), props.content_encoding.clone());
            prop_assert_eq!(e.headers(), props.headers.clone());
            prop_assert_eq!(e.delivery_mode(), props.delivery_mode);
            prop_assert_eq!(e.priority(), props.priority);
            prop_assert_eq!(e.correlation_id(), props.correlation_id.clone());
            prop_assert_eq!(e.reply_to(), props.reply_to.clone());
            prop_assert_eq!(e.expiration(), props.expiration.clone());
            prop_assert_eq!(e.message_id(), props.message_id.clone());
            prop_assert_eq!(e.timestamp(), props.timestamp);
            prop_assert_eq!(e.r#type(), props.r#type.clone());
            prop_assert_eq!(e.user_id(), props.user_id.clone());
            prop_assert_eq!(e.app_id(), props.app_id.clone());
            prop_assert_eq!(e.cluster_id(), props.cluster_id.clone());
            prop_assert_eq!(&e.to_properties(), &props);
        }
    }

    /// The checking pass accepts exactly what the full decode accepts.
    #[test]
    fn encoded_properties_accept_what_decode_accepts(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let raw = Bytes::from(bytes);
        let full = BasicProperties::decode_bytes(&raw);
        let checked = EncodedBasicProperties::decode(raw);
        prop_assert_eq!(checked.as_ref().err(), full.as_ref().err());
        if let (Ok(full), Ok(checked)) = (full, checked) {
            // Compared as bytes: a NaN in the headers is not equal to itself.
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            checked.to_properties().encode(&mut a);
            full.encode(&mut b);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn field_tables_round_trip(table in prims::table()) {
        let mut buf = BytesMut::new();
        encode::table(&mut buf, &table);
        let mut d = Decoder::from_slice(&buf);
        let decoded = d.table().unwrap();
        d.finish().unwrap();
        prop_assert_eq!(decoded, table);
    }

    #[test]
    fn decoding_arbitrary_method_payloads_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Method::decode(&bytes);
    }

    /// Valid class and method ids followed by garbage reach every method's decoder.
    #[test]
    fn decoding_garbage_arguments_never_panics(
        index in 0..METHODS.len(),
        args in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let info = &METHODS[index];
        let mut buf = BytesMut::new();
        encode::short(&mut buf, info.class_id);
        encode::short(&mut buf, info.method_id);
        buf.extend_from_slice(&args);
        let _ = Method::decode(&buf);
    }

    #[test]
    fn decoding_arbitrary_properties_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = BasicProperties::decode_bytes(&Bytes::from(bytes));
    }
}

#[test]
fn every_method_has_a_metadata_entry_that_matches_its_variant() {
    for info in METHODS.iter() {
        let looked_up =
            fedamq::protocol::generated::methods::method_info(info.class_id, info.method_id)
                .expect("method_info finds every method");
        assert_eq!(looked_up, info);
    }
}

#[test]
fn a_payload_with_trailing_bytes_is_refused() {
    let mut buf = BytesMut::new();
    Method::from(fedamq::protocol::generated::methods::ChannelOpenOk {}).encode(&mut buf);
    buf.extend_from_slice(b"junk");
    let err = Method::decode(&buf).unwrap_err();
    assert_eq!(err, fedamq::protocol::DecodeError::TrailingBytes(4));
}

#[test]
fn unknown_method_ids_are_refused() {
    let mut buf = BytesMut::new();
    encode::short(&mut buf, 60);
    encode::short(&mut buf, 999);
    let err = Method::decode(&buf).unwrap_err();
    assert_eq!(
        err,
        fedamq::protocol::DecodeError::UnknownMethod {
            class_id: 60,
            method_id: 999
        }
    );
}

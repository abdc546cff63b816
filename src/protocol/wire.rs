//! Primitive AMQP types on the wire, in network byte order: the layer the generated
//! method and property codecs are written against.
//!
//! Decoding reads a borrowed slice from the front, so a method can be decoded where it
//! lies in the read buffer; long strings and byte arrays come out as slices of the
//! received frame when it is a [`Bytes`], rather than copies. Every read checks
//! its length first: a hostile length prefix yields [`DecodeError::Truncated`], never a
//! large allocation or a panic. Encoding cannot fail, because the types already enforce
//! the limits that matter (a [`ShortString`] is at most 255 octets).

use bytes::Bytes;

use super::{DecodeError, FieldTable, FieldValue, ShortString};

/// How deeply tables and arrays may nest (the top-level table counts as one level).
/// Decoding recurses once per level, so this bound is what keeps a hostile payload of
/// `F`s from overflowing the stack. Real tables nest two or three levels at most.
pub const MAX_NESTING: usize = 64;

/// Reads AMQP primitives off the front of a borrowed buffer.
///
/// Decoding works on a slice so that method and header frames can be decoded straight
/// from the connection's read buffer, without splitting them off as [`Bytes`] (each split
/// and drop of a shared buffer is an atomic reference-count update). Long strings and
/// byte arrays do need an owner: when the slice belongs to a [`Bytes`] ([`Decoder::new`])
/// they are cut from it without a copy, otherwise ([`Decoder::from_slice`]) copied.
#[derive(Debug, Clone, Default)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    /// The buffer `buf` is a tail of, if any: long strings are sliced from it.
    owner: Option<&'a Bytes>,
}

impl<'a> Decoder<'a> {
    /// Reads `buf`; long strings come out as slices of it.
    pub fn new(buf: &'a Bytes) -> Self {
        Self {
            buf,
            owner: Some(buf),
        }
    }

    /// Reads `buf`; long strings come out as copies.
    pub fn from_slice(buf: &'a [u8]) -> Self {
        Self { buf, owner: None }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// For a method payload: every field has been read, so anything left over means the
    /// peer and we disagree about the method's layout.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Whatever has not been read yet (e.g. content properties after the fixed part of a
    /// content header).
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// The next `N` octets, or `Truncated`.
    #[inline]
    fn array_of<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(*head)
            }
            None => Err(DecodeError::Truncated {
                needed: N,
                available: self.buf.len(),
            }),
        }
    }

    /// The next `n` octets, borrowed.
    #[inline]
    fn slice(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(DecodeError::Truncated {
                needed: n,
                available: self.buf.len(),
            }),
        }
    }

    #[inline]
    pub fn octet(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn short(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn long(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array_of()?))
    }

    #[inline]
    pub fn longlong(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array_of()?))
    }

    /// Seconds since the epoch; on the wire it is just a longlong.
    pub fn timestamp(&mut self) -> Result<u64, DecodeError> {
        self.longlong()
    }

    /// The next `n` octets: a slice of the owner, or a copy when there is none.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let part = self.slice(n)?;
        Ok(match self.owner {
            Some(owner) => owner.slice_ref(part),
            None => Bytes::copy_from_slice(part),
        })
    }

    #[inline]
    pub fn shortstr(&mut self) -> Result<ShortString, DecodeError> {
        let len = usize::from(self.octet()?);
        if len > self.buf.len() {
            return Err(DecodeError::Truncated {
                needed: len,
                available: self.buf.len(),
            });
        }
        // Copied (inline when short), not sliced: see ShortString. A u8 length fits.
        let s = ShortString::from_prefix(self.buf, len).unwrap_or_default();
        self.buf = &self.buf[len..];
        Ok(s)
    }

    pub fn longstr(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.len32()?;
        self.bytes(len)
    }

    /// Moves past `n` octets.
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.slice(n).map(drop)
    }

    /// Moves past a shortstr.
    pub fn skip_shortstr(&mut self) -> Result<(), DecodeError> {
        let len = usize::from(self.octet()?);
        self.skip(len)
    }

    /// Moves past a longstr.
    pub fn skip_longstr(&mut self) -> Result<(), DecodeError> {
        let len = self.len32()?;
        self.skip(len)
    }

    /// Moves past a field table, checking it exactly as [`table`](Self::table) would
    /// (value types, lengths, nesting) but building nothing: for properties that are
    /// checked on arrival and decoded only if someone asks.
    pub fn skip_table(&mut self) -> Result<(), DecodeError> {
        self.skip_table_at(1)
    }

    pub fn table(&mut self) -> Result<FieldTable, DecodeError> {
        self.table_at(1)
    }

    /// A field array (`A` payload: a u32 byte length, then type-tagged values).
    pub fn array(&mut self) -> Result<Vec<FieldValue>, DecodeError> {
        self.array_at(1)
    }

    /// One type-tagged value, as it appears inside a table or array.
    pub fn field_value(&mut self) -> Result<FieldValue, DecodeError> {
        self.field_value_at(0)
    }

    fn len32(&mut self) -> Result<usize, DecodeError> {
        let len = self.long()?;
        // On a 16-bit target a length that does not fit is necessarily more than remains.
        usize::try_from(len).map_err(|_| DecodeError::Truncated {
            needed: usize::MAX,
            available: self.buf.len(),
        })
    }

    // `depth` is the nesting level of the table being read; the top-level one is 1.
    fn table_at(&mut self, depth: usize) -> Result<FieldTable, DecodeError> {
        let len = self.len32()?;
        let mut entries = Decoder {
            buf: self.slice(len)?,
            owner: self.owner,
        };
        let mut table = FieldTable::new();
        while !entries.is_empty() {
            let key = entries.shortstr()?;
            let value = entries.field_value_at(depth)?;
            table.push(key, value);
        }
        Ok(table)
    }

    fn array_at(&mut self, depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
        let len = self.len32()?;
        let mut items = Decoder {
            buf: self.slice(len)?,
            owner: self.owner,
        };
        let mut array = Vec::new();
        while !items.is_empty() {
            array.push(items.field_value_at(depth)?);
        }
        Ok(array)
    }

    // `depth` is the nesting level of the container this value sits in.
    fn field_value_at(&mut self, depth: usize) -> Result<FieldValue, DecodeError> {
        let letter = self.octet()?;
        Ok(match letter {
            b't' => FieldValue::Bool(self.octet()? != 0),
            b'b' => FieldValue::I8(i8::from_be_bytes(self.array_of()?)),
            b'B' => FieldValue::U8(self.octet()?),
            b's' => FieldValue::I16(i16::from_be_bytes(self.array_of()?)),
            b'u' => FieldValue::U16(self.short()?),
            b'I' => FieldValue::I32(i32::from_be_bytes(self.array_of()?)),
            b'i' => FieldValue::U32(self.long()?),
            b'l' => FieldValue::I64(i64::from_be_bytes(self.array_of()?)),
            b'f' => FieldValue::F32(f32::from_be_bytes(self.array_of()?)),
            b'd' => FieldValue::F64(f64::from_be_bytes(self.array_of()?)),
            b'D' => {
                let scale = self.octet()?;
                let value = self.long()?;
                FieldValue::Decimal { scale, value }
            }
            b'S' => FieldValue::LongString(self.longstr()?),
            b'x' => FieldValue::ByteArray(self.longstr()?),
            b'A' => FieldValue::Array(self.array_at(nested(depth)?)?),
            b'T' => FieldValue::Timestamp(self.longlong()?),
            b'F' => FieldValue::Table(self.table_at(nested(depth)?)?),
            b'V' => FieldValue::Void,
            other => return Err(DecodeError::BadFieldType(other)),
        })
    }
}

impl Decoder<'_> {
    // The skipping twins of `table_at`, `array_at` and `field_value_at`: they accept
    // exactly what those accept.
    fn skip_table_at(&mut self, depth: usize) -> Result<(), DecodeError> {
        let len = self.len32()?;
        let mut entries = Decoder {
            buf: self.slice(len)?,
            owner: None,
        };
        while !entries.is_empty() {
            entries.skip_shortstr()?;
            entries.skip_field_value_at(depth)?;
        }
        Ok(())
    }

    fn skip_array_at(&mut self, depth: usize) -> Result<(), DecodeError> {
        let len = self.len32()?;
        let mut items = Decoder {
            buf: self.slice(len)?,
            owner: None,
        };
        while !items.is_empty() {
            items.skip_field_value_at(depth)?;
        }
        Ok(())
    }

    fn skip_field_value_at(&mut self, depth: usize) -> Result<(), DecodeError> {
        let letter = self.octet()?;
        match letter {
            b't' | b'b' | b'B' => self.skip(1),
            b's' | b'u' => self.skip(2),
            b'I' | b'i' | b'f' => self.skip(4),
            b'l' | b'd' | b'T' => self.skip(8),
            b'D' => self.skip(5),
            b'S' | b'x' => self.skip_longstr(),
            b'A' => self.skip_array_at(nested(depth)?),
            b'F' => self.skip_table_at(nested(depth)?),
            b'V' => Ok(()),
            other => Err(DecodeError::BadFieldType(other)),
        }
    }
}

fn nested(depth: usize) -> Result<usize, DecodeError> {
    let next = depth.saturating_add(1);
    if next > MAX_NESTING {
        Err(DecodeError::TooDeep)
    } else {
        Ok(next)
    }
}

/// Writers for the primitives. All infallible: the types already guarantee the limits.
pub mod encode {
    use bytes::{BufMut, BytesMut};

    use super::super::{FieldTable, FieldValue, ShortString};

    /// Lengths over 4 GiB cannot be expressed; nothing that fits in a frame gets near, so
    /// this saturates rather than making every writer fallible.
    fn len_u32(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn octet(buf: &mut BytesMut, v: u8) {
        buf.put_u8(v);
    }

    pub fn short(buf: &mut BytesMut, v: u16) {
        buf.put_u16(v);
    }

    pub fn long(buf: &mut BytesMut, v: u32) {
        buf.put_u32(v);
    }

    pub fn longlong(buf: &mut BytesMut, v: u64) {
        buf.put_u64(v);
    }

    pub fn timestamp(buf: &mut BytesMut, v: u64) {
        buf.put_u64(v);
    }

    pub fn shortstr(buf: &mut BytesMut, v: &ShortString) {
        buf.put_u8(v.len_octet());
        buf.put_slice(v.as_bytes());
    }

    pub fn longstr(buf: &mut BytesMut, v: &[u8]) {
        buf.put_u32(len_u32(v.len()));
        buf.put_slice(v);
    }

    /// Writes a u32 length, then whatever `body` writes, then patches the length in. This
    /// avoids both a sizing pass over nested tables and an intermediate buffer.
    fn length_prefixed(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
        let slot = buf.len();
        buf.put_u32(0);
        body(buf);
        let written = buf.len().saturating_sub(slot + 4);
        if let Some(dst) = buf.get_mut(slot..slot + 4) {
            dst.copy_from_slice(&len_u32(written).to_be_bytes());
        }
    }

    pub fn table(buf: &mut BytesMut, v: &FieldTable) {
        length_prefixed(buf, |buf| {
            for (key, value) in v.iter() {
                shortstr(buf, key);
                field_value(buf, value);
            }
        });
    }

    pub fn array(buf: &mut BytesMut, v: &[FieldValue]) {
        length_prefixed(buf, |buf| {
            for value in v {
                field_value(buf, value);
            }
        });
    }

    /// The type letter, then the value.
    pub fn field_value(buf: &mut BytesMut, v: &FieldValue) {
        buf.put_u8(v.type_letter());
        match v {
            FieldValue::Bool(b) => buf.put_u8(u8::from(*b)),
            FieldValue::I8(n) => buf.put_i8(*n),
            FieldValue::U8(n) => buf.put_u8(*n),
            FieldValue::I16(n) => buf.put_i16(*n),
            FieldValue::U16(n) => buf.put_u16(*n),
            FieldValue::I32(n) => buf.put_i32(*n),
            FieldValue::U32(n) => buf.put_u32(*n),
            FieldValue::I64(n) => buf.put_i64(*n),
            FieldValue::F32(n) => buf.put_f32(*n),
            FieldValue::F64(n) => buf.put_f64(*n),
            FieldValue::Decimal { scale, value } => {
                buf.put_u8(*scale);
                buf.put_u32(*value);
            }
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => longstr(buf, b),
            FieldValue::Array(a) => array(buf, a),
            FieldValue::Timestamp(t) => buf.put_u64(*t),
            FieldValue::Table(t) => table(buf, t),
            FieldValue::Void => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::field_table::strategies;
    use bytes::BytesMut;
    use proptest::prelude::*;

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    fn dec(b: &[u8]) -> Decoder<'_> {
        Decoder::from_slice(b)
    }

    fn encoded_table(t: &FieldTable) -> BytesMut {
        let mut buf = BytesMut::new();
        encode::table(&mut buf, t);
        buf
    }

    fn roundtrip_table(t: &FieldTable) -> FieldTable {
        let wire = encoded_table(t).freeze();
        let mut d = Decoder::new(&wire);
        let back = d.table().expect("decodes");
        d.finish().expect("no trailing bytes");
        back
    }

    #[test]
    fn primitives_are_big_endian() {
        let mut buf = BytesMut::new();
        encode::octet(&mut buf, 0x01);
        encode::short(&mut buf, 0x0203);
        encode::long(&mut buf, 0x0405_0607);
        encode::longlong(&mut buf, 0x0809_0a0b_0c0d_0e0f);
        encode::timestamp(&mut buf, 0x1011_1213_1415_1617);
        assert_eq!(
            &buf[..],
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x10, 0x11, 0x12, 0x13, 0x14,
                0x15, 0x16, 0x17
            ]
        );
        let mut d = Decoder::from_slice(&buf);
        assert_eq!(d.remaining(), 23);
        assert_eq!(d.octet(), Ok(0x01));
        assert_eq!(d.short(), Ok(0x0203));
        assert_eq!(d.long(), Ok(0x0405_0607));
        assert_eq!(d.longlong(), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(d.timestamp(), Ok(0x1011_1213_1415_1617));
        assert!(d.is_empty());
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn short_reads_are_truncated_not_panics() {
        assert_eq!(
            dec(&[]).octet(),
            Err(DecodeError::Truncated {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(
            dec(&[1]).short(),
            Err(DecodeError::Truncated {
                needed: 2,
                available: 1
            })
        );
        assert_eq!(
            dec(&[1, 2, 3]).long(),
            Err(DecodeError::Truncated {
                needed: 4,
                available: 3
            })
        );
        assert_eq!(
            dec(&[0; 7]).longlong(),
            Err(DecodeError::Truncated {
                needed: 8,
                available: 7
            })
        );
        assert_eq!(
            dec(&[0; 7]).timestamp(),
            Err(DecodeError::Truncated {
                needed: 8,
                available: 7
            })
        );
        assert_eq!(
            dec(&[1, 2]).bytes(3),
            Err(DecodeError::Truncated {
                needed: 3,
                available: 2
            })
        );
        assert_eq!(
            dec(&[5, b'a']).shortstr(),
            Err(DecodeError::Truncated {
                needed: 5,
                available: 1
            })
        );
    }

    #[test]
    fn finish_reports_trailing_bytes() {
        let mut d = dec(&[1, 2, 3]);
        assert_eq!(d.octet(), Ok(1));
        assert_eq!(d.finish(), Err(DecodeError::TrailingBytes(2)));
    }

    #[test]
    fn rest_returns_unread_without_copy() {
        let input = Bytes::from_static(b"\x00\x01rest");
        let mut d = Decoder::new(&input);
        assert_eq!(d.short(), Ok(1));
        let rest = d.rest();
        assert_eq!(rest, b"rest");
        assert_eq!(rest.as_ptr(), input[2..].as_ptr());
    }

    #[test]
    fn strings_round_trip_and_are_zero_copy() {
        let mut buf = BytesMut::new();
        encode::shortstr(&mut buf, &ss("route"));
        encode::longstr(&mut buf, b"body\x00\xff");
        encode::shortstr(&mut buf, &ShortString::default());
        encode::longstr(&mut buf, b"");
        assert_eq!(
            &buf[..],
            b"\x05route\x00\x00\x00\x06body\x00\xff\x00\x00\x00\x00\x00"
        );
        let frozen = buf.freeze();
        let mut d = Decoder::new(&frozen);
        let s = d.shortstr().unwrap();
        // Short strings are copied inline (cheaper than a shared slice); longstrs are slices.
        assert_eq!(s, "route");
        let l = d.longstr().unwrap();
        assert_eq!(&l[..], b"body\x00\xff");
        assert_eq!(l.as_ptr(), frozen[10..].as_ptr());
        assert_eq!(d.shortstr().unwrap(), "");
        assert_eq!(&d.longstr().unwrap()[..], b"");
        d.finish().unwrap();
    }

    #[test]
    fn shortstr_255() {
        let long = ShortString::new(vec![b'z'; 255]).unwrap();
        let mut buf = BytesMut::new();
        encode::shortstr(&mut buf, &long);
        assert_eq!(buf.len(), 256);
        assert_eq!(buf.first(), Some(&255));
        assert_eq!(Decoder::from_slice(&buf).shortstr(), Ok(long));
    }

    #[test]
    fn hostile_longstr_length_is_truncated() {
        let mut d = dec(&[0xff, 0xff, 0xff, 0xff, b'a', b'b']);
        assert_eq!(
            d.longstr(),
            Err(DecodeError::Truncated {
                needed: 0xffff_ffff,
                available: 2
            })
        );
        let mut d = dec(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.table(), Err(DecodeError::Truncated { .. })));
        let mut d = dec(&[0x00, 0x00, 0x00, 0x07, b'x']);
        assert!(matches!(d.table(), Err(DecodeError::Truncated { .. })));
    }

    /// Every type letter, by hand from the layout: key shortstr, type octet, value.
    #[test]
    fn every_type_letter_known_bytes() {
        let cases: Vec<(FieldValue, &[u8])> = vec![
            (FieldValue::Bool(true), b"t\x01"),
            (FieldValue::Bool(false), b"t\x00"),
            (FieldValue::I8(-2), b"b\xfe"),
            (FieldValue::U8(0xfe), b"B\xfe"),
            (FieldValue::I16(-2), b"s\xff\xfe"),
            (FieldValue::U16(0x1234), b"u\x12\x34"),
            (FieldValue::I32(-2), b"I\xff\xff\xff\xfe"),
            (FieldValue::U32(0x1234_5678), b"i\x12\x34\x56\x78"),
            (FieldValue::I64(-2), b"l\xff\xff\xff\xff\xff\xff\xff\xfe"),
            (FieldValue::F32(1.0), b"f\x3f\x80\x00\x00"),
            (FieldValue::F64(-2.0), b"d\xc0\x00\x00\x00\x00\x00\x00\x00"),
            (
                FieldValue::Decimal {
                    scale: 2,
                    value: 12345,
                },
                b"D\x02\x00\x00\x30\x39",
            ),
            (FieldValue::from("hi"), b"S\x00\x00\x00\x02hi"),
            (
                FieldValue::ByteArray(Bytes::from_static(b"\x00\xff")),
                b"x\x00\x00\x00\x02\x00\xff",
            ),
            (
                FieldValue::Array(vec![FieldValue::U8(7), FieldValue::Void]),
                b"A\x00\x00\x00\x03B\x07V",
            ),
            (
                FieldValue::Timestamp(0x0102_0304_0506_0708),
                b"T\x01\x02\x03\x04\x05\x06\x07\x08",
            ),
            (
                FieldValue::Table([(ss("k"), FieldValue::Bool(true))].into_iter().collect()),
                b"F\x00\x00\x00\x04\x01kt\x01",
            ),
            (FieldValue::Void, b"V"),
        ];
        for (value, wire) in cases {
            let mut buf = BytesMut::new();
            encode::field_value(&mut buf, &value);
            assert_eq!(&buf[..], wire, "encoding {value:?}");
            let mut d = dec(wire);
            assert_eq!(d.field_value().as_ref(), Ok(&value), "decoding {wire:?}");
            assert_eq!(d.finish(), Ok(()));

            // And inside a table, under a key.
            let table: FieldTable = [(ss("key"), value.clone())].into_iter().collect();
            let mut expected = vec![];
            let body_len = u32::try_from(4 + wire.len()).unwrap();
            expected.extend_from_slice(&body_len.to_be_bytes());
            expected.extend_from_slice(b"\x03key");
            expected.extend_from_slice(wire);
            assert_eq!(&encoded_table(&table)[..], &expected[..]);
            assert_eq!(roundtrip_table(&table), table);
        }
    }

    #[test]
    fn known_table_bytes() {
        // What a client sends as connection.start-ok client-properties, roughly.
        let caps: FieldTable = [
            (ss("publisher_confirms"), FieldValue::Bool(true)),
            (ss("basic.nack"), FieldValue::Bool(true)),
        ]
        .into_iter()
        .collect();
        let props: FieldTable = [
            (ss("product"), FieldValue::from("fedamq")),
            (ss("capabilities"), FieldValue::Table(caps)),
        ]
        .into_iter()
        .collect();
        let mut expected: Vec<u8> = vec![];
        let mut inner: Vec<u8> = vec![];
        inner.extend_from_slice(b"\x12publisher_confirmst\x01");
        inner.extend_from_slice(b"\x0abasic.nackt\x01");
        let mut outer: Vec<u8> = vec![];
        outer.extend_from_slice(b"\x07productS\x00\x00\x00\x06fedamq");
        outer.extend_from_slice(b"\x0ccapabilitiesF");
        outer.extend_from_slice(&u32::try_from(inner.len()).unwrap().to_be_bytes());
        outer.extend_from_slice(&inner);
        expected.extend_from_slice(&u32::try_from(outer.len()).unwrap().to_be_bytes());
        expected.extend_from_slice(&outer);
        assert_eq!(inner.len(), 34);
        assert_eq!(&encoded_table(&props)[..], &expected[..]);
        assert_eq!(roundtrip_table(&props), props);

        // The empty table is four zero octets.
        assert_eq!(&encoded_table(&FieldTable::new())[..], b"\x00\x00\x00\x00");
        assert_eq!(dec(b"\x00\x00\x00\x00").table(), Ok(FieldTable::new()));
    }

    #[test]
    fn decoded_table_keeps_order_and_duplicates() {
        let wire = b"\x00\x00\x00\x0c\x01bB\x02\x01aB\x01\x01bB\x03";
        let t = dec(wire).table().unwrap();
        let got: Vec<_> = t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        assert_eq!(
            got,
            [
                ("b".to_string(), FieldValue::U8(2)),
                ("a".to_string(), FieldValue::U8(1)),
                ("b".to_string(), FieldValue::U8(3)),
            ]
        );
        assert_eq!(&encoded_table(&t)[..], &wire[..]);
    }

    #[test]
    fn nonzero_bool_octet_is_true() {
        assert_eq!(dec(b"t\x02").field_value(), Ok(FieldValue::Bool(true)));
    }

    #[test]
    fn unknown_type_letters() {
        // 'L' (RabbitMQ's alias for 'l') and the 0-9-1 spec's own letters that RabbitMQ
        // does not use are not ours.
        for letter in [b'L', b'U', b'c', b'X', 0u8, 0xff] {
            assert_eq!(
                dec(&[letter, 0, 0, 0, 0, 0, 0, 0, 0]).field_value(),
                Err(DecodeError::BadFieldType(letter))
            );
        }
        assert_eq!(
            dec(b"\x00\x00\x00\x03\x01kZ").table(),
            Err(DecodeError::BadFieldType(b'Z'))
        );
    }

    #[test]
    fn value_may_not_run_past_its_table() {
        // The table says 4 octets, the U32 inside needs 4 more than that.
        let wire = b"\x00\x00\x00\x04\x01ki\x00\x00\x00\x00\x00";
        assert!(matches!(
            dec(wire).table(),
            Err(DecodeError::Truncated { .. })
        ));
        // Key length past the end of the table.
        assert!(matches!(
            dec(b"\x00\x00\x00\x02\x05k").table(),
            Err(DecodeError::Truncated { .. })
        ));
        // Array element past the end of the array.
        assert!(matches!(
            dec(b"\x00\x00\x00\x02s\x00\x00").array(),
            Err(DecodeError::Truncated { .. })
        ));
    }

    /// `depth` nested tables, the innermost empty: `{a: {a: ... {}}}`.
    fn nested_tables(depth: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = vec![0, 0, 0, 0];
        for _ in 1..depth {
            let mut outer = vec![];
            let len = u32::try_from(inner.len() + 3).unwrap();
            outer.extend_from_slice(&len.to_be_bytes());
            outer.extend_from_slice(b"\x01aF");
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        inner
    }

    /// One table holding `depth - 1` nested arrays: `{a: [[...[]]]}`.
    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut inner: Vec<u8> = vec![0, 0, 0, 0];
        for _ in 2..depth {
            let mut outer = vec![];
            let len = u32::try_from(inner.len() + 1).unwrap();
            outer.extend_from_slice(&len.to_be_bytes());
            outer.push(b'A');
            outer.extend_from_slice(&inner);
            inner = outer;
        }
        let mut table = vec![];
        let len = u32::try_from(inner.len() + 3).unwrap();
        table.extend_from_slice(&len.to_be_bytes());
        table.extend_from_slice(b"\x01aA");
        table.extend_from_slice(&inner);
        table
    }

    #[test]
    fn nesting_limit_is_exact() {
        let ok = nested_tables(MAX_NESTING);
        let t = dec(&ok).table().expect("64 levels are allowed");
        assert_eq!(&encoded_table(&t)[..], &ok[..]);
        assert_eq!(
            dec(&nested_tables(MAX_NESTING + 1)).table(),
            Err(DecodeError::TooDeep)
        );
        assert!(dec(&nested_arrays(MAX_NESTING)).table().is_ok());
        assert_eq!(
            dec(&nested_arrays(MAX_NESTING + 1)).table(),
            Err(DecodeError::TooDeep)
        );
    }

    #[test]
    fn hostile_deep_nesting_is_refused_quickly() {
        // 100k levels of "F" whose lengths all claim "everything after me": without the
        // bound this would recurse 100k frames deep.
        let levels = 100_000usize;
        let mut wire = Vec::with_capacity(levels * 7);
        for i in 0..levels {
            // Each level is a 4-octet length then `\x01kF`; the length covers the rest.
            let rest = u32::try_from((levels - i) * 7 - 4).unwrap();
            wire.extend_from_slice(&rest.to_be_bytes());
            wire.extend_from_slice(b"\x01kF");
        }
        assert_eq!(dec(&wire).table(), Err(DecodeError::TooDeep));
    }

    #[test]
    fn array_entry_points() {
        let arr = vec![FieldValue::from("a"), FieldValue::I64(1)];
        let mut buf = BytesMut::new();
        encode::array(&mut buf, &arr);
        assert_eq!(&buf[..4], &[0, 0, 0, 15]);
        assert_eq!(Decoder::from_slice(&buf).array(), Ok(arr));
    }

    #[test]
    fn table_after_other_fields_patches_right_slot() {
        let mut buf = BytesMut::new();
        encode::short(&mut buf, 0xabcd);
        let t: FieldTable = [(ss("x"), FieldValue::U8(1))].into_iter().collect();
        encode::table(&mut buf, &t);
        encode::octet(&mut buf, 0xee);
        assert_eq!(&buf[..], b"\xab\xcd\x00\x00\x00\x04\x01xB\x01\xee");
    }

    proptest! {
        #[test]
        fn table_roundtrip(t in strategies::field_table()) {
            let wire = encoded_table(&t);
            let frozen = wire.clone().freeze();
            let mut d = Decoder::new(&frozen);
            let back = d.table().unwrap();
            prop_assert_eq!(d.finish(), Ok(()));
            prop_assert_eq!(&back, &t);
            prop_assert_eq!(encoded_table(&back), wire);
        }

        #[test]
        fn value_roundtrip(v in strategies::field_value()) {
            let mut buf = BytesMut::new();
            encode::field_value(&mut buf, &v);
            let mut d = Decoder::from_slice(&buf);
            prop_assert_eq!(d.field_value(), Ok(v));
            prop_assert_eq!(d.finish(), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_as_table_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut d = Decoder::from_slice(&raw);
            if let Ok(t) = d.table() {
                // Whatever decodes re-encodes stably (compared as bytes: NaN and non-0/1
                // bools do not survive a value comparison).
                let once = encoded_table(&t);
                let again = Decoder::from_slice(&once).table().unwrap();
                prop_assert_eq!(encoded_table(&again), once);
            }
        }

        #[test]
        fn skip_table_accepts_exactly_what_table_accepts(
            raw in proptest::collection::vec(any::<u8>(), 0..256),
            t in strategies::field_table(),
        ) {
            for wire in [raw, encoded_table(&t).to_vec()] {
                let mut decoded = Decoder::from_slice(&wire);
                let mut skipped = Decoder::from_slice(&wire);
                let table = decoded.table();
                prop_assert_eq!(skipped.skip_table(), table.map(drop));
                prop_assert_eq!(skipped.remaining(), decoded.remaining());
            }
        }

        #[test]
        fn table_shaped_noise_never_panics(body in proptest::collection::vec(
            prop_oneof![Just(b'F'), Just(b'A'), Just(b'S'), Just(0u8), Just(0xffu8), any::<u8>()],
            0..256,
        )) {
            // A correct outer length, so decoding gets past the first check into the entries.
            let mut wire = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            wire.extend_from_slice(&body);
            let _ = Decoder::from_slice(&wire).table();
        }

        #[test]
        fn every_truncation_of_a_valid_table_is_an_error(t in strategies::field_table()) {
            let wire = encoded_table(&t).freeze();
            for cut in 0..wire.len() {
                prop_assert!(Decoder::from_slice(&wire[..cut]).table().is_err());
            }
        }
    }
}

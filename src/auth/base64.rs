//! Base64 (standard alphabet, `=` padding), as Erlang's `base64` module writes it: the
//! form RabbitMQ stores password hashes in. A dependency for forty lines is not worth it.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes with padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet; padding optional but, if present, correct. `None` on anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let body = match bytes.iter().position(|&c| c == b'=') {
        Some(p) => {
            let pad = &bytes[p..];
            if pad.len() > 2 || pad.iter().any(|&c| c != b'=') || bytes.len() % 4 != 0 {
                return None;
            }
            &bytes[..p]
        }
        None => bytes,
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        let v = B64.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, or two encodings would decode to the same bytes.
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(encode(raw.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(decode("Zm9vYg").unwrap(), b"foob");
    }

    #[test]
    fn bad_padding_and_trailing_bits() {
        assert_eq!(decode("QQ=A"), None);
        assert_eq!(decode("QR=="), None);
        assert_eq!(decode("Q"), None);
        assert_eq!(decode("not base64!"), None);
    }

    proptest! {
        #[test]
        fn round_trip(data in prop::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(decode(&encode(&data)), Some(data));
        }

        #[test]
        fn decode_never_panics(s in "[A-Za-z0-9+/=!]{0,40}") {
            let _ = decode(&s);
        }
    }
}

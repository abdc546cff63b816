//! The AMQP `shortstr`: up to 255 octets behind a one-octet length.
//!
//! Queue names, exchange names, routing keys, consumer tags and table keys are all
//! shortstrs, so they are everywhere on the hot path. Most are short, so they are kept
//! inline (a copy of a few bytes is cheaper than the atomic reference counting of a
//! shared slice), and making the length limit part of the type lets the encoder be
//! infallible.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// AMQP shortstr: at most 255 bytes, NOT UTF-8 validated (bytes pass through as
/// published, as RabbitMQ does).
///
/// Short values (names, routing keys: most of them) are stored inline and copied, which
/// is cheaper than the atomic reference counting a shared slice costs on every clone and
/// drop; longer ones are copied once into a shared allocation. Inline room is 30 bytes
/// (server-named queues, `application/octet-stream` fit) and the type is 32 bytes, the
/// size of a `Bytes`, so structs with many of them stay small to move.
#[derive(Clone)]
pub struct ShortString(Repr);

/// Values up to this long are stored inline.
pub(crate) const INLINE: usize = 30;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Static(&'static [u8]),
    Shared(Arc<[u8]>),
}

/// A value longer than [`ShortString::MAX_LEN`] was offered as a shortstr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("short string of {0} octets is longer than 255")]
pub struct ShortStringTooLong(pub usize);

/// Copies `src` (at most [`INLINE`] octets) to the front of `dst` as two fixed-size,
/// possibly overlapping, moves (its first and last 16, 8, 4 or 2 octets), which the
/// compiler inlines, rather than a call to `memcpy` for a handful of octets.
#[inline]
fn copy_short(dst: &mut [u8; INLINE], src: &[u8]) {
    #[inline(always)]
    fn ends<const N: usize>(dst: &mut [u8; INLINE], src: &[u8]) {
        let n = src.len();
        if let (Some(head), Some(to)) = (src.first_chunk::<N>(), dst.first_chunk_mut::<N>()) {
            *to = *head;
        }
        let to = n.checked_sub(N).and_then(|at| dst.get_mut(at..n));
        if let (Some(tail), Some(to)) = (src.last_chunk::<N>(), to) {
            to.copy_from_slice(tail);
        }
    }
    match src.len() {
        16.. => ends::<16>(dst, src),
        8..=15 => ends::<8>(dst, src),
        4..=7 => ends::<4>(dst, src),
        2..=3 => ends::<2>(dst, src),
        1 => dst[0] = src[0],
        0 => {}
    }
}

impl ShortString {
    pub const MAX_LEN: usize = 255;

    pub fn new(b: impl Into<Bytes>) -> Result<Self, ShortStringTooLong> {
        let b = b.into();
        if b.len() > Self::MAX_LEN {
            return Err(ShortStringTooLong(b.len()));
        }
        Ok(Self::inline(&b).unwrap_or_else(|| Self(Repr::Shared(Arc::from(&b[..])))))
    }

    /// A copy of `b` stored inline, if it is short enough.
    fn inline(b: &[u8]) -> Option<Self> {
        if b.len() > INLINE {
            return None;
        }
        let mut buf = [0u8; INLINE];
        buf[..b.len()].copy_from_slice(b);
        Some(Self(Repr::Inline {
            len: b.len() as u8,
            buf,
        }))
    }

    /// The first `len` octets of `src` (which must hold at least that many). When `src`
    /// has room, a fixed-size block is copied, which compiles to a couple of vector moves
    /// instead of a call to `memcpy`; octets past `len` are never read back.
    #[inline]
    pub(crate) fn from_prefix(src: &[u8], len: usize) -> Option<Self> {
        if len > Self::MAX_LEN || len > src.len() {
            return None;
        }
        if len <= INLINE {
            let mut buf = [0u8; INLINE];
            match src.get(..INLINE) {
                Some(block) => buf.copy_from_slice(block),
                None => copy_short(&mut buf, &src[..len]),
            }
            return Some(Self(Repr::Inline {
                len: len as u8,
                buf,
            }));
        }
        Some(Self(Repr::Shared(Arc::from(&src[..len]))))
    }

    /// Copies `b` (at most 255 octets, checked), inline when short.
    pub(crate) fn copy_from_slice(b: &[u8]) -> Result<Self, ShortStringTooLong> {
        if b.len() > Self::MAX_LEN {
            return Err(ShortStringTooLong(b.len()));
        }
        Ok(Self::inline(b).unwrap_or_else(|| Self(Repr::Shared(Arc::from(b)))))
    }

    /// For literals. Too long a literal is a programmer error, so this panics, and in a
    /// const context that panic is a compile error.
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= Self::MAX_LEN,
            "short string literal longer than 255 octets"
        );
        Self(Repr::Static(s.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Static(s) => s,
            Repr::Shared(b) => b,
        }
    }

    /// The text, or `None` if the octets are not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Static(s) => Bytes::from_static(s),
            _ => Bytes::copy_from_slice(self.as_bytes()),
        }
    }

    /// The length as the octet that prefixes it on the wire; the type guarantees it fits.
    pub(crate) fn len_octet(&self) -> u8 {
        u8::try_from(self.len()).unwrap_or(u8::MAX)
    }
}

impl Default for ShortString {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl PartialEq for ShortString {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortString {}

impl std::hash::Hash for ShortString {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl PartialOrd for ShortString {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortString {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl TryFrom<&str> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::copy_from_slice(s.as_bytes())
    }
}

impl TryFrom<String> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<Bytes> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(b: Bytes) -> Result<Self, Self::Error> {
        Self::new(b)
    }
}

impl TryFrom<&[u8]> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        Self::copy_from_slice(b)
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl fmt::Display for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl PartialEq<str> for ShortString {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortString {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ShortString> for str {
    fn eq(&self, other: &ShortString) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ShortString> for &str {
    fn eq(&self, other: &ShortString) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

// Lets maps keyed by ShortString be looked up with a plain byte slice. Sound because
// Eq, Ord and Hash of ShortString are those of its byte slice.
impl Borrow<[u8]> for ShortString {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for ShortString {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<ShortString> for Bytes {
    fn from(s: ShortString) -> Self {
        s.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeMap, HashMap};
    use std::hash::{Hash, Hasher};

    use proptest::prelude::*;

    const LONGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                           0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                           0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                           0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde";
    // Evaluated at compile time: a literal at the limit is accepted.
    const AT_LIMIT: ShortString = ShortString::from_static(LONGEST);

    #[test]
    fn limit_is_255() {
        assert_eq!(LONGEST.len(), 255);
        assert_eq!(AT_LIMIT.len(), 255);
        assert!(ShortString::new(vec![b'a'; 255]).is_ok());
        assert_eq!(
            ShortString::new(vec![b'a'; 256]),
            Err(ShortStringTooLong(256))
        );
        assert!(ShortString::try_from(&[0u8; 256][..]).is_err());
        assert!(ShortString::try_from("x".repeat(256).as_str()).is_err());
        assert!(ShortString::try_from("x".repeat(256)).is_err());
        assert!(ShortString::try_from(Bytes::from(vec![0; 1000])).is_err());
        assert_eq!(
            ShortStringTooLong(300).to_string(),
            "short string of 300 octets is longer than 255"
        );
    }

    #[test]
    #[should_panic(expected = "longer than 255")]
    fn from_static_rejects_long_literal_at_runtime() {
        let long: &'static str = Box::leak("y".repeat(256).into_boxed_str());
        let _ = ShortString::from_static(long);
    }

    #[test]
    fn conversions_agree() {
        let a = ShortString::from_static("amq.direct");
        assert_eq!(ShortString::try_from("amq.direct").unwrap(), a);
        assert_eq!(
            ShortString::try_from(String::from("amq.direct")).unwrap(),
            a
        );
        assert_eq!(
            ShortString::try_from(Bytes::from_static(b"amq.direct")).unwrap(),
            a
        );
        assert_eq!(ShortString::try_from(&b"amq.direct"[..]).unwrap(), a);
        assert_eq!(a.as_bytes(), b"amq.direct");
        assert_eq!(a.as_str(), Some("amq.direct"));
        assert_eq!(a.len(), 10);
        assert!(!a.is_empty());
        assert_eq!(a.len_octet(), 10);
        assert_eq!(a.clone().into_bytes(), Bytes::from_static(b"amq.direct"));
        assert_eq!(Bytes::from(a), Bytes::from_static(b"amq.direct"));
    }

    #[test]
    fn empty_and_default() {
        let e = ShortString::default();
        assert!(e.is_empty());
        assert_eq!(e.len(), 0);
        assert_eq!(e, "");
        assert_eq!(e.as_str(), Some(""));
    }

    #[test]
    fn non_utf8_passes_through() {
        let s = ShortString::new(vec![0xff, b'a', 0xfe]).unwrap();
        assert_eq!(s.as_str(), None);
        assert_eq!(s.as_bytes(), &[0xff, b'a', 0xfe]);
        assert_eq!(s.to_string(), "\u{fffd}a\u{fffd}");
        assert_eq!(format!("{s:?}"), "\"\u{fffd}a\u{fffd}\"");
    }

    #[test]
    fn debug_and_display_show_text() {
        let s = ShortString::from_static("q\"1");
        assert_eq!(s.to_string(), "q\"1");
        assert_eq!(format!("{s:?}"), "\"q\\\"1\"");
    }

    #[test]
    fn compares_with_str() {
        let s = ShortString::from_static("abc");
        assert!(s == "abc");
        assert!(s == *"abc");
        assert!("abc" == s);
        assert!(*"abc" == s);
        assert!(s != "abd");
    }

    #[test]
    fn borrow_as_slice_in_maps() {
        let mut h: HashMap<ShortString, u32> = HashMap::new();
        h.insert(ShortString::from_static("k"), 7);
        assert_eq!(h.get(&b"k"[..]), Some(&7));
        let mut b: BTreeMap<ShortString, u32> = BTreeMap::new();
        b.insert(ShortString::from_static("k"), 8);
        assert_eq!(b.get(&b"k"[..]), Some(&8));

        let hash = |v: &dyn Fn(&mut DefaultHasher)| {
            let mut h = DefaultHasher::new();
            v(&mut h);
            h.finish()
        };
        let s = ShortString::from_static("hash me");
        assert_eq!(hash(&|h| s.hash(h)), hash(&|h| b"hash me"[..].hash(h)));
    }

    #[test]
    fn long_values_are_shared_short_ones_are_inline() {
        let frame = Bytes::from(vec![b'q'; 100]);
        let long = frame.slice(2..);
        let s = ShortString::new(long.clone()).unwrap();
        let c = s.clone();
        assert_eq!(
            s.as_bytes().as_ptr(),
            c.as_bytes().as_ptr(),
            "clones share long values"
        );
        assert_eq!(s.as_bytes(), &long[..]);
        let short = frame.slice(2..12);
        let s = ShortString::new(short.clone()).unwrap();
        assert_ne!(
            s.as_bytes().as_ptr(),
            short.as_ptr(),
            "short values are copied inline"
        );
        assert_eq!(s.as_bytes(), &short[..]);
        assert_eq!(std::mem::size_of::<ShortString>(), 32);
    }

    proptest! {
        #[test]
        fn from_prefix_copies_exactly_the_prefix(
            src in proptest::collection::vec(any::<u8>(), 0..40),
            cut in 0usize..40,
        ) {
            let len = cut.min(src.len());
            let s = ShortString::from_prefix(&src, len).unwrap();
            prop_assert_eq!(s.as_bytes(), &src[..len]);
            // And from a slice that ends where the string does (no block copy possible).
            let s = ShortString::from_prefix(&src[..len], len).unwrap();
            prop_assert_eq!(s.as_bytes(), &src[..len]);
        }

        #[test]
        fn new_accepts_exactly_up_to_255(v in proptest::collection::vec(any::<u8>(), 0..400)) {
            let r = ShortString::new(v.clone());
            if v.len() <= 255 {
                let s = r.unwrap();
                prop_assert_eq!(s.as_bytes(), &v[..]);
                prop_assert_eq!(usize::from(s.len_octet()), v.len());
            } else {
                prop_assert_eq!(r, Err(ShortStringTooLong(v.len())));
            }
        }

        #[test]
        fn order_matches_slice_order(a in proptest::collection::vec(any::<u8>(), 0..8),
                                     b in proptest::collection::vec(any::<u8>(), 0..8)) {
            let sa = ShortString::new(a.clone()).unwrap();
            let sb = ShortString::new(b.clone()).unwrap();
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
            prop_assert_eq!(sa == sb, a == b);
        }
    }
}

//! Serialization of keys and state values: serde + bincode (2.0.1, kept
//! behind this trait so that it can be replaced without touching users).

use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes and decodes a value to bytes. Implemented for every
/// `Serialize + DeserializeOwned` type.
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()>;
    /// Decodes a value from exactly `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self>;
    /// The encoding of `self` as a new vector.
    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// Appends to a vector directly: bincode's `std::io::Write` adapter costs
/// a call and a byte count per write, which is most of encoding a short key.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::result::Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl<T: Serialize + DeserializeOwned> Codec for T {
    fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        bincode::serde::encode_into_writer(self, VecWriter(out), config()).map_err(|e| {
            Error::Codec {
                op: "encode",
                what: std::any::type_name::<T>().to_owned(),
                message: e.to_string(),
            }
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, config()).map_err(|e| Error::Codec {
                op: "decode",
                what: std::any::type_name::<T>().to_owned(),
                message: format!("{e} (was the state written by another version of the pipeline?)"),
            })?;
        if read != bytes.len() {
            return Err(Error::Codec {
                op: "decode",
                what: std::any::type_name::<T>().to_owned(),
                message: format!(
                    "{} trailing bytes (the stored type differs from the requested one)",
                    bytes.len() - read
                ),
            });
        }
        Ok(value)
    }
}

/// A record key: encodable, cloneable, sendable. Its encoding decides its
/// key group, so it must be deterministic (serde + bincode is).
pub trait Key: Codec + Clone + Send + Sync + 'static {}
impl<T: Codec + Clone + Send + Sync + 'static> Key for T {}

/// [`Codec::encode_into`] for a record key, with the encoding of a
/// `String` key (the commonest) written directly: the same bytes as
/// bincode's (a varint length, then the UTF-8), at a fraction of the cost
/// of going through serde for every record the exchange routes.
///
/// # Errors
/// If the key's `Serialize` implementation fails.
pub fn encode_key<K: Key>(key: &K, out: &mut Vec<u8>) -> Result<()> {
    let any = key as &dyn std::any::Any;
    if let Some(s) = any.downcast_ref::<String>() {
        encode_str(s, out);
        Ok(())
    } else if let Some(s) = any.downcast_ref::<compact_str::CompactString>() {
        encode_str(s, out);
        Ok(())
    } else {
        key.encode_into(out)
    }
}

/// bincode's standard encoding of a string: its length as a varint (one
/// byte up to 250, else a marker byte and the little-endian u16, u32 or
/// u64), then its bytes.
fn encode_str(s: &str, out: &mut Vec<u8>) {
    let n = s.len();
    if n <= 250 {
        out.push(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(251);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(252);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_encode_as_bincode_does() -> Result<()> {
        for len in [0, 1, 250, 251, 65_535, 65_536, 70_000] {
            let key = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let mut fast = vec![7];
            encode_key(&key, &mut fast)?;
            let mut generic = vec![7];
            key.encode_into(&mut generic)?;
            assert_eq!(fast, generic, "a key of {} bytes", key.len());
            assert_eq!(String::decode(&fast[1..])?, key);
        }
        let mut other = Vec::new();
        encode_key(&(1u32, "a".to_owned()), &mut other)?;
        assert_eq!(other, (1u32, "a".to_owned()).encode()?);
        Ok(())
    }

    #[test]
    fn compact_string_keys_encode_and_decode_as_string_keys_do() -> Result<()> {
        // Inline (up to 24 bytes) and on the heap, across the varint steps.
        for len in [0, 1, 24, 25, 250, 251, 70_000] {
            let s = "x".repeat(len);
            let compact = crate::CompactString::from(s.as_str());
            let (mut fast, mut string) = (Vec::new(), Vec::new());
            encode_key(&compact, &mut fast)?;
            encode_key(&s, &mut string)?;
            assert_eq!(fast, string, "a key of {len} bytes");
            let mut generic = Vec::new();
            compact.encode_into(&mut generic)?;
            assert_eq!(generic, string, "serde agrees with the fast path");
            assert_eq!(crate::CompactString::decode(&string)?, compact);
        }
        Ok(())
    }

    #[test]
    fn round_trips_and_rejects_trailing_bytes() -> Result<()> {
        let v = ("word".to_owned(), 42u64);
        let bytes = v.encode()?;
        assert_eq!(<(String, u64)>::decode(&bytes)?, v);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(<(String, u64)>::decode(&longer).is_err());
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

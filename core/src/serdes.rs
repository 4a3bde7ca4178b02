//! Serdes: how a record's key or value is read from and written to the
//! bytes of an external system (a Kafka record, a line of a file), as
//! Kafka's `Serde`s do, and, where a store's descriptor names one, the
//! values of keyed state. The exchange, and state by default, use
//! [`Codec`](crate::Codec) (bincode, [`Bincode`]): bytes nobody but the
//! pipeline reads.
//!
//! [`Bytes`], [`Utf8`], [`Json`] and [`Bincode`] are given; implement
//! [`Serde`] for any other format (Avro, Protobuf, a fixed layout).

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Turns `T` into bytes and back. A failure is a message saying what is
/// wrong with the bytes or the value; the caller names where it happened
/// (an undecodable input record follows the pipeline's `on_bad_input`).
pub trait Serde<T>: Send + Sync + 'static {
    /// A short name for the pipeline's topology, e.g. `json`.
    fn name(&self) -> String;
    /// Appends the bytes of `value` to `out`.
    ///
    /// # Errors
    /// When the value cannot be written in this format.
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String>;
    /// The value in `bytes`.
    ///
    /// # Errors
    /// When the bytes are not a value of this format.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String>;
    /// Whether `value` is written as no bytes at all (a Kafka record
    /// without a key): `()` is, through [`NoKey`].
    fn is_absent(&self, value: &T) -> bool {
        let _ = value;
        false
    }
}

/// The pipeline's own encoding, [`Codec`](crate::Codec) (bincode): what
/// keyed state is written with unless its descriptor names another serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl<T: crate::Codec> Serde<T> for Bincode {
    fn name(&self) -> String {
        "bincode".to_owned()
    }

    #[inline]
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        value.encode_into(out).map_err(codec_message)
    }

    #[inline]
    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
        T::decode(bytes).map_err(codec_message)
    }
}

/// The message of a [`Codec`](crate::Codec) error, without what it was
/// about (the caller names that).
fn codec_message(e: crate::Error) -> String {
    match e {
        crate::Error::Codec { message, .. } => message,
        other => other.to_string(),
    }
}

/// The bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Serde<Vec<u8>> for Bytes {
    fn name(&self) -> String {
        "bytes".to_owned()
    }

    fn serialize(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text, as a `String` or a [`CompactString`](crate::CompactString).
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Serde<String> for Utf8 {
    fn name(&self) -> String {
        "utf8".to_owned()
    }

    fn serialize(&self, value: &String, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<String, String> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("not UTF-8: {e}"))
    }
}

impl Serde<compact_str::CompactString> for Utf8 {
    fn name(&self) -> String {
        "utf8".to_owned()
    }

    fn serialize(
        &self,
        value: &compact_str::CompactString,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<compact_str::CompactString, String> {
        std::str::from_utf8(bytes)
            .map(compact_str::CompactString::from)
            .map_err(|e| format!("not UTF-8: {e}"))
    }
}

/// JSON (serde_json), into and out of the user's own type.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// JSON of `T`.
    pub const fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json::new()
    }
}

impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for Json<T> {
    fn name(&self) -> String {
        format!("json<{}>", std::any::type_name::<T>())
    }

    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| e.to_string())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON of the expected shape: {e}"))
    }
}

/// No key: `()` written as no bytes (a Kafka record without a key), and
/// any bytes read as `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;

impl Serde<()> for NoKey {
    fn name(&self) -> String {
        "none".to_owned()
    }

    fn serialize(&self, _value: &(), _out: &mut Vec<u8>) -> Result<(), String> {
        Ok(())
    }

    fn deserialize(&self, _bytes: &[u8]) -> Result<(), String> {
        Ok(())
    }

    fn is_absent(&self, _value: &()) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct View {
        page: String,
        ts: i64,
    }

    #[test]
    fn json_round_trips_and_names_what_is_wrong() {
        let j = Json::<View>::new();
        let mut out = Vec::new();
        let v = View {
            page: "/a".into(),
            ts: 5,
        };
        j.serialize(&v, &mut out).expect("serialize");
        assert_eq!(out, br#"{"page":"/a","ts":5}"#);
        assert_eq!(j.deserialize(&out), Ok(v));
        let e = j.deserialize(br#"{"page":"/a"}"#).expect_err("no ts");
        assert!(e.contains("missing field `ts`"), "{e}");
        assert!(Utf8.deserialize(&[0xff]).map(|s: String| s).is_err());
    }
}

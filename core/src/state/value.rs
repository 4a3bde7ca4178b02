//! [`ValueState`]: one value per key.

use std::marker::PhantomData;

use super::Access;
use crate::serdes::Bincode;
use crate::{Result, Serde};

/// The current key's entry of a value store (see
/// [`ValueDescriptor`](super::ValueDescriptor)), its values written with
/// the serde `S`.
pub struct ValueState<'a, T, S = Bincode> {
    at: Access<'a>,
    /// The state key, then (while a `put` runs) the value's encoding: one
    /// reused buffer for both.
    buf: &'a mut Vec<u8>,
    key_len: usize,
    serde: S,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T, S: Serde<T>> ValueState<'a, T, S> {
    /// The entry under the state key held in `buf`.
    pub(crate) fn new(at: Access<'a>, buf: &'a mut Vec<u8>, serde: S) -> Self {
        ValueState {
            at,
            key_len: buf.len(),
            buf,
            serde,
            _t: PhantomData,
        }
    }

    /// The current value, if one was put (and has not expired).
    pub fn get(&mut self) -> Result<Option<T>> {
        let key = &self.buf[..self.key_len];
        match self.at.get(key)? {
            Some(bytes) => match self.serde.deserialize(bytes) {
                Ok(v) => Ok(Some(v)),
                Err(m) => Err(self.at.serde_error("decode", &self.serde, m)),
            },
            None => Ok(None),
        }
    }

    /// Replaces the value.
    pub fn put(&mut self, value: &T) -> Result<()> {
        self.buf.truncate(self.key_len);
        if let Some(header) = self.at.header() {
            self.buf.extend_from_slice(&header);
        }
        let encoded = self.serde.serialize(value, self.buf);
        let (key, bytes) = self.buf.split_at(self.key_len);
        encoded.map_err(|m| self.at.serde_error("encode", &self.serde, m))?;
        self.at.backend.put_slice(key, bytes);
        Ok(())
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.at.backend.delete(self.buf[..self.key_len].to_vec());
    }
}

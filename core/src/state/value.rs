//! [`ValueState`]: one value per key.

use std::marker::PhantomData;

use super::Access;
use crate::{Codec, Result};

/// The current key's entry of a value store (see
/// [`ValueDescriptor`](super::ValueDescriptor)).
pub struct ValueState<'a, T> {
    at: Access<'a>,
    /// The state key, then (while a `put` runs) the value's encoding: one
    /// reused buffer for both.
    buf: &'a mut Vec<u8>,
    key_len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T: Codec> ValueState<'a, T> {
    /// The entry under the state key held in `buf`.
    pub(crate) fn new(at: Access<'a>, buf: &'a mut Vec<u8>) -> Self {
        ValueState {
            at,
            key_len: buf.len(),
            buf,
            _t: PhantomData,
        }
    }

    /// The current value, if one was put (and has not expired).
    pub fn get(&mut self) -> Result<Option<T>> {
        let key = &self.buf[..self.key_len];
        match self.at.get(key)? {
            Some(bytes) => match T::decode(bytes) {
                Ok(v) => Ok(Some(v)),
                Err(e) => Err(self.at.named(e)),
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
        let encoded = value.encode_into(self.buf);
        let (key, bytes) = self.buf.split_at(self.key_len);
        encoded.map_err(|e| self.at.named(e))?;
        self.at.backend.put_slice(key, bytes);
        Ok(())
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.at.backend.delete(self.buf[..self.key_len].to_vec());
    }
}

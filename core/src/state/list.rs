//! [`ListState`]: a list per key.

use std::marker::PhantomData;

use super::{ttl, Access};
use crate::serdes::Bincode;
use crate::{Error, Result, Serde};

/// The current key's list in a list store (see
/// [`ListDescriptor`](super::ListDescriptor)). Its elements are entries
/// keyed by a rising sequence number, so that adding one reads and writes
/// only it and the next number. Its elements are written with the serde
/// `S`.
pub struct ListState<'a, T, S = Bincode> {
    at: Access<'a>,
    prefix: Vec<u8>,
    /// The key of the next sequence number.
    next_key: &'a mut Vec<u8>,
    serde: S,
    _t: PhantomData<fn() -> T>,
}

impl<'a, T, S: Serde<T> + Clone> ListState<'a, T, S> {
    pub(crate) fn new(
        at: Access<'a>,
        prefix: Vec<u8>,
        next_key: &'a mut Vec<u8>,
        serde: S,
    ) -> Self {
        ListState {
            at,
            prefix,
            next_key,
            serde,
            _t: PhantomData,
        }
    }

    fn next_seq(&mut self) -> Result<u64> {
        // With a time to live, an expired counter reads as absent: every
        // element expired with it (none was added after it was renewed).
        match self.at.get(self.next_key)? {
            None => Ok(0),
            Some(b) => b.try_into().map(u64::from_be_bytes).map_err(|_| {
                Error::Corrupt(format!("list state `{}`: a bad length", self.at.name))
            }),
        }
    }

    /// Appends `value`.
    pub fn add(&mut self, value: &T) -> Result<()> {
        let seq = self.next_seq()?;
        let mut key = self.prefix.clone();
        key.extend_from_slice(&seq.to_be_bytes());
        let mut bytes = Vec::new();
        if let Some(header) = self.at.header() {
            bytes.extend_from_slice(&header);
        }
        self.serde
            .serialize(value, &mut bytes)
            .map_err(|m| self.at.serde_error("encode", &self.serde, m))?;
        self.at.backend.put(key, bytes);
        let mut counter = Vec::with_capacity(16);
        if let Some(header) = self.at.header() {
            counter.extend_from_slice(&header);
        }
        counter.extend_from_slice(&(seq + 1).to_be_bytes());
        self.at.backend.put_slice(self.next_key, &counter);
        Ok(())
    }

    /// The elements in the order they were added (expired ones left out),
    /// each decoded as the iterator reaches it.
    pub fn iter(&mut self) -> Result<Elements<T, S>> {
        let raw = self.at.backend.scan_prefix(&self.prefix)?;
        Ok(Elements {
            raw: raw.into_iter(),
            expiring: self.at.ttl_ms.is_some(),
            now: self.at.now,
            name: self.at.name,
            serde: self.serde.clone(),
            _t: PhantomData,
        })
    }

    /// Whether the list has no live element.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.iter()?.next().is_none())
    }

    /// Replaces the elements with `values`.
    pub fn update(&mut self, values: impl IntoIterator<Item = T>) -> Result<()> {
        self.clear()?;
        for v in values {
            self.add(&v)?;
        }
        Ok(())
    }

    /// Removes every element.
    pub fn clear(&mut self) -> Result<()> {
        for (k, _) in self.at.backend.scan_prefix(&self.prefix)? {
            self.at.backend.delete(k);
        }
        self.at.backend.delete(self.next_key.clone());
        Ok(())
    }
}

/// The elements of a [`ListState`], decoded one at a time.
pub struct Elements<T, S = Bincode> {
    raw: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    expiring: bool,
    now: i64,
    name: &'static str,
    serde: S,
    _t: PhantomData<fn() -> T>,
}

impl<T, S: Serde<T>> Iterator for Elements<T, S> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (_, v) = self.raw.next()?;
            let value = if self.expiring {
                if ttl::expired(&v, self.now) {
                    continue;
                }
                ttl::payload(&v)
            } else {
                &v
            };
            return Some(
                self.serde
                    .deserialize(value)
                    .map_err(|m| super::serde_error::<T, S>("decode", self.name, &self.serde, m)),
            );
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.raw.len()))
    }
}

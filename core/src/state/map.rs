//! [`MapState`]: a map per key.

use std::marker::PhantomData;

use super::{ttl, Access};
use crate::serdes::Bincode;
use crate::{Codec, Result, Serde};

/// The current key's map in a map store (see
/// [`MapDescriptor`](super::MapDescriptor)), its values written with the
/// serde `S` (its keys with [`Codec`], whose order they are iterated in).
pub struct MapState<'a, K, V, S = Bincode> {
    at: Access<'a>,
    prefix: Vec<u8>,
    serde: S,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<'a, K: Codec, V, S: Serde<V> + Clone> MapState<'a, K, V, S> {
    pub(crate) fn new(at: Access<'a>, prefix: Vec<u8>, serde: S) -> Self {
        MapState {
            at,
            prefix,
            serde,
            _t: PhantomData,
        }
    }

    fn entry_key(&self, k: &K) -> Result<Vec<u8>> {
        let mut key = self.prefix.clone();
        k.encode_into(&mut key).map_err(|e| self.at.named(e))?;
        Ok(key)
    }

    /// The value under `k`.
    pub fn get(&mut self, k: &K) -> Result<Option<V>> {
        let key = self.entry_key(k)?;
        match self.at.get(&key)? {
            Some(bytes) => match self.serde.deserialize(bytes) {
                Ok(v) => Ok(Some(v)),
                Err(m) => Err(self.at.serde_error("decode", &self.serde, m)),
            },
            None => Ok(None),
        }
    }

    /// Whether `k` has a value.
    pub fn contains(&mut self, k: &K) -> Result<bool> {
        let key = self.entry_key(k)?;
        Ok(self.at.get(&key)?.is_some())
    }

    /// Stores `v` under `k`.
    pub fn put(&mut self, k: &K, v: &V) -> Result<()> {
        let key = self.entry_key(k)?;
        let mut bytes = Vec::new();
        if let Some(header) = self.at.header() {
            bytes.extend_from_slice(&header);
        }
        self.serde
            .serialize(v, &mut bytes)
            .map_err(|m| self.at.serde_error("encode", &self.serde, m))?;
        self.at.backend.put(key, bytes);
        Ok(())
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &K) -> Result<()> {
        let key = self.entry_key(k)?;
        self.at.backend.delete(key);
        Ok(())
    }

    /// The entries in the order of their encoded keys, each decoded as the
    /// iterator reaches it. Expired entries are left out.
    pub fn iter(&mut self) -> Result<MapIter<K, V, S>> {
        let raw = self.at.backend.scan_prefix(&self.prefix)?;
        Ok(MapIter {
            raw: raw.into_iter(),
            skip: self.prefix.len(),
            expiring: self.at.ttl_ms.is_some(),
            now: self.at.now,
            name: self.at.name,
            serde: self.serde.clone(),
            _t: PhantomData,
        })
    }

    /// The keys, in the order of their encodings.
    pub fn keys(&mut self) -> Result<impl Iterator<Item = Result<K>> + use<K, V, S>> {
        Ok(self.iter()?.map(|e| e.map(|(k, _)| k)))
    }

    /// Whether the map has no live entry.
    pub fn is_empty(&mut self) -> Result<bool> {
        Ok(self.iter()?.next().is_none())
    }

    /// Removes every entry.
    pub fn clear(&mut self) -> Result<()> {
        for (k, _) in self.at.backend.scan_prefix(&self.prefix)? {
            self.at.backend.delete(k);
        }
        Ok(())
    }
}

/// The entries of a [`MapState`], decoded one at a time.
pub struct MapIter<K, V, S = Bincode> {
    raw: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    skip: usize,
    expiring: bool,
    now: i64,
    name: &'static str,
    serde: S,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K: Codec, V, S: Serde<V>> Iterator for MapIter<K, V, S> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = self.raw.next()?;
            let value = if self.expiring {
                if ttl::expired(&v, self.now) {
                    continue;
                }
                ttl::payload(&v)
            } else {
                &v
            };
            let key = match K::decode(&k[self.skip..]) {
                Ok(key) => key,
                Err(e) => return Some(Err(super::named(e, self.name))),
            };
            return Some(match self.serde.deserialize(value) {
                Ok(v) => Ok((key, v)),
                Err(m) => Err(super::serde_error::<V, S>(
                    "decode",
                    self.name,
                    &self.serde,
                    m,
                )),
            });
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.raw.len()))
    }
}

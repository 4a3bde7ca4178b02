//! The exchange across instances (ARCHITECTURE §7): a record whose key
//! group's shard another instance holds is sent to that shard's partition
//! of the repartition topic, inside the epoch's transaction ([`Remote`]);
//! the holder reads its shards back, committed records only, as source
//! tasks of its own ([`ShardReader`]).

use weir_core::commit::Forward;
use weir_core::source::{Forwarded, Lag, ReadStatus, SourceReader};
use weir_core::{Codec, Error, Key, Record, Result};

use crate::plan::Shards;
use crate::stage::ChainedReader;

/// Where a source task's records of other instances' shards go.
pub(crate) struct Remote {
    /// Per key group: held here.
    local: Vec<bool>,
    count: u16,
    forward: Box<dyn Forward>,
    value: Vec<u8>,
}

impl Remote {
    /// Forwards through `forward` the records of `key_groups` key groups
    /// whose shard (of `shards`) this run does not hold.
    pub(crate) fn new(shards: &Shards, key_groups: u16, forward: Box<dyn Forward>) -> Self {
        Remote {
            local: (0..key_groups).map(|g| shards.holds_group(g)).collect(),
            count: shards.count,
            forward,
            value: Vec::new(),
        }
    }

    /// Whether key group `group` is held by this run.
    #[inline]
    pub(crate) fn holds(&self, group: u16) -> bool {
        self.local.get(usize::from(group)).copied().unwrap_or(true)
    }

    /// Sends a record of key group `group`, whose key is encoded as `key`,
    /// to its shard's holder.
    pub(crate) fn send<V: Codec>(
        &mut self,
        group: u16,
        key: &[u8],
        value: &V,
        timestamp: Option<i64>,
    ) -> Result<()> {
        self.value.clear();
        value.encode_into(&mut self.value)?;
        self.forward
            .send(group % self.count.max(1), key, &self.value, timestamp)
    }
}

/// Reads one shard of the repartition topic: the records other instances
/// forwarded to this one, decoded back into key and value.
pub(crate) struct ShardReader<K, V> {
    pub(crate) task: String,
    pub(crate) reader: Box<dyn SourceReader<Forwarded>>,
    pub(crate) buf: Vec<Record<(), Forwarded>>,
    pub(crate) read: u64,
    pub(crate) _types: std::marker::PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: Codec + Send + 'static> ShardReader<K, V> {
    fn decode(&self, f: &Forwarded) -> Result<(K, V)> {
        let undecodable = |e: Error| {
            Error::State(format!(
                "a record in `{}` cannot be decoded ({e}): another version of this application's pipeline forwarded it. Run one version of a pipeline per application id at a time",
                self.task
            ))
        };
        let key = K::decode(&f.key).map_err(undecodable)?;
        let value = V::decode(&f.value).map_err(undecodable)?;
        Ok((key, value))
    }
}

impl<K: Key, V: Codec + Send + 'static> ChainedReader<(K, V)> for ShardReader<K, V> {
    fn read(&mut self, max: usize, out: &mut dyn FnMut(Record<(), (K, V)>)) -> Result<ReadStatus> {
        self.buf.clear();
        let status = self.reader.read(&mut self.buf, max)?;
        let buf = std::mem::take(&mut self.buf);
        self.read += buf.len() as u64;
        for r in &buf {
            let mut record = Record::new((), self.decode(&r.value)?);
            record.timestamp = r.timestamp;
            out(record);
        }
        self.buf = buf;
        Ok(status)
    }

    fn position(&self) -> u64 {
        self.reader.position()
    }

    fn identity(&self) -> Option<String> {
        None
    }

    fn committed(&mut self, position: u64) -> Result<()> {
        self.reader.committed(position)
    }

    fn take_read_count(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    fn lag(&self) -> Option<Lag> {
        self.reader.lag()
    }
}

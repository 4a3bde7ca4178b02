/// A header attached to a record: a name and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// One record: a key, a value, an optional event timestamp (milliseconds
/// since the Unix epoch) and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key; `()` before a `key_by`.
    pub key: K,
    /// The payload.
    pub value: V,
    /// Event time in milliseconds since the Unix epoch, if known.
    pub timestamp: Option<i64>,
    /// Headers, passed through unchanged by the runtime.
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    /// A record with no timestamp and no headers.
    pub fn new(key: K, value: V) -> Self {
        Record {
            key,
            value,
            timestamp: None,
            headers: Vec::new(),
        }
    }

    /// The same record with an event timestamp.
    pub fn with_timestamp(mut self, ts: i64) -> Self {
        self.timestamp = Some(ts);
        self
    }

    /// Replaces the value, keeping key, timestamp and headers.
    pub fn map_value<U>(self, f: impl FnOnce(V) -> U) -> Record<K, U> {
        Record {
            key: self.key,
            value: f(self.value),
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }

    /// Replaces the key, keeping value, timestamp and headers.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}

//! A file's identity, as log shippers record it: its device and inode,
//! plus a fingerprint of its first bytes. A checkpointed position is only
//! ever applied to the file it was read from, never to another that took
//! the name since (replaced, rotated, truncated and rewritten).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use xxhash_rust::xxh3::Xxh3;

/// How many leading bytes the fingerprint covers, at most.
pub(crate) const FINGERPRINT_BYTES: u64 = 1024;

/// A file on this machine, whatever its name: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inode {
    dev: u64,
    ino: u64,
}

impl Inode {
    fn of(meta: &std::fs::Metadata) -> Self {
        Inode {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Which file a position is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    inode: Inode,
    /// Bytes the fingerprint covers: what was read of the first
    /// [`FINGERPRINT_BYTES`].
    len: u64,
    hash: u64,
}

/// The identity of a file as it is being read: its fingerprint grows with
/// the bytes read, up to [`FINGERPRINT_BYTES`].
#[derive(Clone)]
pub(crate) struct Tracker {
    inode: Inode,
    len: u64,
    hasher: Xxh3,
}

impl Tracker {
    /// Starts on the open `file`, nothing read yet.
    pub(crate) fn new(file: &File) -> std::io::Result<Self> {
        Ok(Tracker {
            inode: Inode::of(&file.metadata()?),
            len: 0,
            hasher: Xxh3::new(),
        })
    }

    /// Starts on the open `file`, its first `read` bytes already read.
    pub(crate) fn after(file: &File, read: u64) -> std::io::Result<Self> {
        let mut t = Tracker::new(file)?;
        let head = read_head(file, read.min(FINGERPRINT_BYTES))?;
        t.feed(&head);
        Ok(t)
    }

    /// Notes bytes read next.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.len < FINGERPRINT_BYTES {
            let take = (FINGERPRINT_BYTES - self.len).min(bytes.len() as u64) as usize;
            self.hasher.update(&bytes[..take]);
            self.len += take as u64;
        }
    }

    /// The identity of what was read so far.
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            inode: self.inode,
            len: self.len,
            hash: self.hasher.digest(),
        }
    }

    /// Whether `meta` is the file being read (not one that took its name).
    pub(crate) fn same_file(&self, meta: &std::fs::Metadata) -> bool {
        Inode::of(meta) == self.inode
    }
}

/// The first `len` bytes of `file` (fewer if it is shorter).
fn read_head(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; len as usize];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    head.truncate(got);
    Ok(head)
}

/// Why an open file is not the one an identity names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Another inode (or device): the name now points at another file.
    OtherFile,
    /// The same inode, but its first bytes changed: truncated and rewritten.
    Rewritten,
}

impl Identity {
    /// Whether `meta` is this identity's file (device and inode), whatever
    /// its name and content now.
    pub(crate) fn same_inode(&self, meta: &std::fs::Metadata) -> bool {
        Inode::of(meta) == self.inode
    }

    /// Whether the open `file` is the one this identity names.
    pub(crate) fn check(&self, file: &File) -> std::io::Result<Result<(), Mismatch>> {
        if !self.same_inode(&file.metadata()?) {
            return Ok(Err(Mismatch::OtherFile));
        }
        let head = read_head(file, self.len)?;
        if head.len() as u64 != self.len || xxhash_rust::xxh3::xxh3_64(&head) != self.hash {
            return Ok(Err(Mismatch::Rewritten));
        }
        Ok(Ok(()))
    }

    /// The form kept in a checkpoint.
    pub(crate) fn encode(&self) -> String {
        format!(
            "file:{}:{}:{}:{:016x}",
            self.inode.dev, self.inode.ino, self.len, self.hash
        )
    }

    /// Reads [`encode`](Self::encode)'s form; `None` for another form.
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix("file:")?.split(':');
        let id = Identity {
            inode: Inode {
                dev: parts.next()?.parse().ok()?,
                ino: parts.next()?.parse().ok()?,
            },
            len: parts.next()?.parse().ok()?,
            hash: u64::from_str_radix(parts.next()?, 16).ok()?,
        };
        (parts.next().is_none() && id.len <= FINGERPRINT_BYTES).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_appended_file_keeps_its_identity_and_a_rewritten_one_loses_it() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "first line\nsecond\n")?;
        let file = File::open(&path)?;
        let mut t = Tracker::new(&file)?;
        t.feed(b"first line\n");
        let id = Identity::decode(&t.identity().encode()).expect("round trip");
        assert_eq!(id, t.identity());
        assert_eq!(Tracker::after(&file, 11)?.identity(), id);

        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(b"appended\n")?;
        assert_eq!(id.check(&File::open(&path)?)?, Ok(()));

        // copytruncate, then new lines: the same inode, other first bytes.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)?
            .write_all(b"a new first line\n")?;
        assert_eq!(id.check(&File::open(&path)?)?, Err(Mismatch::Rewritten));

        // Replaced: another file under the name.
        let other = dir.path().join("b.txt");
        std::fs::write(&other, "first line\nsecond\n")?;
        std::fs::rename(&other, &path)?;
        assert_eq!(id.check(&File::open(&path)?)?, Err(Mismatch::OtherFile));
        Ok(())
    }
}

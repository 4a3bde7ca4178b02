//! The instance id a state directory keeps (ARCHITECTURE §7): made on its
//! first run, never changed, kept through `replay`. It names the instance
//! in its consumer group (`group.instance.id`) and its transactions
//! (`transactional.id` = `<application-id>-<instance-id>`), so that a
//! restart on the same directory takes its own place back and fences its
//! own zombie, and two directories are two instances.

use std::io::Write;
use std::path::{Path, PathBuf};

use weir_core::{Error, Result};

/// The file, beside `db/`.
const FILE: &str = "instance";

/// The id of a state directory that ran before instance ids existed: its
/// transactions were `<application-id>-0`, which keeps fencing its zombie.
const BEFORE_IDS: &str = "0";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The instance id of state directory `dir`, if it has one yet.
pub(crate) fn peek(dir: &Path) -> Result<Option<String>> {
    let file = path(dir);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let id = text.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::Corrupt(format!(
                    "{} does not hold an instance id (found {text:?}); restore it from a backup, or delete it if this directory's process no longer runs anywhere: a new id is made, and the old one's open transaction is aborted by the broker after its timeout",
                    file.display()
                )));
            }
            Ok(Some(id.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read", file.display(), e)),
    }
}

/// The instance id of state directory `dir` (locked by this process),
/// made and synced to disk on its first run. `existed` says whether the
/// directory held a committed state before instance ids: it keeps the id
/// its transactions had.
pub(crate) fn load_or_create(dir: &Path, existed: bool) -> Result<String> {
    if let Some(id) = peek(dir)? {
        return Ok(id);
    }
    let id = if existed {
        BEFORE_IDS.to_owned()
    } else {
        // 48 random bits: instances of one application never meet twice.
        format!("{:012x}", rand::random::<u64>() >> 16)
    };
    let file = path(dir);
    let staged = dir.join(format!("{FILE}.new"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&staged)?;
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&staged, &file)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::io("cannot write", file.display(), e))?;
    tracing::info!(instance = %id, "this state directory is instance {id}");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(peek(dir.path()).expect("peek"), None);
        let id = load_or_create(dir.path(), false).expect("create");
        assert_eq!(id.len(), 12);
        assert_eq!(load_or_create(dir.path(), false).expect("load"), id);
        assert_eq!(peek(dir.path()).expect("peek"), Some(id));
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            load_or_create(other.path(), false).expect("create"),
            peek(dir.path()).expect("peek").unwrap_or_default()
        );
    }

    #[test]
    fn a_directory_from_before_ids_keeps_its_transactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_or_create(dir.path(), true).expect("create"), "0");
    }

    #[test]
    fn a_damaged_id_is_refused_with_the_choices() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "../x\n").expect("write");
        let e = load_or_create(dir.path(), false).expect_err("refused");
        assert!(matches!(e, Error::Corrupt(_)), "{e}");
    }
}

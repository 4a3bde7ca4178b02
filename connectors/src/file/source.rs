//! The line source: one task per input file, position = the byte offset
//! of the next unread line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use weir_core::serdes::{Json, Serde};
use weir_core::source::{Lag, ReadStatus, ResetTo, Resume, Source, SourceReader, TaskOffsets};
use weir_core::{Error, Record, Result};

use super::identity::{Identity, Mismatch, Tracker};
use super::BUFFER;

/// Reads the lines of every regular file in a directory (or of one file),
/// one task per file, as UTF-8 `String`s without their line ending, or
/// as values a [`Serde`] reads from each line ([`FileSource::json`]).
pub struct FileSource<T = String> {
    path: PathBuf,
    follow: bool,
    validate: Option<Validate>,
    decode: Decode<T>,
    /// The line format, for the topology: `lines`, `json<T>`.
    format: String,
}

impl<T> Clone for FileSource<T> {
    fn clone(&self) -> Self {
        FileSource {
            path: self.path.clone(),
            follow: self.follow,
            validate: self.validate.clone(),
            decode: self.decode.clone(),
            format: self.format.clone(),
        }
    }
}

/// Checks a line as it is read (see [`FileSource::validate`]).
type Validate = Arc<dyn Fn(&str) -> std::result::Result<(), String> + Send + Sync>;

/// Makes a value of a line (see [`FileSource::with_serde`]).
type Decode<T> = Arc<dyn Fn(String) -> std::result::Result<T, (String, String)> + Send + Sync>;

impl<T> std::fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("follow", &self.follow)
            .field("validate", &self.validate.is_some())
            .field("format", &self.format)
            .finish()
    }
}

impl FileSource<String> {
    /// Lines of every regular, non-hidden file in `path` (or of the file
    /// `path`), read to their end. A last line without a newline counts as a
    /// line when the end is reached: append to a file only whole lines, or
    /// use [`follow`](Self::follow), which waits for the newline.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            follow: false,
            validate: None,
            decode: Arc::new(Ok),
            format: "lines".to_owned(),
        }
    }

    /// Each line read by `serde` into a `T`: a line it cannot read is bad
    /// input, named by its file and byte position, and follows the
    /// pipeline's `on_bad_input` policy.
    pub fn with_serde<T, S: Serde<T>>(self, serde: S) -> FileSource<T> {
        let format = serde.name();
        let serde = Arc::new(serde);
        FileSource {
            path: self.path,
            follow: self.follow,
            validate: self.validate,
            decode: Arc::new(move |line: String| {
                serde
                    .deserialize(line.as_bytes())
                    .map_err(|why| (why, line))
            }),
            format,
        }
    }

    /// Each line as JSON of `T` (one object per line).
    pub fn json<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(
        path: impl Into<PathBuf>,
    ) -> FileSource<T> {
        Self::lines(path).with_serde(Json::new())
    }

    /// Checks every line as it is read: a line for which `check` returns an
    /// error is bad input, named by its file and byte position, and follows
    /// the pipeline's `on_bad_input` policy (fail, skip, dead-letter) like a
    /// line that is not UTF-8.
    pub fn validate(
        mut self,
        check: impl Fn(&str) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validate = Some(Arc::new(check));
        self
    }
}

impl<T> FileSource<T> {
    /// Keeps reading as the files grow (like `tail -f`) instead of ending at
    /// their end. A last line without a newline waits for its newline. The
    /// set of files is the one found at start.
    ///
    /// Rotation is handled as log shippers handle it. Rename-and-create
    /// (logrotate's default): the old file is read through the open handle
    /// until it has been quiet for a second (its writer may append until it
    /// reopens the name), then the new one from its start. Copy-and-truncate
    /// (`copytruncate`): the file is read again from its start; lines
    /// written between the copy and the truncation are lost to every
    /// reader of the file. A rotation while no run is reading is refused at
    /// the next start, like any replaced input.
    pub fn follow(mut self) -> Self {
        self.follow = true;
        self
    }

    fn file_of(&self, task: &str) -> PathBuf {
        if self.path.is_file() {
            self.path.clone()
        } else {
            self.path.join(task)
        }
    }
}

impl<T: Send + 'static> Source for FileSource<T> {
    type Item = T;

    fn bounded(&self) -> bool {
        !self.follow
    }

    fn describe(&self) -> String {
        // Not whether it follows: a run option, not part of the topology
        // (the fingerprint), so that it can change between runs.
        format!("file-{}", self.format)
    }

    fn locations(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }

    fn tasks(&self) -> Result<Vec<String>> {
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            Error::io(
                "cannot read the input (pass an existing file or directory as input)",
                self.path.display(),
                e,
            )
        })?;
        if meta.is_file() {
            let name = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "input".to_owned());
            return Ok(vec![name]);
        }
        let mut tasks = Vec::new();
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| Error::io("cannot list input directory", self.path.display(), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| Error::io("cannot list input directory", self.path.display(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                tracing::debug!(file = %path.display(), "skipping a hidden file of the input directory");
                continue;
            }
            // Followed: a symbolic link to a file is read like the file.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => tasks.push(name),
                Ok(meta) => tracing::info!(
                    entry = %path.display(),
                    "skipping an input entry that is not a regular file ({})",
                    if meta.is_dir() { "a directory: only the files directly in the input are read" } else { "a device, socket or pipe" }
                ),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(40) =>
                {
                    // ENOENT or ELOOP (40 on Linux): a link to nothing.
                    tracing::warn!(
                        entry = %path.display(),
                        "skipping a symbolic link whose target does not exist or that loops: {e}"
                    )
                }
                Err(e) => return Err(Error::io("cannot stat", path.display(), e)),
            }
        }
        tasks.sort();
        Ok(tasks)
    }

    fn offsets(&self) -> Result<Vec<TaskOffsets>> {
        self.tasks()?
            .into_iter()
            .map(|task| {
                let path = self.file_of(&task);
                let len = std::fs::metadata(&path)
                    .map_err(|e| Error::io("cannot stat", path.display(), e))?
                    .len();
                Ok(TaskOffsets {
                    task,
                    committed: None,
                    end: Some(len),
                })
            })
            .collect()
    }

    fn resolve(&self, to: ResetTo) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for t in self.offsets()? {
            let len = t.end.unwrap_or(0);
            let pos = match to {
                ResetTo::Earliest => 0,
                // After the last complete line: a partial one is still being written.
                ResetTo::Latest => end_of_last_line(&self.file_of(&t.task), len)?,
                ResetTo::Offset(n) => {
                    let path = self.file_of(&t.task);
                    if n > len || (n > 0 && !is_line_start(&path, n)?) {
                        return Err(Error::Config(format!(
                            "byte {n} is not the start of a line of {} ({len} bytes); pick a line start",
                            path.display()
                        )));
                    }
                    n
                }
                ResetTo::Timestamp(_) => {
                    return Err(Error::Config(
                        "files carry no record times to reset to; use --to-earliest, --to-latest or --to-offset".into(),
                    ))
                }
            };
            out.insert(t.task, pos);
        }
        Ok(out)
    }

    /// Matches the recorded positions to today's files by identity, as log
    /// shippers do: a file renamed since (rotated inside the input
    /// directory: `app.log` to `app.log.1`) resumes under its new name
    /// where it was, and a new file under its old name starts at 0. A
    /// recorded file found nowhere keeps its name, so that opening refuses
    /// whatever has that name now.
    fn resume_points(
        &self,
        tasks: &[String],
        recorded: &[(String, Resume)],
    ) -> Result<BTreeMap<String, Resume>> {
        let files: Vec<(&String, File, std::fs::Metadata)> = tasks
            .iter()
            .filter_map(|t| {
                let file = File::open(self.file_of(t)).ok()?;
                let meta = file.metadata().ok()?;
                Some((t, file, meta))
            })
            .collect();
        let mut out = BTreeMap::new();
        let mut unmatched = Vec::new();
        for (was, resume) in recorded {
            let identity = resume.identity.as_deref().and_then(Identity::decode);
            let found = identity.as_ref().and_then(|id| {
                files.iter().find(|(_, file, meta)| {
                    id.same_inode(meta) && matches!(id.check(file), Ok(Ok(())))
                })
            });
            match found {
                Some((now, _, _)) if !out.contains_key(*now) => {
                    if *now != was {
                        tracing::info!(was = %was, now = %now, position = resume.position, "input file renamed since the last checkpoint: it resumes under its new name");
                    }
                    out.insert((*now).clone(), resume.clone());
                }
                _ => unmatched.push((was, resume)),
            }
        }
        for (was, resume) in unmatched {
            if tasks.contains(was) && !out.contains_key(was) {
                out.insert(was.clone(), resume.clone());
            }
        }
        Ok(out)
    }

    fn open(&self, task: &str, from: Option<&Resume>) -> Result<Box<dyn SourceReader<T>>> {
        let path = self.file_of(task);
        let mut file = File::open(&path).map_err(|e| {
            Error::io(
                "cannot open input file (was it removed since the last checkpoint?)",
                path.display(),
                e,
            )
        })?;
        let position = from.map_or(0, |f| f.position);
        let len = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path.display(), e))?
            .len();
        if position > len {
            return Err(replaced(
                &path,
                position,
                &format!("it is {len} bytes, shorter than that"),
            ));
        }
        if position > 0 {
            let recorded = from
                .and_then(|f| f.identity.as_deref())
                .and_then(Identity::decode);
            if let Some(recorded) = recorded {
                let check = recorded
                    .check(&file)
                    .map_err(|e| Error::io("cannot read", path.display(), e))?;
                match check {
                    Ok(()) => {}
                    Err(Mismatch::OtherFile) => {
                        return Err(replaced(&path, position, "another file has its name now"))
                    }
                    Err(Mismatch::Rewritten) => {
                        return Err(replaced(&path, position, "its first lines changed"))
                    }
                }
            }
        }
        let tracker = Tracker::after(&file, position)
            .map_err(|e| Error::io("cannot read", path.display(), e))?;
        file.seek(SeekFrom::Start(position))
            .map_err(|e| Error::io("cannot seek in", path.display(), e))?;
        Ok(Box::new(LineReader {
            task: task.to_owned(),
            path,
            reader: BufReader::with_capacity(BUFFER, file),
            position,
            partial: Vec::new(),
            follow: self.follow,
            tracker,
            draining: None,
            validate: self.validate.clone(),
            decode: self.decode.clone(),
        }))
    }
}

/// The refusal to resume in an input that is not the one the checkpoint read.
fn replaced(path: &Path, position: u64, why: &str) -> Error {
    Error::Config(format!(
        "input file {} is not the file the last checkpoint read up to byte {position}: {why}, so it was replaced, rotated or rewritten since; resuming would read another file from the middle. Put the original back, or choose where to read it from: `offsets reset --to-earliest` (with --keep-state or --reset-state) reads the inputs from their start, `replay --from ID` goes back to a retained checkpoint (see `checkpoints list`)",
        path.display()
    ))
}

/// The offset just after the last newline of `path` (of length `len`).
fn end_of_last_line(path: &Path, len: u64) -> Result<u64> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| Error::io("cannot open", path.display(), e))?;
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut chunk[..n]))
            .map_err(|e| Error::io("cannot read", path.display(), e))?;
        if let Some(i) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Whether byte `n` of `path` starts a line (the byte before it is a newline).
fn is_line_start(path: &Path, n: u64) -> Result<bool> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| Error::io("cannot open", path.display(), e))?;
    f.seek(SeekFrom::Start(n - 1))
        .map_err(|e| Error::io("cannot seek in", path.display(), e))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)
        .map_err(|e| Error::io("cannot read", path.display(), e))?;
    Ok(b[0] == b'\n')
}

struct LineReader<T> {
    task: String,
    path: PathBuf,
    reader: BufReader<File>,
    /// Offset of the first byte not yet returned (the start of `partial`).
    position: u64,
    /// An incomplete last line (follow mode) waiting for its newline.
    partial: Vec<u8>,
    follow: bool,
    /// The identity of the file being read (checkpointed with the position).
    tracker: Tracker,
    /// Follow mode: when the file was found renamed away and a new one in
    /// its place. The old one is read on until it has been quiet for
    /// [`ROTATION_GRACE`] (its writer may not have reopened yet), then the
    /// new one is opened.
    draining: Option<std::time::Instant>,
    validate: Option<Validate>,
    decode: Decode<T>,
}

/// How long a renamed file must stay quiet before the new file under its
/// name is read: its writer may append to it until it reopens the name.
const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What happened to a followed file's name.
enum Rotation {
    /// Renamed away, and another file created under its name.
    Renamed,
    /// Truncated (and maybe written again): `copytruncate`.
    Truncated,
}

impl<T> LineReader<T> {
    fn decode(&self, start: u64, mut line: Vec<u8>) -> Result<T> {
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let line = String::from_utf8(line).map_err(|e| Error::BadInput {
            task: self.task.clone(),
            position: start,
            message: format!("line is not valid UTF-8: {}", e.utf8_error()),
            raw: Some(e.into_bytes()),
        })?;
        if let Some(Err(why)) = self.validate.as_ref().map(|check| check(&line)) {
            return Err(Error::BadInput {
                task: self.task.clone(),
                position: start,
                message: format!("{why}: {line:?}"),
                raw: Some(line.into_bytes()),
            });
        }
        (self.decode)(line).map_err(|(why, line)| Error::BadInput {
            task: self.task.clone(),
            position: start,
            message: format!("{why}: {line:?}"),
            raw: Some(line.into_bytes()),
        })
    }

    /// Returns `line` (read at `self.position`) as a record.
    fn emit(&mut self, line: Vec<u8>, out: &mut Vec<Record<(), T>>) -> Result<()> {
        let start = self.position;
        self.position += line.len() as u64;
        self.tracker.feed(&line);
        out.push(Record::new((), self.decode(start, line)?));
        Ok(())
    }

    /// Follow mode, at the end of what is there: has the file been rotated?
    fn rotation(&self) -> Result<Option<Rotation>> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            // Renamed away, the new file not created yet: read on.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("cannot stat", self.path.display(), e)),
        };
        if !self.tracker.same_file(&meta) {
            return Ok(Some(Rotation::Renamed));
        }
        let read = self.position + self.partial.len() as u64;
        if meta.len() < read {
            return Ok(Some(Rotation::Truncated));
        }
        // Truncated and written past where it was read, between two looks.
        let rewritten = self
            .tracker
            .identity()
            .check(self.reader.get_ref())
            .map_err(|e| Error::io("cannot read", self.path.display(), e))?
            .is_err();
        Ok(rewritten.then_some(Rotation::Truncated))
    }

    /// Follow mode: goes on with the file that now has the name, from its
    /// start; false while the name has no file (it is read again later).
    fn reopen(&mut self) -> Result<bool> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::io(
                    "cannot open rotated input file",
                    self.path.display(),
                    e,
                ))
            }
        };
        self.tracker =
            Tracker::new(&file).map_err(|e| Error::io("cannot stat", self.path.display(), e))?;
        self.reader = BufReader::with_capacity(BUFFER, file);
        self.position = 0;
        self.draining = None;
        Ok(true)
    }

    /// Follow mode: reads the truncated file again from its start.
    fn restart(&mut self) -> Result<()> {
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("cannot seek in", self.path.display(), e))?;
        self.tracker = Tracker::new(self.reader.get_ref())
            .map_err(|e| Error::io("cannot stat", self.path.display(), e))?;
        self.position = 0;
        self.partial.clear();
        Ok(())
    }
}

impl<T: Send> SourceReader<T> for LineReader<T> {
    fn read(&mut self, out: &mut Vec<Record<(), T>>, max: usize) -> Result<ReadStatus> {
        for _ in 0..max {
            let mut line = std::mem::take(&mut self.partial);
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("cannot read", self.path.display(), e))?;
            let complete = line.last() == Some(&b'\n');
            if complete || (!line.is_empty() && !self.follow) {
                if self.draining.is_some() {
                    // The renamed file is still written to: not quiet yet.
                    self.draining = Some(std::time::Instant::now());
                }
                self.emit(line, out)?;
                if !complete {
                    return Ok(ReadStatus::End);
                }
                continue;
            }
            // At the end of what is there now.
            if !self.follow {
                return Ok(ReadStatus::End);
            }
            let quiet = self
                .draining
                .is_some_and(|since| since.elapsed() >= ROTATION_GRACE);
            if quiet && n == 0 {
                // The renamed file is read to its end: its last line is whole.
                if !line.is_empty() {
                    self.emit(line, out)?;
                }
                if !self.reopen()? {
                    return Ok(ReadStatus::Idle);
                }
                tracing::info!(file = %self.path.display(), "input file rotated (renamed, and created anew): the old one is read to its end, reading the new one from its start");
                return Ok(ReadStatus::More);
            }
            self.partial = line;
            match self.rotation()? {
                None => return Ok(ReadStatus::Idle),
                // Read the old file on until it is quiet.
                Some(Rotation::Renamed) => {
                    if self.draining.is_none() {
                        self.draining = Some(std::time::Instant::now());
                        return Ok(ReadStatus::More);
                    }
                    // Still being written to, or the grace is not over.
                    return Ok(ReadStatus::Idle);
                }
                Some(Rotation::Truncated) => {
                    tracing::warn!(file = %self.path.display(), at = self.position, "input file truncated (copytruncate rotation): reading it again from its start; lines written between the copy and the truncation are lost to every reader");
                    self.restart()?;
                }
            }
            return Ok(ReadStatus::More);
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> u64 {
        self.position
    }

    /// The file's length now (one `fstat` of the open file) past the
    /// position; a partial last line counts as not yet read.
    fn lag(&self) -> Option<Lag> {
        let len = self.reader.get_ref().metadata().ok()?.len();
        Some(Lag::Bytes {
            file: self.task.clone(),
            behind: len.saturating_sub(self.position),
        })
    }

    fn identity(&self) -> Option<String> {
        Some(self.tracker.identity().encode())
    }
}

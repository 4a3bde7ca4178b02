//! Files: a line source and an appending, truncatable sink.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::BTreeMap;
use weir_core::sink::{Flushed, Sink, SinkWriter};

use weir_core::source::{ReadStatus, ResetTo, Source, SourceReader, TaskOffsets};
use weir_core::{Error, Record, Result};

use crate::text::push_display;

const BUFFER: usize = 1 << 20;

/// Reads the lines of every regular file in a directory (or of one file),
/// one task per file, as UTF-8 `String`s without their line ending.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    follow: bool,
}

impl FileSource {
    /// Lines of every regular, non-hidden file in `path` (or of the file
    /// `path`), read to their end. A last line without a newline counts as a
    /// line when the end is reached: append to a file only whole lines, or
    /// use [`follow`](Self::follow), which waits for the newline.
    pub fn lines(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            follow: false,
        }
    }

    /// Keeps reading as the files grow (like `tail -f`) instead of ending at
    /// their end. A last line without a newline waits for its newline. The
    /// set of files is the one found at start.
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

impl Source for FileSource {
    type Item = String;

    fn describe(&self) -> String {
        if self.follow {
            "file-lines(follow)"
        } else {
            "file-lines"
        }
        .to_owned()
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
            let is_file = entry
                .metadata()
                .map_err(|e| Error::io("cannot stat", entry.path().display(), e))?
                .is_file();
            if is_file && !name.starts_with('.') {
                tasks.push(name);
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

    fn open(&self, task: &str, position: Option<u64>) -> Result<Box<dyn SourceReader<String>>> {
        let path = self.file_of(task);
        let mut file = File::open(&path).map_err(|e| {
            Error::io(
                "cannot open input file (was it removed since the last checkpoint?)",
                path.display(),
                e,
            )
        })?;
        let position = position.unwrap_or(0);
        let len = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path.display(), e))?
            .len();
        if position > len {
            return Err(Error::Config(format!(
                "input file {} is {len} bytes, shorter than its checkpointed position {position}: it was truncated or replaced; restore it or start with a new --state",
                path.display()
            )));
        }
        file.seek(SeekFrom::Start(position))
            .map_err(|e| Error::io("cannot seek in", path.display(), e))?;
        Ok(Box::new(LineReader {
            task: task.to_owned(),
            path,
            reader: BufReader::with_capacity(BUFFER, file),
            position,
            partial: Vec::new(),
            follow: self.follow,
        }))
    }
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

struct LineReader {
    task: String,
    path: PathBuf,
    reader: BufReader<File>,
    /// Offset of the first byte not yet returned (the start of `partial`).
    position: u64,
    /// An incomplete last line (follow mode) waiting for its newline.
    partial: Vec<u8>,
    follow: bool,
}

impl LineReader {
    fn decode(&self, start: u64, mut line: Vec<u8>) -> Result<String> {
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        String::from_utf8(line).map_err(|e| Error::BadInput {
            task: self.task.clone(),
            position: start,
            message: format!("line is not valid UTF-8: {}", e.utf8_error()),
            raw: Some(e.into_bytes()),
        })
    }
}

impl SourceReader<String> for LineReader {
    fn read(&mut self, out: &mut Vec<Record<(), String>>, max: usize) -> Result<ReadStatus> {
        for _ in 0..max {
            let mut line = std::mem::take(&mut self.partial);
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("cannot read", self.path.display(), e))?;
            let complete = line.last() == Some(&b'\n');
            if n == 0 && line.is_empty() {
                return Ok(if self.follow {
                    ReadStatus::Idle
                } else {
                    ReadStatus::End
                });
            }
            if !complete && self.follow {
                // Wait for the rest of the line.
                self.partial = line;
                return Ok(ReadStatus::Idle);
            }
            let start = self.position;
            self.position += line.len() as u64;
            out.push(Record::new((), self.decode(start, line)?));
            if !complete {
                return Ok(ReadStatus::End);
            }
        }
        Ok(ReadStatus::More)
    }

    fn position(&self) -> u64 {
        self.position
    }
}

/// How a [`FileSink`] renders a record as one line.
pub trait LineFormat<T>: Send + Sync + 'static {
    /// Short name for the fingerprint.
    fn name(&self) -> &'static str;
    /// Appends `item` and its newline to `out`.
    fn write(&self, item: &T, out: &mut Vec<u8>);
}

/// `key<TAB>value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tsv;

impl<K: Display + 'static, V: Display + 'static> LineFormat<Record<K, V>> for Tsv {
    fn name(&self) -> &'static str {
        "tsv"
    }
    fn write(&self, r: &Record<K, V>, out: &mut Vec<u8>) {
        push_display(&r.key, out);
        out.push(b'\t');
        push_display(&r.value, out);
        out.push(b'\n');
    }
}

/// `value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

impl<K: 'static, V: Display + 'static> LineFormat<Record<K, V>> for Lines {
    fn name(&self) -> &'static str {
        "lines"
    }
    fn write(&self, r: &Record<K, V>, out: &mut Vec<u8>) {
        push_display(&r.value, out);
        out.push(b'\n');
    }
}

/// Writes one file per task, `DIR/part-<task>`, one line per record.
pub struct FileSink<F> {
    dir: PathBuf,
    format: F,
}

impl FileSink<Tsv> {
    /// `key<TAB>value` lines under `dir`.
    pub fn tsv(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Tsv,
        }
    }
}

impl FileSink<Lines> {
    /// `value` lines under `dir`.
    pub fn lines(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Lines,
        }
    }
}

impl<F> FileSink<F> {
    fn path_of(&self, task: &str) -> PathBuf {
        self.dir.join(format!("part-{task}"))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot fsync directory", dir.display(), e))
}

impl<T: 'static, F: LineFormat<T> + Clone> Sink<T> for FileSink<F> {
    fn describe(&self) -> String {
        format!("file-{}", self.format.name())
    }

    fn id(&self, task: &str) -> String {
        // Relative, so that the same output directory reached by another
        // path (another working directory) keeps its committed length.
        format!("part-{task}")
    }

    fn open(&self, task: &str, truncate_to: Option<u64>) -> Result<Box<dyn SinkWriter<T>>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create output directory", self.dir.display(), e))?;
        let path = self.path_of(task);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("cannot open output file", path.display(), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path.display(), e))?
            .len();
        if let Some(committed) = truncate_to {
            if len < committed {
                return Err(Error::Config(format!(
                    "output file {} is {len} bytes, shorter than its committed length {committed}: it was changed outside weir; restore it, or start over with a new --state and --output",
                    path.display()
                )));
            }
            if len > committed {
                tracing::info!(file = %path.display(), from = len, to = committed, "discarding uncommitted output");
                file.set_len(committed)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io("cannot truncate", path.display(), e))?;
            }
        }
        let end = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("cannot seek in", path.display(), e))?;
        if !existed {
            sync_dir(&self.dir)?;
        }
        let sync_handle = file
            .try_clone()
            .map_err(|e| Error::io("cannot reopen", path.display(), e))?;
        Ok(Box::new(FileWriter {
            path,
            file,
            buf: Vec::with_capacity(BUFFER),
            written: end,
            sync_handle: Arc::new(sync_handle),
            format: self.format.clone(),
            _t: PhantomData,
        }))
    }
}

struct FileWriter<T, F> {
    path: PathBuf,
    file: File,
    /// Lines not yet written to `file`: each record is formatted straight
    /// into it (one copy of its bytes, written out a megabyte at a time).
    buf: Vec<u8>,
    /// Bytes written to `file`: its logical length, less `buf`.
    written: u64,
    sync_handle: Arc<File>,
    format: F,
    _t: PhantomData<fn(&T)>,
}

impl<T, F> FileWriter<T, F> {
    fn write_out(&mut self) -> Result<()> {
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io("cannot write", self.path.display(), e))?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

impl<T: 'static, F: LineFormat<T>> SinkWriter<T> for FileWriter<T, F> {
    fn write(&mut self, item: &T) -> Result<()> {
        self.format.write(item, &mut self.buf);
        // Written out before a line can outgrow the buffer's capacity.
        if self.buf.len() >= BUFFER - BUFFER / 16 {
            self.write_out()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Flushed> {
        self.write_out()?;
        let file = self.sync_handle.clone();
        let path = self.path.clone();
        Ok(Flushed {
            position: Some(self.written),
            sync: Some(Box::new(move || {
                file.sync_data()
                    .map_err(|e| Error::io("cannot fsync", path.display(), e))
            })),
        })
    }
}

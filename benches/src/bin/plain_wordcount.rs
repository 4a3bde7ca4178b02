//! The ceiling for local-mode word count (benchmark workload 2): the same
//! split and count as the `wordcount` example, with a hash map and buffered
//! output, and no checkpointing, state store or exchange at all.
//!
//! Reads every regular file of `INPUT_DIR` (in name order) line by line,
//! splits each line on ASCII whitespace, and for every occurrence writes
//! `word<TAB>count` to `OUTPUT_FILE`. Guarantee: none (a crash loses
//! everything; it is only a speed limit to compare against).
//!
//! Run: `plain_wordcount INPUT_DIR OUTPUT_FILE`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: plain_wordcount INPUT_DIR OUTPUT_FILE");
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&input).with_context(|| format!("cannot list {input:?}"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    let out =
        std::fs::File::create(&output).with_context(|| format!("cannot create {output:?}"))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut line = String::new();
    let mut words = 0u64;
    for path in files {
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path:?}"))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            for word in line.split_ascii_whitespace() {
                let n = match counts.get_mut(word) {
                    Some(n) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        counts.insert(word.to_owned(), 1);
                        1
                    }
                };
                writeln!(out, "{word}\t{n}")?;
                words += 1;
            }
        }
    }
    out.flush()?;
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("cannot sync the output")?;
    eprintln!("plain_wordcount: {words} words, {} distinct", counts.len());
    Ok(())
}

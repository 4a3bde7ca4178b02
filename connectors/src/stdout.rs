//! A sink that prints records, for demos.

use std::fmt::Display;
use std::io::Write;

use weir_core::sink::{Flushed, Sink, SinkWriter};
use weir_core::{Error, Record, Result};

use crate::text::push_display;

/// Prints `key<TAB>value` lines to standard output. It cannot take output
/// back, so it is at-least-once whatever the pipeline's guarantee: after a
/// crash, the lines of the epoch that did not commit are printed again.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutSink;

struct StdoutWriter {
    buf: Vec<u8>,
}

impl<K: Display + 'static, V: Display + 'static> Sink<Record<K, V>> for StdoutSink {
    fn describe(&self) -> String {
        "stdout".to_owned()
    }

    fn id(&self, _task: &str) -> String {
        "stdout".to_owned()
    }

    fn open(
        &self,
        _task: &str,
        _truncate_to: Option<u64>,
    ) -> Result<Box<dyn SinkWriter<Record<K, V>>>> {
        Ok(Box::new(StdoutWriter { buf: Vec::new() }))
    }
}

impl<K: Display + 'static, V: Display + 'static> SinkWriter<Record<K, V>> for StdoutWriter {
    fn write(&mut self, r: &Record<K, V>) -> Result<()> {
        push_display(&r.key, &mut self.buf);
        self.buf.push(b'\t');
        push_display(&r.value, &mut self.buf);
        self.buf.push(b'\n');
        if self.buf.len() > 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Flushed> {
        self.flush_buf()?;
        Ok(Flushed {
            position: None,
            sync: None,
        })
    }
}

impl StdoutWriter {
    fn flush_buf(&mut self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("cannot write", "stdout", e))?;
        self.buf.clear();
        Ok(())
    }
}

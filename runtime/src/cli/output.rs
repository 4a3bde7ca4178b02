//! What the commands print: a listing piped into `head` ends quietly when
//! the pipe closes, and a standard error that cannot be written (a full
//! disk, a closed pipe) never stops a command or a run.

use std::io::Write;

use weir_core::{Error, Result};

/// Writes one line to standard output, as `println!` does, but returns an
/// error instead of panicking when it cannot (see [`is_closed_pipe`]).
pub(super) fn line(args: std::fmt::Arguments<'_>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| Error::io("cannot write to", "standard output", e))
}

/// Whether `e` says that standard output was closed by its reader (`| head`):
/// the command ends quietly, as a listing does.
pub(super) fn is_closed_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, path, .. }
        if path == "standard output" && source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Writes one line to standard error, ignoring failure: nothing is left to
/// tell when standard error itself is gone.
pub(super) fn error_line(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `println!` for the commands: `?`-propagates a failed write.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))?
    };
}
pub(super) use outln;

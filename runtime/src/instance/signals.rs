//! The signals that end a run cleanly.

use weir_core::{Error, Result};

/// SIGINT and SIGTERM, caught from now on: the receiver turns true at the
/// first, and the run commits its open epoch and ends.
pub(crate) fn shutdown_signals(
    rt: &tokio::runtime::Handle,
) -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _in_runtime = rt.enter();
    let catch = |kind: SignalKind| {
        signal(kind).map_err(|e| Error::io("cannot catch signals", "SIGINT/SIGTERM", e))
    };
    let (mut term, mut int) = (
        catch(SignalKind::terminate())?,
        catch(SignalKind::interrupt())?,
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    rt.spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

//! The process's log: `tracing` lines on standard error, as text or, with
//! `log.format = "json"`, one JSON object per line with the spans it
//! happened in (epoch, commit, recovery, restore, run). The format is
//! switched once the configuration is read; lines before that are text.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

type Formatter = Box<dyn Layer<Registry> + Send + Sync>;

static FORMAT: OnceLock<reload::Handle<Formatter, Registry>> = OnceLock::new();

fn formatter(format: LogFormat) -> Formatter {
    let stderr = std::io::stderr;
    match format {
        LogFormat::Text => fmt::layer()
            .with_writer(stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            // Its report of a failed write is an `eprintln!`, which panics
            // when standard error itself is what failed (a full disk, a
            // closed pipe).
            .log_internal_errors(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(stderr)
            .log_internal_errors(false)
            .boxed(),
    }
}

/// What the log needs at the process's end: the spans still batched for
/// the OpenTelemetry exporter (the `otel` feature) are sent.
pub(super) struct Logging {
    #[cfg(feature = "otel")]
    _exporter: Option<super::otel::Exporter>,
}

/// Sets up the log as text, filtered by `RUST_LOG` (`info` by default),
/// and with the `otel` feature, the export of spans of process `service`
/// where an OTLP endpoint is set.
pub(super) fn init(service: &str) -> Logging {
    let (layer, handle) = reload::Layer::new(formatter(LogFormat::Text));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    #[cfg(feature = "otel")]
    let (otel, exporter) = super::otel::layer(service).unzip();
    #[cfg(not(feature = "otel"))]
    let _ = service;
    let registry = tracing_subscriber::registry().with(layer).with(filter);
    #[cfg(feature = "otel")]
    let registry = registry.with(otel);
    if registry.try_init().is_ok() {
        let _ = FORMAT.set(handle);
    }
    Logging {
        #[cfg(feature = "otel")]
        _exporter: exporter,
    }
}

/// Writes the log in `format` from now on. Once per process, when the
/// configuration is first read, before any span opens: a span opened
/// under one formatter cannot be written by another.
pub(super) fn set_format(format: LogFormat) {
    static SWITCHED: std::sync::Once = std::sync::Once::new();
    if format == LogFormat::Text {
        return;
    }
    SWITCHED.call_once(|| {
        if let Some(handle) = FORMAT.get() {
            let _ = handle.reload(formatter(format));
        }
    });
}

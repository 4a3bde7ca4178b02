//! The optional OpenTelemetry exporter (the `otel` feature): the spans of
//! the log (run, epoch, commit, recovery, restore) go over OTLP/HTTP with
//! protobuf to a collector, from the SDK's own export thread, batched. It
//! is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and takes the other
//! standard `OTEL_*` variables (headers, timeout, service name, batch
//! sizes) as the SDK reads them. A collector that is down costs dropped
//! spans and a warning, never the run.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::Layer;

/// The exporter, when one was asked for: flushed when the process ends.
pub(super) struct Exporter(SdkTracerProvider);

/// The layer that sends spans to the exporter, and the exporter; `None`
/// when no endpoint is set. `service` names the process where
/// `OTEL_SERVICE_NAME` does not.
pub(super) fn layer<S>(service: &str) -> Option<(Box<dyn Layer<S> + Send + Sync>, Exporter)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return None;
    }
    let exporter = match SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            super::output::error_line(format_args!(
                "warning: no OpenTelemetry export ({e}); check OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318)"
            ));
            return None;
        }
    };
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("weir"))
        .boxed();
    Some((layer, Exporter(provider)))
}

impl Drop for Exporter {
    /// Sends the spans still batched, waiting a few seconds at most.
    fn drop(&mut self) {
        if let Err(e) = self
            .0
            .shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!("OpenTelemetry: spans left unsent at exit: {e}");
        }
    }
}

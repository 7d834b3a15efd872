//! `serve`'s logs and traces: one `tracing` subscriber with two layers.
//!
//! * Logs: to stderr, as text or one JSON object per line (`[log] format`),
//!   filtered by `[log] level` (`RUST_LOG` overrides it). With
//!   `sluice_proxy=debug`, a log line written inside a request carries the
//!   request's span fields, its `request_id` among them.
//! * Traces: with `[tracing] otlp_endpoint`, the spans of Sluice's own
//!   crates (the request and, below it, admission, upstream attempts and the
//!   stream relay, all at DEBUG) and their INFO+ events go to an OTLP/HTTP
//!   collector (protobuf), batched on the tokio runtime, sampled per trace
//!   by `sample_ratio`. Each layer has its own filter, so at the default
//!   log level a request creates no span at all while export is off.
//!
//! Span fields hold ids, names and statuses only (see `sluice_proxy::trace`):
//! no key, no prompt, no header but the request id.

use crate::config::{LogFormat, LogSettings, OtlpSettings, TracingSettings};
use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How often a batch of finished spans is sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the collector on one export.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The installed trace pipeline; [`Telemetry::shutdown`] sends what is
/// left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Who the exported spans come from.
pub struct Origin<'a> {
    pub cluster_id: &'a str,
    pub node_id: u64,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber. With OTLP export on, must run inside
/// the tokio runtime (the batch exporter is a task on it).
pub fn init(
    log: &LogSettings,
    tracing: &TracingSettings,
    origin: Origin<'_>,
) -> anyhow::Result<Telemetry> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(&directive)
            .with_context(|| format!("RUST_LOG=`{directive}` is not a valid filter"))?,
        _ => level_filter(&log.level)
            .with_context(|| format!("log.level `{}` is not a valid filter", log.level))?,
    };
    let provider = match &tracing.otlp {
        Some(otlp) => Some(tracer_provider(otlp, &origin)?),
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers(log.format, filter, provider.as_ref()))
        .try_init()
        .map_err(|err| anyhow::anyhow!("installing the log subscriber: {err}"))?;
    if let Some(otlp) = &tracing.otlp {
        tracing::info!(
            endpoint = %otlp.traces_url,
            sample_ratio = otlp.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

/// The filter of `[log] level`. openraft's core logs every command it is
/// handed at INFO, and the node hands it one per heartbeat (20 a second on
/// the leader), so its core speaks at WARN unless `level` names openraft;
/// its engine (votes, elections, membership) keeps the level asked for.
fn level_filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let filter = EnvFilter::try_new(level)?;
    if level.contains("openraft") {
        return Ok(filter);
    }
    Ok(filter.add_directive("openraft::core::raft_core=warn".parse()?))
}

/// The logs layer (stderr, `format`, filtered by `filter`) and, with a
/// tracer provider, the export layer with its own filter ([`exported`]).
fn layers(
    format: LogFormat,
    filter: EnvFilter,
    provider: Option<&SdkTracerProvider>,
) -> Vec<BoxedLayer> {
    // Colours only for a terminal: log files and collectors get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs: BoxedLayer = match format {
        LogFormat::Text => Box::new(fmt.with_filter(filter)),
        LogFormat::Json => Box::new(fmt.json().with_filter(filter)),
    };
    let mut layers = vec![logs];
    if let Some(provider) = provider {
        layers.push(Box::new(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("sluice"))
                .with_filter(tracing_subscriber::filter::filter_fn(exported)),
        ));
    }
    layers
}

/// What goes to the collector: Sluice's spans down to DEBUG (the request
/// and its children), and its INFO+ events (as span events).
fn exported(meta: &Metadata<'_>) -> bool {
    let ours = meta.target().starts_with("sluice");
    let level = if meta.is_span() {
        Level::DEBUG
    } else {
        Level::INFO
    };
    ours && *meta.level() <= level
}

fn tracer_provider(otlp: &OtlpSettings, origin: &Origin<'_>) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(otlp.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| {
            format!(
                "tracing.otlp_endpoint: cannot export to {}",
                otlp.traces_url
            )
        })?;
    let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_EVERY)
                .build(),
        )
        .build();
    let resource = Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .with_attributes([
            KeyValue::new("service.instance.id", origin.node_id.to_string()),
            KeyValue::new("sluice.cluster_id", origin.cluster_id.to_string()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            otlp.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // `shutdown` blocks until the batch task has flushed: not on a
        // runtime worker.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = stopped {
            eprintln!("warning: flushing the last traces failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Site;
    impl tracing::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not registered")
        }
    }
    static SITE: Site = Site;

    fn meta(target: &'static str, level: Level, kind: Kind) -> Metadata<'static> {
        Metadata::new(
            "m",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&SITE)),
            kind,
        )
    }

    fn request_span_under(layers: Vec<BoxedLayer>) -> tracing::Span {
        let request = http::Request::new(());
        let id = http::HeaderValue::from_static("req_1");
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            sluice_proxy::trace::request_span(&request, &id)
        })
    }

    #[test]
    fn requests_make_spans_only_for_the_export_or_debug_logs() {
        let info = || EnvFilter::new("info");
        let span = request_span_under(layers(LogFormat::Json, info(), None));
        assert!(span.is_disabled(), "info logs alone make no request span");
        let provider = SdkTracerProvider::builder().build();
        let span = request_span_under(layers(LogFormat::Text, info(), Some(&provider)));
        assert!(!span.is_disabled(), "export makes the request span");
        let debug = EnvFilter::new("info,sluice_proxy=debug");
        let span = request_span_under(layers(LogFormat::Text, debug, None));
        assert!(!span.is_disabled(), "debug logs show the request span");
    }

    #[test]
    fn openraft_core_chatter_is_quiet_unless_asked_for() {
        let enabled = |filter: EnvFilter, target: &'static str, level: Level| {
            let subscriber = tracing_subscriber::registry().with(filter);
            tracing::subscriber::with_default(subscriber, || {
                tracing::dispatcher::get_default(|d| d.enabled(&meta(target, level, Kind::EVENT)))
            })
        };
        let info = || level_filter("info").expect("valid");
        assert!(!enabled(info(), "openraft::core::raft_core", Level::INFO));
        assert!(enabled(info(), "openraft::core::raft_core", Level::WARN));
        assert!(enabled(
            info(),
            "openraft::engine::engine_impl",
            Level::INFO
        ));
        assert!(enabled(info(), "sluice_raft::node::elections", Level::INFO));
        let asked = level_filter("info,openraft=debug").expect("valid");
        assert!(enabled(asked, "openraft::core::raft_core", Level::INFO));
        assert!(level_filter("info,=[").is_err());
    }

    #[test]
    fn only_our_spans_and_info_events_are_exported() {
        let cases = [
            ("sluice_proxy::trace", Level::INFO, Kind::SPAN, true),
            ("sluice_proxy::trace", Level::DEBUG, Kind::SPAN, true),
            ("sluice_proxy::trace", Level::TRACE, Kind::SPAN, false),
            (
                "sluice_proxy::pipeline::attempt",
                Level::WARN,
                Kind::EVENT,
                true,
            ),
            (
                "sluice_proxy::pipeline::attempt",
                Level::DEBUG,
                Kind::EVENT,
                false,
            ),
            ("openraft::core", Level::INFO, Kind::SPAN, false),
            ("hyper", Level::ERROR, Kind::EVENT, false),
        ];
        for (target, level, kind, expected) in cases {
            let what = format!("{target} {level} {kind:?}");
            assert_eq!(exported(&meta(target, level, kind)), expected, "{what}");
        }
    }
}

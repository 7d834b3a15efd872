//! `[tracing]`: checks of the OpenTelemetry export settings.

use super::check::Problems;
use super::raw::RawTracing;

/// Default `[tracing] service_name`.
pub const DEFAULT_SERVICE_NAME: &str = "sluice";

/// `[tracing]`, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingSettings {
    /// OTLP export of spans; `None` exports nothing.
    pub otlp: Option<OtlpSettings>,
}

/// Where and what to export over OTLP/HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// The URL spans are POSTed to (the endpoint with `/v1/traces`).
    pub traces_url: String,
    pub service_name: String,
    /// Share of new traces sampled, 0.0 ..= 1.0.
    pub sample_ratio: f64,
}

/// Checks `[tracing]`, recording each problem under its field's name.
pub(super) fn tracing_settings(p: &mut Problems, raw: &RawTracing) -> TracingSettings {
    let service_name = raw
        .service_name
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    if service_name.trim().is_empty() || service_name.len() > 255 {
        p.push(
            "tracing.service_name",
            "must be 1 to 255 characters, not blank",
        );
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        p.push(
            "tracing.sample_ratio",
            format!("{sample_ratio} is not between 0.0 and 1.0"),
        );
    }
    let Some(endpoint) = &raw.otlp_endpoint else {
        if raw.service_name.is_some() || raw.sample_ratio.is_some() {
            p.push(
                "tracing.otlp_endpoint",
                "is required when other [tracing] fields are set (nothing is exported without it)",
            );
        }
        return TracingSettings::default();
    };
    let Some(base) = p.base_url("tracing.otlp_endpoint", endpoint) else {
        return TracingSettings::default();
    };
    if !base.starts_with("http://") {
        // The exporter's client speaks plain HTTP: a collector on the same
        // host or network (an agent), which forwards over TLS if it must.
        p.push(
            "tracing.otlp_endpoint",
            format!("`{endpoint}`: only http:// is supported (export to a local collector)"),
        );
        return TracingSettings::default();
    }
    let traces_url = if base.ends_with("/v1/traces") {
        base
    } else {
        format!("{base}/v1/traces")
    };
    TracingSettings {
        otlp: Some(OtlpSettings {
            traces_url,
            service_name,
            sample_ratio,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawTracing) -> (TracingSettings, Vec<String>) {
        let mut p = Problems::default();
        let settings = tracing_settings(&mut p, &raw);
        (settings, p.0.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn nothing_is_exported_by_default() {
        assert_eq!(
            check(RawTracing::default()),
            (TracingSettings::default(), vec![])
        );
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_once() {
        for endpoint in [
            "http://127.0.0.1:4318",
            "http://127.0.0.1:4318/",
            "http://127.0.0.1:4318/v1/traces",
        ] {
            let (settings, problems) = check(RawTracing {
                otlp_endpoint: Some(endpoint.into()),
                ..Default::default()
            });
            assert!(problems.is_empty(), "{problems:?}");
            let otlp = settings.otlp.expect("export on");
            assert_eq!(otlp.traces_url, "http://127.0.0.1:4318/v1/traces");
            assert_eq!(otlp.service_name, "sluice");
            assert_eq!(otlp.sample_ratio, 1.0);
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let (_, problems) = check(RawTracing {
            otlp_endpoint: Some("https://collector:4318".into()),
            service_name: Some(" ".into()),
            sample_ratio: Some(1.5),
        });
        let joined = problems.join("\n");
        assert!(joined.contains("tracing.otlp_endpoint"), "{joined}");
        assert!(joined.contains("tracing.service_name"), "{joined}");
        assert!(joined.contains("tracing.sample_ratio"), "{joined}");
        let (_, problems) = check(RawTracing {
            sample_ratio: Some(0.5),
            ..Default::default()
        });
        assert!(
            problems[0].starts_with("tracing.otlp_endpoint"),
            "{problems:?}"
        );
        let (_, problems) = check(RawTracing {
            otlp_endpoint: Some("not a url".into()),
            ..Default::default()
        });
        assert!(
            problems[0].starts_with("tracing.otlp_endpoint"),
            "{problems:?}"
        );
    }
}

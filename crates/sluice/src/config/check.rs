//! Field checks shared by [`super::validate`]: each takes the field's path and
//! its raw value, records a [`ConfigError`] naming that path when the value is
//! bad, and returns the typed value when it is good, so validation can go on
//! and report every problem in one pass.

use super::ConfigError;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The problems found so far.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<ConfigError>);

impl Problems {
    pub(super) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// A socket address to bind, e.g. `127.0.0.1:8080` or `[::]:8080`.
    pub(super) fn socket_addr(&mut self, field: &str, value: &str) -> Option<SocketAddr> {
        match value.trim().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.push(
                    field,
                    format!(
                        "`{value}` is not a socket address (expected IP:port, e.g. 127.0.0.1:8080)"
                    ),
                );
                None
            }
        }
    }

    /// A `host:port` other nodes dial: a DNS name or an IP that is not the
    /// unspecified address, and a non-zero port.
    pub(super) fn dial_addr(&mut self, field: &str, value: &str) -> Option<String> {
        let value = value.trim();
        let Some((host, port)) = value.rsplit_once(':') else {
            self.push(field, format!("`{value}` is not host:port"));
            return None;
        };
        match port.parse::<u16>() {
            Ok(0) | Err(_) => {
                self.push(field, format!("`{value}`: port must be 1-65535"));
                return None;
            }
            Ok(_) => {}
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if bare.is_empty() {
            self.push(field, format!("`{value}`: host is empty"));
            return None;
        }
        match bare.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() => {
                self.push(
                    field,
                    format!("`{value}`: {ip} is not an address peers can dial; advertise a real address"),
                );
                return None;
            }
            Ok(IpAddr::V6(_)) if bare == host => {
                self.push(
                    field,
                    format!("`{value}`: write an IPv6 host in brackets, e.g. [::1]:7070"),
                );
                return None;
            }
            Ok(_) => {}
            Err(_) if !is_dns_name(bare) => {
                self.push(
                    field,
                    format!("`{value}`: `{bare}` is neither an IP address nor a DNS name"),
                );
                return None;
            }
            Err(_) => {}
        }
        Some(value.to_string())
    }

    /// An `http(s)://` base URL clients dial. Returned without a trailing `/`.
    pub(super) fn base_url(&mut self, field: &str, value: &str) -> Option<String> {
        let value = value.trim();
        let url = match reqwest::Url::parse(value) {
            Ok(url) => url,
            Err(err) => {
                self.push(field, format!("`{value}` is not a URL: {err}"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            self.push(field, format!("`{value}`: scheme must be http or https"));
            return None;
        }
        let Some(host) = url.host_str() else {
            self.push(field, format!("`{value}`: URL has no host"));
            return None;
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let unspecified = bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
        if unspecified {
            self.push(
                field,
                format!(
                    "`{value}`: an unspecified address cannot be dialled; advertise a real address"
                ),
            );
            return None;
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            self.push(
                field,
                format!("`{value}`: a base URL takes no credentials, query or fragment"),
            );
            return None;
        }
        Some(value.trim_end_matches('/').to_string())
    }

    /// A path, relative ones resolved against the config file's directory.
    pub(super) fn path(&mut self, field: &str, value: &Path, config_dir: &Path) -> Option<PathBuf> {
        if value.as_os_str().is_empty() {
            self.push(field, "must not be empty");
            return None;
        }
        Some(resolve(value, config_dir))
    }

    /// Like [`Problems::path`], and the file must exist and be readable.
    pub(super) fn readable_file(
        &mut self,
        field: &str,
        value: &Path,
        config_dir: &Path,
    ) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.path(field, value, config_dir)?;
        match std::fs::read(&path) {
            Ok(bytes) => Some((path, bytes)),
            Err(err) => {
                self.push(field, format!("cannot read {}: {err}", path.display()));
                None
            }
        }
    }
}

/// `value` if absolute, else `config_dir/value`.
pub(super) fn resolve(value: &Path, config_dir: &Path) -> PathBuf {
    if value.is_absolute() {
        value.to_path_buf()
    } else {
        config_dir.join(value)
    }
}

/// `[a-z0-9-]{1,64}`.
pub(super) fn is_cluster_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Letters, digits, `-` and `.`, labels not empty (RFC 1123, loosely).
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_addresses_accept_names_and_ips_but_not_unspecified() {
        let mut p = Problems::default();
        assert_eq!(
            p.dial_addr("f", "node-1.sluice:7070").as_deref(),
            Some("node-1.sluice:7070")
        );
        assert_eq!(
            p.dial_addr("f", "10.0.0.1:7070").as_deref(),
            Some("10.0.0.1:7070")
        );
        assert_eq!(
            p.dial_addr("f", "[::1]:7070").as_deref(),
            Some("[::1]:7070")
        );
        assert!(p.0.is_empty());
        for bad in [
            "0.0.0.0:7070",
            "[::]:7070",
            "host",
            "host:0",
            "host:x",
            ":7070",
            "::1:7070",
            "bad_name:1",
        ] {
            let mut p = Problems::default();
            assert_eq!(p.dial_addr("f", bad), None, "{bad}");
            assert_eq!(p.0.len(), 1, "{bad}");
        }
    }

    #[test]
    fn base_urls_must_be_dialable_http() {
        let mut p = Problems::default();
        assert_eq!(
            p.base_url("f", "http://127.0.0.1:9090/").as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(
            p.base_url("f", "https://admin.example").as_deref(),
            Some("https://admin.example")
        );
        assert!(p.0.is_empty());
        for bad in [
            "ftp://x",
            "http://0.0.0.0:1",
            "127.0.0.1:9090",
            "http://[::]:1",
            "http://h/?a=1",
        ] {
            let mut p = Problems::default();
            assert_eq!(p.base_url("f", bad), None, "{bad}");
        }
    }

    #[test]
    fn cluster_ids() {
        assert!(is_cluster_id("c-0af3"));
        assert!(!is_cluster_id(""));
        assert!(!is_cluster_id("C-1"));
        assert!(!is_cluster_id(&"a".repeat(65)));
    }
}

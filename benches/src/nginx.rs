//! nginx as the real-process benches run it: a plain reverse proxy in front
//! of one upstream (the `load` bench's baseline) or a round-robin load
//! balancer in front of several (the `scale_out` bench's balancer over the
//! Sluice nodes' proxies).
//!
//! [`Nginx::start`] finds nginx on `PATH` (or `/usr/sbin`), installs it
//! with apt-get when it is missing and this is root, and otherwise answers
//! why it cannot run, so the bench can skip it with that message. It runs
//! in the foreground with every path under the bench's temporary directory:
//! no daemon, nothing written outside it.

use crate::host::is_root;
use sluice_e2e::process::{run_to_completion, Process};
use sluice_e2e::Deadline;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Idle keep-alive connections each nginx worker keeps to its upstreams.
pub const UPSTREAM_KEEPALIVE: usize = 64;

/// Whether nginx buffers the upstream's answers (its default) or passes
/// each piece on as it comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffering {
    On,
    Off,
}

/// Connections each worker may hold, clients and upstreams together: a
/// memory bench holds 10 000 streams, two connections each.
pub const WORKER_CONNECTIONS: usize = 32_768;

/// A running nginx.
pub struct Nginx {
    pub process: Process,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `nginx -v`, without its prefix (`nginx/1.24.0`).
    pub version: String,
}

impl Nginx {
    /// Installs nginx if needed (and allowed), writes its configuration
    /// under `dir` and starts it in the foreground with `workers` worker
    /// processes (`auto`, or a number) in front of `upstreams`, round robin.
    pub fn start(dir: &Path, upstreams: &[SocketAddr], workers: &str) -> Result<Nginx, String> {
        Self::start_with(dir, upstreams, workers, Buffering::On)
    }

    /// [`Nginx::start`], with the upstream's answers buffered or not
    /// (`proxy_buffering off`: how nginx is set up in front of
    /// server-sent events, each event passed on as it comes).
    pub fn start_with(
        dir: &Path,
        upstreams: &[SocketAddr],
        workers: &str,
        buffering: Buffering,
    ) -> Result<Nginx, String> {
        let bin = match find_nginx() {
            Some(bin) => bin,
            None => {
                install_nginx()?;
                find_nginx().ok_or("apt-get installed nginx, but it is not on PATH")?
            }
        };
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix).map_err(|e| format!("creating {prefix:?}: {e}"))?;
        // When started as root, nginx's workers run as `nobody`: they must be
        // able to reach the temp paths below.
        make_traversable(dir)?;
        let addr = free_port()?;
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            nginx_conf(&prefix, addr, upstreams, workers, buffering),
        )
        .map_err(|e| format!("writing {conf:?}: {e}"))?;
        let version = run_to_completion(
            {
                let mut c = Command::new(&bin);
                c.arg("-v");
                c
            },
            Deadline::after(Duration::from_secs(10)),
        )
        .stderr
        .trim()
        .trim_start_matches("nginx version: ")
        .to_string();
        let mut command = Command::new(&bin);
        command
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.join("error.log"));
        let mut process = Process::spawn("nginx", command, &dir.join("nginx.log"));
        let listening = Deadline::after(Duration::from_secs(10)).poll("nginx", || {
            process.is_running() && std::net::TcpStream::connect(addr).is_ok()
        });
        if listening.is_err() {
            return Err(format!(
                "nginx did not start listening on {addr}\n{}{}",
                process.log_tail(20),
                std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
            ));
        }
        Ok(Nginx {
            process,
            addr,
            version,
        })
    }
}

/// A reverse proxy over `upstreams` (round robin, nginx's default): no
/// daemon, every path inside `prefix`.
fn nginx_conf(
    prefix: &Path,
    listen: SocketAddr,
    upstreams: &[SocketAddr],
    workers: &str,
    buffering: Buffering,
) -> String {
    let p = prefix.display();
    let buffering = match buffering {
        Buffering::On => "on",
        Buffering::Off => "off",
    };
    let servers: String = upstreams
        .iter()
        .map(|addr| format!("        server {addr};\n"))
        .collect();
    format!(
        "# Written by a Sluice benchmark.
worker_processes {workers};
worker_rlimit_nofile {files};
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections {WORKER_CONNECTIONS};
}}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    upstream backends {{
{servers}        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering {buffering};
        }}
    }}
}}
",
        files = 2 * WORKER_CONNECTIONS
    )
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|bin| bin.is_file())
}

fn install_nginx() -> Result<(), String> {
    if !is_root() {
        return Err(
            "nginx is not installed and this is not root: skipping nginx \
             (apt-get install nginx to include it)"
                .into(),
        );
    }
    eprintln!("nginx not found: apt-get install -y --no-install-recommends nginx");
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_to_completion(command, Deadline::after(Duration::from_secs(300)))
    };
    let install = ["install", "-y", "--no-install-recommends", "nginx"];
    if apt(&install).code() == 0 {
        return Ok(());
    }
    // A stale or missing package list: refresh it once.
    let _ = apt(&["update"]);
    let done = apt(&install);
    if done.code() == 0 {
        Ok(())
    } else {
        Err(format!("apt-get install nginx failed: {done}"))
    }
}

fn make_traversable(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod 755 {dir:?}: {e}"))
}

fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("picking a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balancer_lists_every_upstream_once() {
        let upstreams: Vec<SocketAddr> = ["127.0.0.1:7002", "127.0.0.1:7012"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let conf = nginx_conf(
            Path::new("/tmp/x"),
            "127.0.0.1:9000".parse().unwrap(),
            &upstreams,
            "2",
            Buffering::Off,
        );
        assert!(conf.contains("worker_processes 2;"));
        assert!(conf.contains("proxy_buffering off;"));
        assert!(conf.contains("listen 127.0.0.1:9000;"));
        for addr in &upstreams {
            assert_eq!(conf.matches(&format!("server {addr};")).count(), 1);
        }
    }
}

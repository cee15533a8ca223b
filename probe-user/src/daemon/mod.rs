//! `probe daemon` and its clients: a long-running service holding
//! breakpoints across many target processes, controlled over gRPC.
//!
//! - [`proto`]: the API's messages and generated service.
//! - [`breakpoint`]: one breakpoint, its own kernel objects and thread.
//! - [`server`]: the service, sessions and their TTL, expiry, restore.
//! - [`store`]: breakpoint definitions and hit history on disk.
//! - [`policy`]: who may probe what; redaction of secret-like values.
//! - [`tls`]: mTLS configuration and client identities from certificates.
//! - [`client`]: connecting to a daemon (the CLI's side).
//! - [`fleet`]: fleet breakpoints shared by many daemons through etcd.
//! - [`etcd`]: the small etcd v3 client it uses (no `protoc`).

pub mod breakpoint;
pub mod client;
pub mod etcd;
pub mod fleet;
pub mod policy;
pub mod proto;
pub mod server;
pub mod store;
pub mod tls;

use std::path::PathBuf;

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/probe/probe.sock";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/probe";

/// Where the daemon listens (and clients connect): `unix:PATH` or `tcp:HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/probe/probe.sock".into());
            }
            Ok(Listen::Unix(p.into()))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            if !a.contains(':') {
                return Err(format!("tcp: needs HOST:PORT, got {a:?}"));
            }
            Ok(Listen::Tcp(a.to_owned()))
        } else if s.starts_with('/') {
            Ok(Listen::Unix(s.into()))
        } else {
            Err(format!("expected unix:PATH or tcp:HOST:PORT, got {s:?}"))
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen::Unix(DEFAULT_SOCKET.into())
    }
}

#[cfg(test)]
mod tests {
    use super::Listen;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "unix:/tmp/p.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/tmp/p.sock".into())
        );
        assert_eq!(
            "/tmp/p.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/tmp/p.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:7070".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:7070".into())
        );
        assert!("tcp:7070".parse::<Listen>().is_err());
        assert!("udp:x".parse::<Listen>().is_err());
        assert_eq!(Listen::default().to_string(), "unix:/run/probe/probe.sock");
    }
}

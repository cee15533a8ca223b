//! The `probe.v1.Daemon` gRPC API: its messages, written by hand as prost
//! structs (no `protoc` needed), and the service code `build.rs` generates
//! from them with `tonic_build::manual` (server and client).
//!
//! Field numbers are the wire contract: never reuse or renumber one.

#![allow(clippy::derive_partial_eq_without_eq, clippy::large_enum_variant)]

/// What a breakpoint probes: the same choices as `probe attach`'s flags.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BreakpointSpec {
    #[prost(string, repeated, tag = "1")]
    pub funcs: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub lines: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub addrs: Vec<String>,
    /// Every process running this executable (an absolute path).
    #[prost(string, tag = "4")]
    pub binary: String,
    /// One process (0: none; exactly one of `binary` and `pid` is set).
    #[prost(uint32, tag = "5")]
    pub pid: u32,
    #[prost(string, tag = "6")]
    pub cond: String,
    #[prost(bool, tag = "7")]
    pub locals: bool,
    #[prost(bool, tag = "8")]
    pub returns: bool,
    #[prost(uint32, tag = "9")]
    pub stack: u32,
    /// Hits per second per probe; 0: unlimited.
    #[prost(uint32, tag = "10")]
    pub rate: u32,
    #[prost(uint32, tag = "11")]
    pub max_depth: u32,
    #[prost(uint32, tag = "12")]
    pub max_string: u32,
    #[prost(uint32, tag = "13")]
    pub max_elems: u32,
    #[prost(uint32, tag = "14")]
    pub max_bytes: u32,
    /// With `pid`: that process's start time (set by the daemon), so a
    /// stored breakpoint never lands on another process that got the pid.
    #[prost(uint64, tag = "15")]
    pub pid_start: u64,
    /// Capture no string or byte-slice contents (their lengths only): set
    /// by the daemon when the policy denies the owner strings.
    #[prost(bool, tag = "16")]
    pub withhold_strings: bool,
    /// Suspend the breakpoint when its BPF program uses more than this
    /// percentage of one CPU; 0: the daemon's `--cpu-budget` (which is also
    /// the most a client may ask for).
    #[prost(double, tag = "17")]
    pub cpu_budget: f64,
}

/// A message from a session's client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientMsg {
    #[prost(oneof = "client_msg::Msg", tags = "1, 2, 3, 4")]
    pub msg: Option<client_msg::Msg>,
}

pub mod client_msg {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Msg {
        /// Must come first.
        #[prost(message, tag = "1")]
        Open(super::OpenSession),
        #[prost(message, tag = "2")]
        Add(super::BreakpointSpec),
        /// A breakpoint id of this session.
        #[prost(string, tag = "3")]
        Remove(String),
        #[prost(message, tag = "4")]
        Heartbeat(super::Heartbeat),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpenSession {
    /// How long the daemon keeps the session's breakpoints without hearing
    /// from the client; 0: the daemon's default (30 s).
    #[prost(uint64, tag = "1")]
    pub ttl_ms: u64,
    /// Resume this session (after a reconnect) instead of opening a new one.
    #[prost(string, tag = "2")]
    pub resume: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Heartbeat {}

/// A message to a session's client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServerMsg {
    #[prost(oneof = "server_msg::Msg", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub msg: Option<server_msg::Msg>,
}

pub mod server_msg {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Msg {
        #[prost(message, tag = "1")]
        Opened(super::SessionOpened),
        /// A breakpoint's status (after Add, and when it changes).
        #[prost(message, tag = "2")]
        Breakpoint(super::BreakpointInfo),
        /// A request of the session failed.
        #[prost(string, tag = "3")]
        Error(String),
        #[prost(message, tag = "4")]
        Event(super::Event),
        /// Events not delivered because the client read too slowly (total so far).
        #[prost(message, tag = "5")]
        Dropped(super::Dropped),
        /// A breakpoint id that was removed.
        #[prost(string, tag = "6")]
        Removed(String),
        #[prost(message, tag = "7")]
        HeartbeatAck(super::Heartbeat),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOpened {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
}

/// One hit: `json` is the line `probe attach --format json` prints.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(string, tag = "1")]
    pub bp_id: String,
    #[prost(string, tag = "2")]
    pub json: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dropped {
    #[prost(uint64, tag = "1")]
    pub count: u64,
}

/// A breakpoint outside any session.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddRequest {
    #[prost(message, optional, tag = "1")]
    pub spec: Option<BreakpointSpec>,
    /// Detach it after this long; 0: never (until removed).
    #[prost(uint64, tag = "2")]
    pub expires_in_ms: u64,
    /// Store it in etcd for every daemon the selector matches (the daemon
    /// must run with `--etcd`).
    #[prost(bool, tag = "3")]
    pub fleet: bool,
    #[prost(message, optional, tag = "4")]
    pub selector: Option<Selector>,
}

/// A breakpoint and its status. Also the stored form of a breakpoint (the
/// status fields are then empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BreakpointInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub spec: Option<BreakpointSpec>,
    /// The owning session; empty for a breakpoint outside sessions.
    #[prost(string, tag = "3")]
    pub session: String,
    /// Unix milliseconds; 0: no expiry.
    #[prost(uint64, tag = "4")]
    pub expires_at_ms: u64,
    /// "pending", "attached", "suspended" (attached, over its CPU budget:
    /// hits are counted, not captured; `error_kind` "cpu_budget"), "error"
    /// or "detached".
    #[prost(string, tag = "5")]
    pub state: String,
    /// Why it is in "error" or "detached": a stable kind
    /// ("unknown_function", "no_such_process", "not_go", …)…
    #[prost(string, tag = "6")]
    pub error_kind: String,
    /// …and the full message.
    #[prost(string, tag = "7")]
    pub error: String,
    /// Probes attached (a function can have several: inlined copies, returns).
    #[prost(uint32, tag = "8")]
    pub probes: u32,
    /// What it is attached to, e.g. "/srv/store (go1.27.3, every process running it)".
    #[prost(string, tag = "9")]
    pub target: String,
    /// Hits shown since it was attached (this daemon run).
    #[prost(uint64, tag = "10")]
    pub hits: u64,
    #[prost(uint64, tag = "11")]
    pub created_ms: u64,
    /// The identity that added it (checked against the policy again on restore).
    #[prost(string, tag = "12")]
    pub owner: String,
    /// A fleet breakpoint (stored in etcd; see `daemon::fleet`).
    #[prost(bool, tag = "13")]
    pub fleet: bool,
    /// Which daemons and executables a fleet breakpoint applies to.
    #[prost(message, optional, tag = "14")]
    pub selector: Option<Selector>,
    /// A fleet breakpoint's status on every host that reported one
    /// (`ListBreakpoints` of a daemon with `--etcd`).
    #[prost(message, repeated, tag = "15")]
    pub hosts: Vec<HostStatus>,
    /// Hits the kernel counted while the breakpoint was suspended.
    #[prost(uint64, tag = "16")]
    pub suspended_hits: u64,
}

/// Where a fleet breakpoint applies. Every set part must match; an empty
/// selector matches every daemon (and then `spec.binary` names the file).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Selector {
    /// An executable's base name (`api`), or, with a `/`, a glob on its
    /// absolute path (`/srv/*/api`); `*` and `?` also work in a base name.
    #[prost(string, tag = "1")]
    pub binary: String,
    /// The executable's Go build id or GNU build id (hex).
    #[prost(string, tag = "2")]
    pub build_id: String,
    /// Host labels: the daemon's `--label`s must include every one.
    #[prost(btree_map = "string, string", tag = "3")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One daemon's view of a fleet breakpoint, as it publishes it in etcd.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HostStatus {
    #[prost(string, tag = "1")]
    pub host: String,
    /// "attached", "waiting" (selected, no matching executable yet),
    /// "skipped" (the selector does not match this host), "error", "detached".
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(string, tag = "3")]
    pub error_kind: String,
    #[prost(string, tag = "4")]
    pub error: String,
    #[prost(uint32, tag = "5")]
    pub probes: u32,
    #[prost(string, tag = "6")]
    pub target: String,
    #[prost(uint64, tag = "7")]
    pub hits: u64,
    #[prost(uint64, tag = "8")]
    pub updated_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveReply {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BreakpointList {
    #[prost(message, repeated, tag = "1")]
    pub breakpoints: Vec<BreakpointInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint64, tag = "2")]
    pub ttl_ms: u64,
    /// A client stream is open.
    #[prost(bool, tag = "3")]
    pub connected: bool,
    /// Since the client was last heard from.
    #[prost(uint64, tag = "4")]
    pub idle_ms: u64,
    #[prost(string, repeated, tag = "5")]
    pub breakpoints: Vec<String>,
    #[prost(uint64, tag = "6")]
    pub dropped: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionList {
    #[prost(message, repeated, tag = "1")]
    pub sessions: Vec<SessionInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryRequest {
    /// Empty: every breakpoint.
    #[prost(string, tag = "1")]
    pub bp_id: String,
    /// The most recent N hits; 0: 100.
    #[prost(uint32, tag = "2")]
    pub limit: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryReply {
    /// Oldest first.
    #[prost(message, repeated, tag = "1")]
    pub hits: Vec<Event>,
}

/// The store's breakpoint file (`breakpoints.pb`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoreFile {
    #[prost(message, repeated, tag = "1")]
    pub breakpoints: Vec<BreakpointInfo>,
    /// The next breakpoint number, so ids are never reused.
    #[prost(uint64, tag = "2")]
    pub next_id: u64,
}

include!(concat!(env!("OUT_DIR"), "/probe.v1.Daemon.rs"));

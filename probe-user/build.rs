//! Embeds the eBPF object built by `cargo xtask build-ebpf`.
//!
//! A plain `cargo build`/`cargo test` (no nightly, no bpf-linker) still works:
//! without the object an empty one is embedded and `probe attach` says how to
//! build it. Everything that does not load programs is unaffected.
//!
//! Also generates the `probe daemon` gRPC service (server and client) from a
//! description in Rust (`tonic_build::manual`): the messages are hand-written
//! prost structs in `src/daemon/proto.rs`, so no `protoc` is needed; and,
//! the same way, the few etcd v3 services the fleet mode calls (clients
//! only; messages in `src/daemon/etcd.rs`).
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let default = manifest.join("../target/ebpf/bpfel-unknown-none/release/probe-ebpf");
    let src = env::var_os("PROBE_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or(default);
    println!("cargo:rerun-if-env-changed=PROBE_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("probe-ebpf.o");
    match fs::read(&src) {
        Ok(bytes) => fs::write(&out, bytes).unwrap(),
        Err(_) => fs::write(&out, b"").unwrap(),
    }
    daemon_service();
    etcd_client();
}

/// The `probe.v1.Daemon` service; see `src/daemon/proto.rs` for the messages.
fn daemon_service() {
    use tonic_build::manual::{Builder, Method, Service};
    let m = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::daemon::proto::{input}"))
            .output_type(format!("crate::daemon::proto::{output}"))
            .codec_path("tonic_prost::ProstCodec")
    };
    let service = Service::builder()
        .name("Daemon")
        .package("probe.v1")
        .method(
            m("session", "Session", "ClientMsg", "ServerMsg")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .method(
            m(
                "add_breakpoint",
                "AddBreakpoint",
                "AddRequest",
                "BreakpointInfo",
            )
            .build(),
        )
        .method(
            m(
                "remove_breakpoint",
                "RemoveBreakpoint",
                "RemoveRequest",
                "RemoveReply",
            )
            .build(),
        )
        .method(
            m(
                "list_breakpoints",
                "ListBreakpoints",
                "ListRequest",
                "BreakpointList",
            )
            .build(),
        )
        .method(
            m(
                "list_sessions",
                "ListSessions",
                "ListRequest",
                "SessionList",
            )
            .build(),
        )
        .method(m("history", "History", "HistoryRequest", "HistoryReply").build())
        .build();
    Builder::new().compile(&[service]);
    println!("cargo:rerun-if-changed=build.rs");
}

/// The parts of etcd's v3 API the fleet mode uses (`etcdserverpb.KV`,
/// `Watch` and `Lease`), clients only; the messages are hand-written in
/// `src/daemon/etcd.rs` with etcd's own field numbers.
fn etcd_client() {
    use tonic_build::manual::{Builder, Method, Service};
    let m = |name: &str, route: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type(format!("crate::daemon::etcd::pb::{input}"))
            .output_type(format!("crate::daemon::etcd::pb::{output}"))
            .codec_path("tonic_prost::ProstCodec")
    };
    let kv = Service::builder()
        .name("KV")
        .package("etcdserverpb")
        .method(m("range", "Range", "RangeRequest", "RangeResponse").build())
        .method(m("put", "Put", "PutRequest", "PutResponse").build())
        .method(
            m(
                "delete_range",
                "DeleteRange",
                "DeleteRangeRequest",
                "DeleteRangeResponse",
            )
            .build(),
        )
        .build();
    let watch = Service::builder()
        .name("Watch")
        .package("etcdserverpb")
        .method(
            m("watch", "Watch", "WatchRequest", "WatchResponse")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    let lease = Service::builder()
        .name("Lease")
        .package("etcdserverpb")
        .method(
            m(
                "lease_grant",
                "LeaseGrant",
                "LeaseGrantRequest",
                "LeaseGrantResponse",
            )
            .build(),
        )
        .method(
            m(
                "lease_keep_alive",
                "LeaseKeepAlive",
                "LeaseKeepAliveRequest",
                "LeaseKeepAliveResponse",
            )
            .client_streaming()
            .server_streaming()
            .build(),
        )
        .build();
    Builder::new()
        .build_server(false)
        .compile(&[kv, watch, lease]);
}

//! Embeds the eBPF object built by `cargo xtask build-ebpf`.
//!
//! A plain `cargo build`/`cargo test` (no nightly, no bpf-linker) still works:
//! without the object an empty one is embedded and `probe attach` says how to
//! build it. Everything that does not load programs is unaffected.
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
}

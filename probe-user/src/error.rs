//! Errors a user can meet, each with a message that says what to do next.

use std::path::PathBuf;

/// Everything that can stop `probe` from attaching or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure with what we were doing.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The target file is not an ELF executable at all.
    #[error("{path} is not an ELF executable ({reason}); pass the Go program's binary, not a script or archive")]
    NotElf { path: PathBuf, reason: String },
    /// An ELF file without Go's markers (`.go.buildinfo`, `.gopclntab`).
    #[error("{path} is not a Go binary: it has no .go.buildinfo or .gopclntab section. Probe traces Go programs; for other programs use a raw-address probe (coming with --addr)")]
    NotGo { path: PathBuf },
    /// A Go binary whose DWARF was stripped (`-ldflags=-w` or `-s`).
    #[error("{path} is a Go binary ({go_version}) without DWARF debug info (built with -ldflags=-w or -s, or stripped): Probe needs .debug_info to find functions' parameters and types. Rebuild without -w/-s in -ldflags")]
    NoDwarf { path: PathBuf, go_version: String },
    /// DWARF present but unreadable.
    #[error("cannot read DWARF of {path}: {reason}")]
    BadDwarf { path: PathBuf, reason: String },
    /// `--func` named no function of the binary.
    #[error("no function {name:?} in {path}{}", suggest(.near))]
    UnknownFunction { name: String, path: PathBuf, near: Vec<String> },
    /// `--pid` names no running process.
    #[error("no process with pid {pid} (is it still running? check with `ps -p {pid}`)")]
    NoSuchPid { pid: u32 },
    /// BPF needs privileges we do not have.
    #[error("not enough privilege to {what}: Probe needs root, or the capabilities CAP_BPF and CAP_PERFMON (plus CAP_SYS_RESOURCE on older kernels); run it with sudo")]
    Privilege {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel's verifier refused a program.
    #[error("the kernel's BPF verifier rejected program {program}: {reason}\n  this is a bug in Probe (please report it with the log below) or a kernel too old for it (Probe needs Linux ≥ 5.15)\n--- verifier log (last lines) ---\n{log}")]
    Verifier { program: String, reason: String, log: String },
    /// The eBPF object is missing from this build.
    #[error("this probe binary was built without its eBPF programs; build with `cargo xtask build` (which compiles probe-ebpf first)")]
    NoEbpfObject,
    /// Anything the kernel side refused otherwise.
    #[error("{0}")]
    Kernel(String),
    /// A feature or input Probe does not support yet.
    #[error("{0}")]
    Unsupported(String),
}

fn suggest(near: &[String]) -> String {
    if near.is_empty() {
        "; list candidates with `probe symbols <binary> <pattern>`".to_owned()
    } else {
        let mut s = String::from("; closest matches:");
        for n in near {
            s.push_str("\n    ");
            s.push_str(n);
        }
        s
    }
}

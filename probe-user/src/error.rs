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
    #[error("{path} is not a Go binary: it has no .go.buildinfo or .gopclntab section. Probe traces Go programs; for other programs, probe raw addresses with --addr")]
    NotGo { path: PathBuf },
    /// A Go binary whose DWARF was stripped (`-ldflags=-w` or `-s`).
    #[error("{path} is a Go binary ({go_version}) without DWARF debug info (built with -ldflags=-w or -s, or stripped): Probe needs .debug_info to find functions' parameters and types. Rebuild without -w/-s in -ldflags")]
    NoDwarf { path: PathBuf, go_version: String },
    /// DWARF present but unreadable.
    #[error("cannot read DWARF of {path}: {reason}")]
    BadDwarf { path: PathBuf, reason: String },
    /// `--func` named no function of the binary.
    #[error("no function {name:?} in {path}{}", suggest(.near))]
    UnknownFunction {
        name: String,
        path: PathBuf,
        near: Vec<String>,
    },
    /// `--pid` names no running process.
    #[error("no process with pid {pid} (is it still running? check with `ps -p {pid}`)")]
    NoSuchPid { pid: u32 },
    /// BPF needs privileges we do not have.
    #[error("not enough privilege to {what}: {}; run Probe as root (sudo) or grant the missing capabilities", missing_caps())]
    Privilege {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel's verifier refused a program.
    #[error("the kernel's BPF verifier rejected program {program}: {reason}\n  this is a bug in Probe (please report it with the log below) or a kernel too old for it (Probe needs Linux ≥ 5.15)\n--- verifier log (last lines) ---\n{log}")]
    Verifier {
        program: String,
        reason: String,
        log: String,
    },
    /// The running kernel lacks BPF features Probe cannot do without.
    #[error("this kernel lacks {missing}: Probe cannot run on Linux {release}. Run it on Linux 5.15 or later (Debian 12's 6.1 and Ubuntu 22.04's 5.15 work); `probe doctor` lists what this kernel offers")]
    KernelLacks { release: String, missing: String },
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

impl Error {
    /// A stable, machine-readable name for what went wrong (the daemon
    /// reports it as a breakpoint's `error_kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::NotElf { .. } => "not_elf",
            Error::NotGo { .. } => "not_go",
            Error::NoDwarf { .. } => "no_dwarf",
            Error::BadDwarf { .. } => "bad_dwarf",
            Error::UnknownFunction { .. } => "unknown_function",
            Error::NoSuchPid { .. } => "no_such_process",
            Error::Privilege { .. } => "privilege",
            Error::Verifier { .. } | Error::NoEbpfObject | Error::Kernel(_) => "kernel",
            Error::KernelLacks { .. } => "kernel_too_old",
            Error::Unsupported(_) => "unsupported",
        }
    }
}

/// The error and its sources on one line (libraries such as aya and tonic
/// put the useful part in the sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Which of the capabilities Probe needs this process lacks (from
/// `CapEff` in /proc/self/status): CAP_BPF (39) to load programs and maps,
/// CAP_PERFMON (38) to attach uprobes and read user memory.
pub fn missing_caps() -> String {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok());
    let Some(eff) = eff else {
        return "Probe needs CAP_BPF and CAP_PERFMON".into();
    };
    let missing: Vec<&str> = [(39, "CAP_BPF"), (38, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| eff & (1u64 << bit) == 0 && eff & (1u64 << 21) == 0) // CAP_SYS_ADMIN covers both
        .map(|(_, n)| n)
        .collect();
    if missing.is_empty() {
        "the kernel refused although CAP_BPF and CAP_PERFMON are present (a seccomp or LSM policy, or kernel.unprivileged_bpf_disabled?)".into()
    } else {
        format!("this process lacks {}", missing.join(" and "))
    }
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

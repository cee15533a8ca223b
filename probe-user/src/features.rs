//! What the running kernel offers Probe, found by asking it, not by its
//! version number: each BPF feature Probe uses is probed the way bpftool's
//! `feature probe` does it (create a tiny map, load a two-instruction
//! program that calls a helper and read the verifier's answer), so that a
//! distribution kernel with backported features, or one built without some,
//! is judged by what it does.
//!
//! Owns the probes and the [`Feature`] catalogue (what each feature is for,
//! the kernel release that brings it, and what Probe does without it). It
//! loads nothing that stays: every map and program is closed at once. It
//! uses raw `bpf(2)` calls rather than aya, so that the check runs before,
//! and independently of, loading Probe's own object.

use std::{fmt, path::Path};

/// A kernel capability Probe relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// The `bpf(2)` system call and the right to load a program.
    BpfSyscall,
    /// `BPF_MAP_TYPE_RINGBUF`: the doorbell that wakes the reader.
    RingBuf,
    /// `BPF_F_MMAPABLE` arrays: the event rings userspace reads in place.
    MmapableArray,
    /// `bpf_get_attach_cookie` on uprobes: one program serves every probe.
    AttachCookie,
    /// `bpf_for_each_map_elem`: the capture walk's loop where `bpf_loop`
    /// is missing.
    ForEachMapElem,
    /// `bpf_loop`: the capture walk over pointers (with a fallback).
    BpfLoop,
    /// The kernel's own BTF (`/sys/kernel/btf/vmlinux`).
    Btf,
}

/// What Probe does when a feature is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Probe cannot run without it.
    Required,
    /// Probe runs without it, with the fallback this names.
    Fallback(&'static str),
    /// Only informative (nothing Probe loads depends on it today).
    Optional(&'static str),
}

impl Feature {
    /// Every feature, in the order `probe doctor` shows them.
    pub const ALL: [Feature; 7] = [
        Feature::BpfSyscall,
        Feature::RingBuf,
        Feature::MmapableArray,
        Feature::AttachCookie,
        Feature::ForEachMapElem,
        Feature::BpfLoop,
        Feature::Btf,
    ];

    /// A short name, as the kernel's documentation spells it.
    pub fn name(self) -> &'static str {
        match self {
            Feature::BpfSyscall => "BPF programs (bpf syscall)",
            Feature::RingBuf => "BPF ring buffer maps",
            Feature::MmapableArray => "memory-mapped BPF arrays (BPF_F_MMAPABLE)",
            Feature::AttachCookie => "BPF cookies on uprobes (bpf_get_attach_cookie)",
            Feature::ForEachMapElem => "bpf_for_each_map_elem helper",
            Feature::BpfLoop => "bpf_loop helper",
            Feature::Btf => "kernel BTF (/sys/kernel/btf/vmlinux)",
        }
    }

    /// The mainline release that brought it.
    pub fn since(self) -> &'static str {
        match self {
            Feature::BpfSyscall => "4.4",
            Feature::RingBuf => "5.8",
            Feature::MmapableArray => "5.5",
            Feature::AttachCookie => "5.15",
            Feature::ForEachMapElem => "5.13",
            Feature::BpfLoop => "5.17",
            Feature::Btf => "5.4 (with CONFIG_DEBUG_INFO_BTF)",
        }
    }

    /// What Probe does without it.
    pub fn need(self) -> Need {
        match self {
            Feature::BpfSyscall
            | Feature::RingBuf
            | Feature::MmapableArray
            | Feature::AttachCookie
            | Feature::ForEachMapElem => Need::Required,
            Feature::BpfLoop => Need::Fallback(
                "the capture walk loops with bpf_for_each_map_elem instead (the same steps; a little slower per step)",
            ),
            Feature::Btf => Need::Optional(
                "Probe's programs do not use CO-RE; other BPF tools may need it",
            ),
        }
    }
}

/// Whether the kernel has a feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    Yes,
    No,
    /// The probe could not tell (typically: no privilege to load BPF).
    Unknown(String),
}

/// The running kernel and what it offers.
#[derive(Clone, Debug)]
pub struct KernelFeatures {
    /// `uname -r`.
    pub release: String,
    pub found: Vec<(Feature, Presence)>,
}

impl KernelFeatures {
    /// Probes the running kernel (needs the privilege to load BPF programs
    /// for an answer other than [`Presence::Unknown`]).
    pub fn detect() -> Self {
        let found = Feature::ALL.iter().map(|&f| (f, probe(f))).collect();
        Self {
            release: release(),
            found,
        }
    }

    /// The presence of `f`.
    pub fn has(&self, f: Feature) -> &Presence {
        self.found
            .iter()
            .find(|(g, _)| *g == f)
            .map(|(_, p)| p)
            .unwrap_or(&Presence::No)
    }

    /// The required features known to be missing.
    pub fn missing_required(&self) -> Vec<Feature> {
        self.found
            .iter()
            .filter(|(f, p)| f.need() == Need::Required && *p == Presence::No)
            .map(|(f, _)| *f)
            .collect()
    }
}

/// The kernel release (`uname -r`), or "unknown".
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// `PROBE_FORCE_NO_BPF_LOOP=1`: take the walk's fallback even where the
/// kernel has `bpf_loop` (how the tests prove the fallback on every kernel).
pub fn bpf_loop_forced_off() -> bool {
    std::env::var_os("PROBE_FORCE_NO_BPF_LOOP").is_some_and(|v| v == "1")
}

fn probe(f: Feature) -> Presence {
    match f {
        Feature::BpfSyscall => load_program(&[MOV_R0_0, EXIT]),
        Feature::RingBuf => create_map(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0),
        Feature::MmapableArray => create_map(BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_MMAPABLE),
        Feature::AttachCookie => helper(BPF_FUNC_GET_ATTACH_COOKIE),
        Feature::ForEachMapElem => helper(BPF_FUNC_FOR_EACH_MAP_ELEM),
        Feature::BpfLoop => helper(BPF_FUNC_LOOP),
        Feature::Btf => {
            if Path::new("/sys/kernel/btf/vmlinux").exists() {
                Presence::Yes
            } else {
                Presence::No
            }
        }
    }
}

// The few constants of include/uapi/linux/bpf.h the probes need.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_FUNC_FOR_EACH_MAP_ELEM: i32 = 164;
const BPF_FUNC_GET_ATTACH_COOKIE: i32 = 174;
const BPF_FUNC_LOOP: i32 = 181;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const MOV_R0_0: Insn = Insn {
    code: 0xb7, // BPF_ALU64 | BPF_MOV | BPF_K
    regs: 0,
    off: 0,
    imm: 0,
};
const EXIT: Insn = Insn {
    code: 0x95, // BPF_JMP | BPF_EXIT
    regs: 0,
    off: 0,
    imm: 0,
};

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct MapAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    _rest: [u32; 27],
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
struct ProgAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    _rest: [u32; 24],
}

fn bpf(cmd: libc::c_long, attr: *mut u8, size: usize) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    // SAFETY: `attr` points to a zero-padded `bpf_attr` prefix of `size` bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size as libc::c_uint) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        // SAFETY: a successful BPF_MAP_CREATE/PROG_LOAD returns a new fd we own.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
    }
}

fn create_map(map_type: u32, key: u32, value: u32, entries: u32, flags: u32) -> Presence {
    let mut a = MapAttr {
        map_type,
        key_size: key,
        value_size: value,
        max_entries: entries,
        map_flags: flags,
        ..Default::default()
    };
    match bpf(
        BPF_MAP_CREATE,
        &mut a as *mut MapAttr as *mut u8,
        std::mem::size_of::<MapAttr>(),
    ) {
        Ok(_) => Presence::Yes,
        Err(e) if e == libc::EPERM => unknown_privilege(),
        // An unknown map type or flag.
        Err(_) => Presence::No,
    }
}

fn unknown_privilege() -> Presence {
    Presence::Unknown("no privilege to load BPF (run as root)".into())
}

/// Loads `insns` as a kprobe program (the type uprobe programs have);
/// returns the verifier's log on failure.
fn load(insns: &[Insn]) -> Result<(), (i32, String)> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut a = ProgAttr {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        _rest: [0; 24],
    };
    match bpf(
        BPF_PROG_LOAD,
        &mut a as *mut ProgAttr as *mut u8,
        std::mem::size_of::<ProgAttr>(),
    ) {
        Ok(_) => Ok(()),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).into_owned()))
        }
    }
}

fn load_program(insns: &[Insn]) -> Presence {
    match load(insns) {
        Ok(()) => Presence::Yes,
        Err((e, _)) if e == libc::EPERM => unknown_privilege(),
        Err((e, log)) => Presence::Unknown(format!(
            "a minimal program was refused ({}): {}",
            std::io::Error::from_raw_os_error(e),
            log.lines().last().unwrap_or("")
        )),
    }
}

/// Is helper `id` available to uprobe programs? A call with unset
/// arguments: a kernel without the helper says "invalid func" (or "unknown
/// func"); one with it complains about the arguments instead, or accepts.
fn helper(id: i32) -> Presence {
    let call = Insn {
        code: 0x85, // BPF_JMP | BPF_CALL
        regs: 0,
        off: 0,
        imm: id,
    };
    match load(&[call, MOV_R0_0, EXIT]) {
        Ok(()) => Presence::Yes,
        Err((e, _)) if e == libc::EPERM => unknown_privilege(),
        Err((_, log)) if helper_missing(&log) => Presence::No,
        Err((_, log)) if log.is_empty() => {
            Presence::Unknown("the kernel refused the probe without a verifier log".into())
        }
        Err(_) => Presence::Yes,
    }
}

/// The verifier's words for a helper it does not know (or does not offer
/// to this program type).
fn helper_missing(log: &str) -> bool {
    log.contains("invalid func")
        || log.contains("unknown func")
        || log.contains("cannot use helper")
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presence::Yes => f.write_str("yes"),
            Presence::No => f.write_str("MISSING"),
            Presence::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_words_for_a_missing_helper() {
        // 5.10's answer to bpf_loop, and 6.x's answer to a made-up helper.
        assert!(helper_missing(
            "0: (85) call unknown#181\ninvalid func unknown#181\n"
        ));
        assert!(helper_missing("unknown func bpf_foo#999\n"));
        assert!(!helper_missing(
            "0: R1=ctx() R10=fp0\n; R1 type=ctx expected=fp, pkt, pkt_meta, map_key, map_value"
        ));
    }

    #[test]
    fn every_feature_says_what_brings_it_and_what_happens_without_it() {
        for f in Feature::ALL {
            assert!(!f.name().is_empty());
            assert!(f.since().chars().next().unwrap().is_ascii_digit());
            match f.need() {
                Need::Required => {}
                Need::Fallback(s) | Need::Optional(s) => assert!(!s.is_empty()),
            }
        }
        // The capture cannot run without these; only bpf_loop has a fallback.
        assert_eq!(Feature::AttachCookie.need(), Need::Required);
        assert!(matches!(Feature::BpfLoop.need(), Need::Fallback(_)));
    }

    #[test]
    fn instructions_have_the_kernels_size() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // Both attr prefixes fit in the kernel's union bpf_attr (which is larger).
        assert!(std::mem::size_of::<MapAttr>() <= 128);
        assert!(std::mem::size_of::<ProgAttr>() <= 144);
    }
}

//! The kernel side, from userspace: loads Probe's eBPF object (embedded at
//! build time), writes per-probe parameters into `PROBES`, attaches the one
//! uprobe program at every probe's file offset with the probe's index as the
//! BPF cookie, and reads `STATS`; hands the event rings to [`crate::rings`].
//!
//! With `rings`, the only module that touches aya. Failures are mapped to
//! [`Error`]s that say what to do: missing privilege, verifier rejections
//! with the log.

use std::{num::NonZeroU32, path::Path};

use aya::{
    maps::{Array, HashMap as BpfHashMap, Map, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        UProbe,
    },
    Ebpf, EbpfLoader, VerifierLogLevel,
};
use probe_common::{
    Control, ProbeParams, ProbeStats, RType, TypeInfo, MAX_PROBES, MAX_RINGS, PARAM_LEAN,
};

use crate::{
    error::{chain, Error},
    features::{bpf_loop_forced_off, Feature, KernelFeatures, Presence},
};

/// The eBPF object built by `cargo xtask build-ebpf`, aligned for the ELF parser.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe-ebpf.o"));

/// The program every probe runs.
pub const ENTRY_PROGRAM: &str = "probe_entry";
/// An empty program, the benchmarks' floor; see `probe selftest floor`
/// (whose `--work` loads the floor's pieces, `probe_floor_*`).
pub const FLOOR_PROGRAM: &str = "probe_floor";
/// A program the verifier must reject; see `probe selftest verifier`.
pub const SELFTEST_REJECT_PROGRAM: &str = "selftest_verifier_reject";

/// Loaded programs and maps.
pub struct Kernel {
    ebpf: Ebpf,
    attached: u32,
    /// Event rings in `RINGS`.
    rings: u32,
    /// Samples the kernel's BPF run-time statistics.
    run_time: RunTimeSampler,
}

/// Measures the probe program's CPU use by turning the kernel's BPF run-time
/// statistics on for a short window at a time.
///
/// With statistics on, every run of every BPF program on the machine reads
/// the clock twice more (`bpf_prog_run` → `sched_clock()`); under a
/// hypervisor that is a paravirtual clock read (perf:
/// `pvclock_clocksource_read_nowd`), ~50 ns per hit for the pair on the
/// nested VMs we measure on, a sixth of our own program's work. One 200 ms
/// window in [`RunTimeSampler::PERIOD`] (4% of the time) keeps the estimate
/// (CPU share, run time per hit) at ~2 ns per hit on average, and a probe
/// over its CPU budget is still caught within seconds. The kernel keeps them on
/// while any holder's fd is open (`BPF_ENABLE_STATS`), so another tool
/// relying on them is not disturbed.
struct RunTimeSampler {
    /// Open while the current window is measured.
    fd: Option<std::os::fd::OwnedFd>,
    /// Start of the current window (or of the current pause) and the
    /// program's run time then.
    since: std::time::Instant,
    run_time0: std::time::Duration,
    /// The kernel refused to enable statistics (old kernel, no privilege).
    unavailable: bool,
}

impl RunTimeSampler {
    /// One measured window per period.
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
    const WINDOW: std::time::Duration = std::time::Duration::from_millis(200);
}

/// `PROBE_NO_LEAN=1`: every probe takes the kernel's general path, even
/// one the lean path fits ([`ProbeParams::lean`]): a diagnostic switch, and
/// how the integration tests check that both paths write the same events.
pub fn lean_disabled() -> bool {
    std::env::var_os("PROBE_NO_LEAN").is_some_and(|v| v == "1")
}

/// Does the kernel capture this probe on its lean path? What
/// [`Kernel::configure`] decides and `--dry-run` reports.
pub fn takes_lean_path(params: &ProbeParams) -> bool {
    params.lean() && !lean_disabled()
}

/// One program of the object loaded in one variant, and what the kernel said.
pub struct VariantLoad {
    pub program: String,
    /// The load-time choices, in words ("ForEachElem walk, 1 rings").
    pub variant: String,
    /// Instructions the verifier processed (where the kernel reports it).
    pub outcome: Result<Option<u32>, Error>,
}

/// How the capture walk loops in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkLoop {
    /// `bpf_loop` (Linux 5.17+).
    BpfLoop,
    /// `bpf_for_each_map_elem` over `STEPS` (5.13+): the same `MAX_STEPS`
    /// steps per hit, for 5.15 and 5.16.
    ForEachElem,
}

impl WalkLoop {
    /// Which loop the walk would use here, in words (for `--dry-run`).
    pub fn describe() -> &'static str {
        match Self::for_this_kernel() {
            Ok(WalkLoop::BpfLoop) => "bpf_loop",
            Ok(WalkLoop::ForEachElem) if bpf_loop_forced_off() => {
                "bpf_for_each_map_elem (PROBE_FORCE_NO_BPF_LOOP=1)"
            }
            Ok(WalkLoop::ForEachElem) => {
                "bpf_for_each_map_elem (this kernel has no bpf_loop, which came in Linux 5.17)"
            }
            Err(_) => "none: this kernel lacks what Probe needs (see `probe doctor`)",
        }
    }

    /// Checks the running kernel: refuses, naming what is missing, where a
    /// feature Probe cannot do without is absent; picks the for-each walk
    /// where `bpf_loop` is missing (or where `PROBE_FORCE_NO_BPF_LOOP=1`).
    pub fn for_this_kernel() -> Result<Self, Error> {
        Self::for_kernel(&KernelFeatures::detect())
    }

    /// [`WalkLoop::for_this_kernel`] for features already detected.
    fn for_kernel(k: &KernelFeatures) -> Result<Self, Error> {
        let missing = k.missing_required();
        if !missing.is_empty() {
            return Err(Error::KernelLacks {
                release: k.release.clone(),
                missing: missing
                    .iter()
                    .map(|f| format!("{} (Linux {})", f.name(), f.since()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(
            if bpf_loop_forced_off() || *k.has(Feature::BpfLoop) == Presence::No {
                WalkLoop::ForEachElem
            } else {
                WalkLoop::BpfLoop
            },
        )
    }
}

impl Kernel {
    /// Loads the object and the named program into the kernel, with the
    /// walk this kernel supports and one ring per CPU.
    pub fn load(program: &str) -> Result<Self, Error> {
        // One ring per CPU (up to MAX_RINGS; CPUs beyond share).
        let rings = aya::util::nr_cpus()
            .map(|n| n as u32)
            .unwrap_or(MAX_RINGS)
            .clamp(1, MAX_RINGS);
        Self::load_variant(program, WalkLoop::for_this_kernel()?, rings)
    }

    /// Loads the object with `rings` event rings and the `walk` loop, and
    /// the named program.
    pub fn load_variant(program: &str, walk: WalkLoop, rings: u32) -> Result<Self, Error> {
        let mut ebpf = load_object(walk, rings)?;
        load_program(&mut ebpf, program)?;
        let mut k = Self {
            ebpf,
            attached: 0,
            rings,
            // No window yet: the first call of `sample_cpu` opens one (a
            // program nobody samples, like the benchmarks' floor, runs
            // without statistics).
            run_time: RunTimeSampler {
                fd: None,
                since: std::time::Instant::now() - RunTimeSampler::PERIOD,
                run_time0: Default::default(),
                unavailable: false,
            },
        };
        k.set_control(Control {
            suspended: 0,
            rings,
        })?;
        Ok(k)
    }

    /// Every program of the object, each loaded in every variant Probe can
    /// generate: the walk with `bpf_loop` (where the kernel has it) and the
    /// `bpf_for_each_map_elem` fallback, one ring and the most rings. A probe's capture
    /// plan, conditions, lean or general path, `--stack` and `--returns`
    /// are data in `PROBES`, which the verifier treats as unknown, so one
    /// load of a program covers all of them. Returns each (program,
    /// variant, outcome); `selftest_verifier_reject` must be rejected.
    pub fn load_every_variant() -> Result<Vec<VariantLoad>, Error> {
        // A kernel without what Probe needs is refused as `probe attach`
        // refuses it (the programs also use what came before: atomic
        // exchange, 5.12, among them), not with verifier logs.
        let k = KernelFeatures::detect();
        WalkLoop::for_kernel(&k)?;
        let mut walks = vec![WalkLoop::ForEachElem];
        if *k.has(Feature::BpfLoop) != Presence::No {
            walks.insert(0, WalkLoop::BpfLoop);
        }
        let mut out = vec![];
        for walk in walks {
            for rings in [1, MAX_RINGS] {
                let mut ebpf = load_object(walk, rings)?;
                let mut names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
                names.sort();
                for name in names {
                    let r = load_program(&mut ebpf, &name);
                    out.push(VariantLoad {
                        program: name,
                        variant: format!("{walk:?} walk, {rings} rings"),
                        outcome: r,
                    });
                }
            }
        }
        Ok(out)
    }

    fn set_control(&mut self, c: Control) -> Result<(), Error> {
        let mut m: Array<_, Control> =
            Array::try_from(self.ebpf.map_mut("CONTROL").expect("CONTROL map"))
                .map_err(|e| Error::Kernel(format!("CONTROL map: {e}")))?;
        m.set(0, c, 0)
            .map_err(|e| Error::Kernel(format!("writing CONTROL: {e}")))
    }

    /// Writes probe `id`'s parameters (before attaching it).
    pub fn configure(&mut self, id: u32, params: &ProbeParams) -> Result<(), Error> {
        if id >= MAX_PROBES {
            return Err(Error::Unsupported(format!(
                "at most {MAX_PROBES} probes at once"
            )));
        }
        let mut probes: Array<_, ProbeParams> =
            Array::try_from(self.ebpf.map_mut("PROBES").expect("PROBES map"))
                .map_err(|e| Error::Kernel(format!("PROBES map: {e}")))?;
        // The kernel's lean path for the probes it fits (the same event,
        // fewer instructions per hit); `PROBE_NO_LEAN=1` turns it off, to
        // tell the two apart should an event ever differ (the integration
        // tests compare them).
        let mut params = *params;
        if takes_lean_path(&params) {
            params.flags |= PARAM_LEAN;
        } else {
            params.flags &= !PARAM_LEAN;
        }
        probes
            .set(id, params, 0)
            .map_err(|e| Error::Kernel(format!("writing probe {id}: {e}")))
    }

    /// Writes the binary's type tables (before attaching any probe).
    pub fn write_tables(&mut self, types: &[TypeInfo], rtypes: &[(u64, u32)]) -> Result<(), Error> {
        let mut t: Array<_, TypeInfo> =
            Array::try_from(self.ebpf.map_mut("TYPES").expect("TYPES map"))
                .map_err(|e| Error::Kernel(format!("TYPES map: {e}")))?;
        for (i, info) in types.iter().enumerate() {
            t.set(i as u32, info, 0)
                .map_err(|e| Error::Kernel(format!("writing type {i}: {e}")))?;
        }
        let mut r: BpfHashMap<_, u64, RType> =
            BpfHashMap::try_from(self.ebpf.map_mut("RTYPES").expect("RTYPES map"))
                .map_err(|e| Error::Kernel(format!("RTYPES map: {e}")))?;
        for (addr, tid) in rtypes.iter().take(probe_common::MAX_RTYPES as usize) {
            r.insert(addr, RType { tid: *tid, _pad: 0 }, 0)
                .map_err(|e| Error::Kernel(format!("writing runtime type {addr:#x}: {e}")))?;
        }
        Ok(())
    }

    /// Limits probes with `PARAM_PID_FILTER` to these processes.
    pub fn set_pids(&mut self, pids: &[u32]) -> Result<(), Error> {
        let mut m: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(self.ebpf.map_mut("PIDS").expect("PIDS map"))
                .map_err(|e| Error::Kernel(format!("PIDS map: {e}")))?;
        for pid in pids.iter().take(probe_common::MAX_PIDS as usize) {
            m.insert(pid, 1, 0)
                .map_err(|e| Error::Kernel(format!("writing pid {pid}: {e}")))?;
        }
        Ok(())
    }

    /// Attaches probe `id` at `offset` in `target` (a path the kernel resolves
    /// to an inode: `/proc/PID/exe` works even for deleted files), for one
    /// process or for every process running the file.
    pub fn attach(
        &mut self,
        id: u32,
        target: &Path,
        offset: u64,
        pid: Option<u32>,
    ) -> Result<(), Error> {
        self.attach_program(ENTRY_PROGRAM, id, target, offset, pid)
    }

    /// Attaches a loaded program by name.
    pub fn attach_program(
        &mut self,
        program: &str,
        id: u32,
        target: &Path,
        offset: u64,
        pid: Option<u32>,
    ) -> Result<(), Error> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .expect("loaded")
            .try_into()
            .expect("a uprobe");
        let scope = match pid.and_then(NonZeroU32::new) {
            Some(p) => UProbeScope::OneProcess(p),
            None => UProbeScope::AllProcesses,
        };
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(id as u64),
        };
        prog.attach(point, target, scope).map_err(|e| {
            classify(
                &e,
                &format!(
                    "attach a uprobe to {} at offset {offset:#x}",
                    target.display()
                ),
            )
        })?;
        self.attached += 1;
        Ok(())
    }

    /// The probe program's cumulative run time and run count, as counted
    /// while statistics were on.
    fn prog_info(&self) -> Option<(std::time::Duration, u64)> {
        let prog: &UProbe = self.ebpf.program(ENTRY_PROGRAM)?.try_into().ok()?;
        prog.info().ok().map(|i| (i.run_time(), i.run_count()))
    }

    /// Call every few hundred milliseconds: when a measured window ends,
    /// the share of one CPU (percent) the probes used during it, and the
    /// window's length. `None` between windows, and always when the kernel
    /// keeps no statistics.
    pub fn sample_cpu(&mut self) -> Option<(f64, std::time::Duration)> {
        let s = &self.run_time;
        if s.unavailable {
            return None;
        }
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(s.since);
        if s.fd.is_none() {
            if elapsed + RunTimeSampler::WINDOW >= RunTimeSampler::PERIOD {
                let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
                let t0 = self.prog_info()?.0;
                let s = &mut self.run_time;
                s.unavailable = fd.is_none();
                s.fd = fd;
                s.since = now;
                s.run_time0 = t0;
            }
            return None;
        }
        if elapsed < RunTimeSampler::WINDOW {
            return None;
        }
        let t = self.prog_info()?.0;
        let s = &mut self.run_time;
        s.fd = None; // closing it ends the window
        s.since = now;
        Some((
            t.saturating_sub(s.run_time0).as_secs_f64() / elapsed.as_secs_f64() * 100.0,
            elapsed,
        ))
    }

    /// Mean run time of the probe program per run, over the measured
    /// windows (`None` when none was measured).
    pub fn ns_per_run(&self) -> Option<f64> {
        let (t, n) = self.prog_info()?;
        (n > 0 && !self.run_time.unavailable).then(|| t.as_nanos() as f64 / n as f64)
    }

    /// Suspends (or resumes) every probe: hits return at once, counted.
    pub fn set_suspended(&mut self, on: bool) -> Result<(), Error> {
        self.set_control(Control {
            suspended: u32::from(on),
            rings: self.rings,
        })
    }

    /// Attachments made so far.
    pub fn attached(&self) -> u32 {
        self.attached
    }

    /// Where the benchmarks' `probe_floor_delivered` finds the goroutine id
    /// in g's head.
    pub fn set_floor_goid(&mut self, goid_offset: u32) -> Result<(), Error> {
        let m = self
            .ebpf
            .map_mut("FLOOR_GOID")
            .ok_or_else(|| Error::Kernel("no FLOOR_GOID map".into()))?;
        let mut m: Array<_, u32> =
            Array::try_from(m).map_err(|e| Error::Kernel(format!("FLOOR_GOID map: {e}")))?;
        m.set(0, goid_offset, 0)
            .map_err(|e| Error::Kernel(format!("writing FLOOR_GOID: {e}")))
    }

    /// Takes the event rings (once).
    pub fn take_events(&mut self) -> Result<crate::rings::Events, Error> {
        let taken = || Error::Kernel("event rings already taken".into());
        let bell = self.ebpf.take_map("DOORBELL").ok_or_else(taken)?;
        let bell =
            RingBuf::try_from(bell).map_err(|e| Error::Kernel(format!("DOORBELL map: {e}")))?;
        let rings = match self.ebpf.take_map("RINGS").ok_or_else(taken)? {
            Map::Array(m) => m,
            _ => return Err(Error::Kernel("RINGS is not an array map".into())),
        };
        crate::rings::Events::new(rings, self.rings, bell)
    }

    /// The latest hit's data of the hand-written minimal capture
    /// (`probe_floor_minimal`, or only its two reads: `probe_floor_reads`,
    /// which takes no timestamp, so any CPU's), over CPUs; `None` before
    /// any hit.
    pub fn minimal_capture(&self) -> Result<Option<probe_common::MinimalCapture>, Error> {
        let m = self
            .ebpf
            .map("MINIMAL")
            .ok_or_else(|| Error::Kernel("no MINIMAL map".into()))?;
        let m: PerCpuArray<_, probe_common::MinimalCapture> =
            PerCpuArray::try_from(m).map_err(|e| Error::Kernel(format!("MINIMAL map: {e}")))?;
        let per_cpu = m
            .get(&0, 0)
            .map_err(|e| Error::Kernel(format!("reading MINIMAL: {e}")))?;
        Ok(per_cpu
            .iter()
            // g's head starts with stack.lo, never 0 once read.
            .filter(|c| c.ktime_ns != 0 || c.g_head[0] != 0)
            .max_by_key(|c| c.ktime_ns)
            .copied())
    }

    /// Probe `id`'s counters summed over CPUs.
    pub fn stats(&self, id: u32) -> Result<ProbeStats, Error> {
        let stats: PerCpuArray<_, ProbeStats> =
            PerCpuArray::try_from(self.ebpf.map("STATS").expect("STATS map"))
                .map_err(|e| Error::Kernel(format!("STATS map: {e}")))?;
        let per_cpu = stats
            .get(&id, 0)
            .map_err(|e| Error::Kernel(format!("reading STATS: {e}")))?;
        let mut sum = ProbeStats::default();
        for s in per_cpu.iter() {
            sum.hits += s.hits;
            sum.ringbuf_drops += s.ringbuf_drops;
            sum.read_errors += s.read_errors;
            sum.truncated += s.truncated;
            sum.rate_limited += s.rate_limited;
            sum.filtered += s.filtered;
            sum.suspended += s.suspended;
            sum.unconfigured += s.unconfigured;
        }
        Ok(sum)
    }
}

/// Parses the object and creates its maps, with the walk's switch written
/// into `.rodata` (so the verifier checks only the branch that runs).
fn load_object(walk: WalkLoop, rings: u32) -> Result<Ebpf, Error> {
    if EBPF_OBJECT.is_empty() {
        return Err(Error::NoEbpfObject);
    }
    let with_loop = u8::from(walk == WalkLoop::BpfLoop);
    EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::default())
        .map_max_entries("RINGS", rings)
        .override_global("WALK_WITH_BPF_LOOP", &with_loop, true)
        .load(EBPF_OBJECT)
        .map_err(|e| classify(&e, "create BPF maps"))
}

/// Loads one uprobe program of the object into the kernel; returns the
/// instructions the verifier processed for it, where the kernel says
/// (5.16+): the headroom below its limit of a million.
fn load_program(ebpf: &mut Ebpf, program: &str) -> Result<Option<u32>, Error> {
    let prog: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or_else(|| Error::Kernel(format!("program {program} missing from the eBPF object")))?
        .try_into()
        .map_err(|e| Error::Kernel(format!("{program}: {e}")))?;
    prog.load().map_err(|e| program_error(program, e))?;
    Ok(prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count()))
}

/// Finds a permission error anywhere in the chain.
fn classify(e: &(dyn std::error::Error + 'static), what: &str) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return Error::Privilege {
                    what: what.to_owned(),
                    source: std::io::Error::from_raw_os_error(io.raw_os_error().unwrap()),
                };
            }
        }
        cur = c.source();
    }
    Error::Kernel(format!("cannot {what}: {}", chain(e)))
}

fn program_error(program: &str, e: aya::programs::ProgramError) -> Error {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if matches!(io_error.raw_os_error(), Some(libc::EPERM)) && log.trim().is_empty() {
                return Error::Privilege {
                    what: format!("load BPF program {program}"),
                    source: io_error,
                };
            }
            Error::Verifier {
                program: program.to_owned(),
                reason: explain_verifier(&log, &io_error),
                log: tail(&log, 12),
            }
        }
        other => classify(&other, &format!("load BPF program {program}")),
    }
}

/// The verifier's own reason: the last log line that is not a register dump
/// or a summary, with a plain-words hint for the common ones.
pub fn explain_verifier(log: &str, io: &std::io::Error) -> String {
    let reason = log
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with(|c: char| c.is_ascii_digit())
                && !l.starts_with(';')
        })
        .unwrap_or("(the kernel gave no log)")
        .to_owned();
    let hint = if reason.contains("invalid mem access") {
        " — the program dereferenced a value the verifier cannot prove is a valid pointer"
    } else if reason.contains("unbounded")
        || reason.contains("out of bounds")
        || reason.contains("outside of")
    {
        " — a memory access whose bounds the verifier could not prove"
    } else if reason.contains("too large") || reason.contains("complexity") {
        " — the program is too complex for this kernel's verifier"
    } else {
        ""
    };
    format!("{reason}{hint} ({io})")
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

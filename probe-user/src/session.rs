//! `probe attach`: one tracing session from specs to printed events.
//!
//! target → program (DWARF) → resolved probes + capture plans → kernel
//! (params, uprobes) → ring buffer → decoder → output, until a stop condition
//! (max hits, duration, Ctrl-C/SIGTERM, target exit), then a summary. The
//! target is never stopped: uprobes run the BPF program inline and return.
//!
//! [`Resolved`] (specs → probes, conditions → kernel filters, loaded into a
//! [`Kernel`]) and [`Renderer`] (ring record → shown hit) are the pipeline
//! the daemon's breakpoints run too.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use probe_common::{
    ProbeParams, EVK_RETURN, MAX_ROOTS, PARAM_ENABLED, PARAM_FRAME_SET, PARAM_G_IN_R14,
    PARAM_RECORD_ENTRY, PARAM_RETURN, STACK_BYTES,
};
use std::collections::HashSet;

use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    capture::Limits,
    cond::Condition,
    decode::{self, RawEvent},
    error::Error,
    kernel::{Kernel, ENTRY_PROGRAM},
    output::{Format, Hit},
    resolve::{ProbeKind, Program, ResolvedProbe},
    target::{Target, TargetSpec},
};

/// Everything `probe attach` was asked to do.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub target: TargetSpec,
    pub funcs: Vec<String>,
    /// `--line FILE:LINE` specs.
    pub lines: Vec<String>,
    /// `--addr 0xADDR|SYMBOL+0xOFF` specs.
    pub addrs: Vec<String>,
    /// Capture local variables too (`--capture args,locals`).
    pub locals: bool,
    pub format: Format,
    pub max_hits: Option<u64>,
    pub duration: Option<Duration>,
    pub limits: Limits,
    /// `--returns`: also probe every return instruction.
    pub returns: bool,
    /// `--stack N`: return addresses to record per hit.
    pub stack: u32,
    /// `--stack-window BYTES`: raw bytes of the goroutine stack from SP to
    /// capture and show per hit (0: only what a variable needs, unshown).
    pub stack_window: u32,
    /// `--rate N/s` per probe.
    pub rate: Option<u32>,
    /// `--cond EXPR` for every entry and line probe.
    pub cond: Option<String>,
    /// `--dry-run`: resolve and explain, attach nothing.
    pub dry_run: bool,
    /// `--cpu-budget`: percent of one CPU the probes may use (BPF run time,
    /// over the last second) before they are suspended.
    pub cpu_budget: f64,
    /// OTLP export, when asked for (flags or `OTEL_EXPORTER_OTLP_*`).
    pub otlp: Option<crate::otlp::Config>,
    /// `--service-name` (else `OTEL_SERVICE_NAME`, else the binary's name).
    pub service_name: Option<String>,
    /// `--nice`: Probe's own scheduling priority while it traces.
    pub nice: Priority,
    /// `--follow`: when the traced process exits, wait for the next process
    /// running the same binary and attach to it; with `--binary`, re-attach
    /// when the file is replaced.
    pub follow: bool,
    /// `--debug-file`: the separate debug-info file to read DWARF from.
    pub debug_file: Option<std::path::PathBuf>,
}

/// Why the session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxHits,
    Duration,
    Signal,
    TargetExited,
    /// `--binary --follow`: another file took the binary's path.
    TargetReplaced,
    DryRun,
}

/// Per-probe outcome, printed to stderr at the end.
#[derive(Clone, Debug, Default)]
pub struct ProbeSummary {
    pub spec: String,
    pub hits: u64,
    pub shown: u64,
    pub dropped: u64,
    pub read_errors: u64,
    pub truncated: u64,
    pub rate_limited: u64,
    pub unpaired: u64,
    /// Hits the condition rejected, in the kernel and in userspace.
    pub cond_kernel: u64,
    pub cond_user: u64,
    /// Hits whose condition could not be evaluated (a value it reads was
    /// not captured); not shown.
    pub cond_unknown: u64,
    /// Hits while probes were suspended by the CPU budget.
    pub suspended: u64,
}

/// The end-of-run report.
#[derive(Clone, Debug)]
pub struct Summary {
    pub reason: StopReason,
    /// How a launched target ended, when it ended by itself.
    pub target_exit: Option<String>,
    /// A launched target's exit code (as a shell reports it), when it ended
    /// by itself.
    pub target_code: Option<u8>,
    /// What OTLP export did, when enabled.
    pub export: Option<String>,
    /// In-kernel BPF run time per hit, when the kernel measured it.
    pub bpf_ns_per_hit: Option<f64>,
    pub probes: Vec<ProbeSummary>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.reason {
            StopReason::MaxHits => "reached --max-hits",
            StopReason::Duration => "reached --duration",
            StopReason::Signal => "interrupted",
            StopReason::TargetExited => match &self.target_exit {
                Some(how) => return self.write_body(f, &format!("the target exited, {how}")),
                None => "the target exited",
            },
            StopReason::TargetReplaced => "the binary was replaced on disk",
            StopReason::DryRun => return writeln!(f, "probe: dry run: nothing was attached"),
        };
        self.write_body(f, why)
    }
}

/// `probe attach`'s exit code when the target exited while attached and its
/// own exit code is unknown (a `--pid` target is not our child).
pub const EXIT_TARGET_GONE: u8 = 3;

impl Summary {
    /// What `probe attach` exits with: 0 when it was stopped (Ctrl-C,
    /// --duration, --max-hits); when the target ended first, a launched
    /// command's own exit code (as `strace` and `time` do), else
    /// [`EXIT_TARGET_GONE`].
    pub fn exit_code(&self) -> u8 {
        match self.reason {
            StopReason::TargetExited => self.target_code.unwrap_or(EXIT_TARGET_GONE),
            _ => 0,
        }
    }

    fn write_body(&self, f: &mut std::fmt::Formatter<'_>, why: &str) -> std::fmt::Result {
        writeln!(
            f,
            "probe: detached after {:.1}s ({why})",
            self.elapsed.as_secs_f64()
        )?;
        for p in &self.probes {
            write!(
                f,
                "  {}: {} hits, {} shown, {} dropped (ring buffer full), {} cut by capture limits, {} memory reads failed",
                p.spec, p.hits, p.shown, p.dropped, p.truncated, p.read_errors
            )?;
            if p.rate_limited > 0 {
                write!(f, ", {} dropped by --rate", p.rate_limited)?;
            }
            if p.unpaired > 0 {
                write!(f, ", {} returns without a captured entry", p.unpaired)?;
            }
            if p.cond_kernel + p.cond_user > 0 {
                write!(
                    f,
                    ", {} not matching --cond ({} in the kernel)",
                    p.cond_kernel + p.cond_user,
                    p.cond_kernel
                )?;
            }
            if p.suspended > 0 {
                write!(f, ", {} while suspended (--cpu-budget)", p.suspended)?;
            }
            if p.cond_unknown > 0 {
                write!(
                    f,
                    ", {} with --cond unknown (a value it reads was not captured)",
                    p.cond_unknown
                )?;
            }
            writeln!(f)?;
        }
        if let Some(e) = &self.export {
            writeln!(f, "  {e}")?;
        }
        if let Some(ns) = self.bpf_ns_per_hit {
            writeln!(f, "  BPF run time per hit: {ns:.0} ns")?;
        }
        Ok(())
    }
}

/// Kernel params for one probe from its plan, the runtime layout and the
/// condition terms its kernel side checks (`filters`); `pair` is the entry
/// probe's id for a return probe. What depends on the target (the pid
/// filter) is the caller's.
pub fn probe_params(
    p: &ResolvedProbe,
    program: &Program,
    opts: &AttachOptions,
    pair: Option<u32>,
    filters: &[(probe_common::Filter, String)],
) -> ProbeParams {
    let l = p.plan.limits;
    // Go ≥1.17 on amd64 keeps the current g in R14 (ABIInternal).
    let mut flags = PARAM_ENABLED;
    if program.runtime.is_some() {
        flags |= PARAM_G_IN_R14;
    }
    // Where the return address is: the CFA - 8 (CFA = rsp + 8 at an entry
    // or a RET; further up in a body, whose RBP then points into its frame).
    let cfa = if (p.kind == ProbeKind::Entry && p.inlined.is_none()) || p.kind == ProbeKind::Return
    {
        8
    } else {
        program.debug.cfa_offset(p.pc).unwrap_or(8)
    };
    if cfa > 8 {
        flags |= PARAM_FRAME_SET;
    }
    if p.kind == ProbeKind::Entry && opts.returns {
        flags |= PARAM_RECORD_ENTRY;
    }
    if pair.is_some() {
        flags |= PARAM_RETURN;
    }
    let mut params = ProbeParams {
        stack_frames: opts.stack.min(probe_common::MAX_FRAMES),
        pair_id: pair.unwrap_or(0),
        ret_sp_off: (cfa - 8).max(0) as u32,
        static_pc: p.pc,
        // Returns are only shown for captured entries: the entry's rate rules.
        rate_per_sec: if pair.is_some() {
            0
        } else {
            opts.rate.unwrap_or(0)
        },
        goid_offset: program.runtime.map_or(0, |r| r.goid_offset as u32),
        stack_hi_offset: program.runtime.map_or(0, |r| r.stack_hi_offset as u32),
        stack_bytes: if p.plan.needs_stack_window {
            STACK_BYTES
        } else {
            opts.stack_window.min(STACK_BYTES)
        },
        flags,
        max_bytes: l.max_bytes,
        // Withheld strings: no plan leads to them (see `Tables`); a zero
        // cap besides, should any string read remain.
        max_string: if l.strings { l.max_string } else { 0 },
        max_elems: l.max_elems,
        max_depth: l.max_depth,
        n_roots: p.plan.roots.len().min(MAX_ROOTS) as u32,
        rodata_start: program.binary.rodata.map_or(0, |r| r.addr),
        rodata_len: program.binary.rodata.map_or(0, |r| r.len as u64),
        ..Default::default()
    };
    for (i, r) in p.plan.roots.iter().take(MAX_ROOTS).enumerate() {
        params.roots[i] = *r;
    }
    params.n_filters = filters.len() as u32;
    for (slot, (f, _)) in params.filters.iter_mut().zip(filters) {
        *slot = *f;
    }
    params
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn `bpf_ktime_get_ns` into wall time.
fn monotonic_to_wall() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

/// Runs `probe attach` to the end.
pub async fn run(opts: AttachOptions) -> anyhow::Result<Summary> {
    let started = tokio::time::Instant::now();
    let mut opts = opts;
    let total = opts.duration;
    let mut seen: Vec<u32> = vec![];
    loop {
        let mut target = Target::resolve(&opts.target, opts.format == Format::Json)?;
        // After a launched target has forked (it keeps the normal priority)
        // and before any helper thread starts (threads inherit it).
        lower_priority(opts.nice);
        let result = trace(&opts, &mut target).await;
        if let Some(l) = target.child.as_mut() {
            // We launched it, so we end it (as a debugger ends its debuggee);
            // one still held before exec is killed, never released untraced.
            l.stop();
        }
        let summary = result?;
        let replaced = summary.reason == StopReason::TargetReplaced;
        if !opts.follow || !(replaced || summary.reason == StopReason::TargetExited) {
            return Ok(summary);
        }
        // --follow: this segment's summary, then the next process (or file).
        eprint!("{summary}");
        seen.extend(target.pid);
        seen.extend(&target.pids);
        let path = match (&target.file, &opts.target) {
            (Some((p, _)), _) => p.clone(),
            _ => {
                let shown = target.display.to_string_lossy();
                std::path::PathBuf::from(shown.strip_suffix(" (deleted)").unwrap_or(&shown))
            }
        };
        opts.duration = total.map(|d| d.saturating_sub(started.elapsed()));
        if let Some(m) = opts.max_hits.as_mut() {
            *m = m.saturating_sub(summary.probes.iter().map(|p| p.shown).sum());
        }
        if replaced {
            eprintln!(
                "probe: --follow: {} was replaced; attaching to the new file",
                path.display()
            );
            continue;
        }
        eprintln!(
            "probe: --follow: waiting for a new process running {}",
            path.display()
        );
        match wait_for_process(&path, &seen, opts.duration).await? {
            Some(pid) => opts.target = TargetSpec::Pid(pid),
            None => {
                let reason = if total.is_some_and(|d| started.elapsed() >= d) {
                    StopReason::Duration
                } else {
                    StopReason::Signal
                };
                return Ok(Summary {
                    reason,
                    target_exit: None,
                    target_code: None,
                    ..summary
                });
            }
        }
    }
}

/// Waits for a process running `exe` that is not in `skip`; `None` when
/// interrupted (Ctrl-C, SIGTERM) or `within` runs out first.
async fn wait_for_process(
    exe: &std::path::Path,
    skip: &[u32],
    within: Option<Duration>,
) -> anyhow::Result<Option<u32>> {
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let deadline = within.map(|d| tokio::time::Instant::now() + d);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = sigint.recv() => return Ok(None),
            _ = sigterm.recv() => return Ok(None),
            _ = poll.tick() => {
                if let Some(pid) = crate::target::processes_running(exe, skip).first() {
                    return Ok(Some(*pid));
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
    }
}

/// Lets the traced service win any contention for CPU with Probe itself.
/// Probe's own CPU priority while it traces (`--nice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A nice value; 0 leaves the priority alone.
    Nice(i32),
    /// `SCHED_IDLE`: run only when a CPU would otherwise be idle.
    Idle,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("idle") {
            return Ok(Priority::Idle);
        }
        match s.parse::<i32>() {
            Ok(n) if (-20..=19).contains(&n) => Ok(Priority::Nice(n)),
            _ => Err(format!(
                "{s:?} is neither a nice value (-20..19) nor `idle`"
            )),
        }
    }
}

fn lower_priority(p: Priority) {
    // SAFETY: plain syscalls on the calling thread (Linux applies both to
    // the calling thread; threads created later inherit them).
    let rc = match p {
        Priority::Nice(0) => return,
        Priority::Nice(n) => unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) },
        Priority::Idle => {
            let param = libc::sched_param { sched_priority: 0 };
            unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) }
        }
    };
    if rc != 0 {
        eprintln!(
            "probe: note: could not set priority {p:?}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Probes resolved against one target, with their conditions: everything
/// between a spec and the kernel. `probe attach` and each breakpoint of
/// `probe daemon` build one, load it into a [`Kernel`] and render its events
/// with a [`Renderer`].
pub struct Resolved {
    pub program: Program,
    pub probes: Vec<ResolvedProbe>,
    /// `pairs[i]`: the entry probe of return probe `i`.
    pub pairs: Vec<Option<u32>>,
    pub conds: Vec<Option<Condition>>,
    /// Condition terms the kernel checks, per probe.
    pub filters: Vec<Vec<(probe_common::Filter, String)>>,
    /// Condition terms only userspace can check, per probe.
    pub user_terms: Vec<Vec<String>>,
}

impl Resolved {
    /// Opens the target's program and resolves every spec of `opts`; the
    /// condition is type-checked against each probe before anything is attached.
    pub fn new(opts: &AttachOptions, target: &Target) -> anyhow::Result<Self> {
        // Address probes work on any ELF (raw registers without Go DWARF).
        let only_addrs = opts.funcs.is_empty() && opts.lines.is_empty() && !opts.addrs.is_empty();
        let opened = match Program::open_with(&target.exe, opts.debug_file.as_deref()) {
            Err(Error::NoDwarf { .. } | Error::NotGo { .. }) if only_addrs => {
                Program::open_raw(&target.exe)
            }
            other => other,
        };
        let mut program = opened.map_err(|e| match e {
            Error::NotElf { reason, .. } => Error::NotElf {
                path: target.display.clone(),
                reason,
            },
            Error::NotGo { .. } => Error::NotGo {
                path: target.display.clone(),
            },
            Error::NoDwarf { go_version, .. } => Error::NoDwarf {
                path: target.display.clone(),
                go_version,
            },
            other => other,
        })?;
        if let Some(m) = program.missing() {
            // A Go binary without DWARF: functions, lines and argument words
            // from .gopclntab; say once what that leaves out.
            if opts.cond.is_some() {
                anyhow::bail!(
                    "--cond needs DWARF to know parameter names and types, and {} has none ({}); rebuild without -w/-s in -ldflags or pass its separate debug-info file with --debug-file",
                    target.display.display(),
                    program.binary.go_version.as_deref().unwrap_or("unknown Go")
                );
            }
            if !opts.funcs.is_empty() || !opts.lines.is_empty() {
                eprintln!("probe: note: {} has no {m}", target.display.display());
            }
        }
        // Before any type is planned: the tables decide what the kernel walks.
        program.tables.withhold_strings = !opts.limits.strings;
        if let Some(f) = &program.debug_file {
            eprintln!(
                "probe: note: DWARF read from the separate debug-info file {}",
                f.display()
            );
        }
        let mut probes = vec![];
        for f in &opts.funcs {
            probes.extend(program.resolve(f, opts.limits).map_err(|e| match e {
                Error::UnknownFunction { name, near, .. } => Error::UnknownFunction {
                    name,
                    path: target.display.clone(),
                    near,
                },
                other => other,
            })?);
        }
        for l in &opts.lines {
            probes.extend(program.resolve_line(l, opts.limits, opts.locals)?);
        }
        for a in &opts.addrs {
            probes.push(program.resolve_addr(a, opts.limits, opts.locals)?);
        }
        // Return probes follow the entry probes; `pairs[i]` is the entry of probe i.
        let mut pairs: Vec<Option<u32>> = vec![None; probes.len()];
        if opts.returns {
            for i in 0..probes.len() {
                if probes[i].kind == ProbeKind::Entry {
                    let r = program.resolve_returns(&probes[i])?;
                    probes.push(r);
                    pairs.push(Some(i as u32));
                }
            }
        }
        // Conditions: checked against each probe's variables before anything is
        // attached; the terms the kernel can test go into its filters.
        let mut conds: Vec<Option<Condition>> = vec![None; probes.len()];
        let mut filters: Vec<Vec<(probe_common::Filter, String)>> = vec![vec![]; probes.len()];
        let mut user_terms: Vec<Vec<String>> = vec![vec![]; probes.len()];
        if let Some(src) = &opts.cond {
            for (i, p) in probes.iter().enumerate() {
                if p.kind == ProbeKind::Return {
                    continue;
                }
                let c = Condition::new(src, &program.debug, &p.plan.params).map_err(|e| {
                    anyhow::anyhow!(
                        "--cond for {} ({}): {e}\n    {src}\n    {:>width$}",
                        p.spec,
                        p.function.name,
                        "^",
                        width = e.col
                    )
                })?;
                if !opts.limits.strings {
                    if let Some(part) = c.reads_strings(&program.debug, &p.plan.params) {
                        anyhow::bail!(
                            "--cond for {}: {part} looks into a string, and the policy withholds strings from this client (len() of a string is allowed)",
                            p.spec
                        );
                    }
                }
                let (f, rest) = c.pushdown(&program.debug, &p.plan.params);
                filters[i] = f;
                user_terms[i] = rest;
                conds[i] = Some(c);
            }
        }
        Ok(Self {
            program,
            probes,
            pairs,
            conds,
            filters,
            user_terms,
        })
    }

    /// Loads the eBPF object, writes the type tables and every probe's
    /// parameters, and attaches every probe site. Dropping the returned
    /// [`Kernel`] detaches everything.
    pub fn load(&mut self, opts: &AttachOptions, target: &Target) -> Result<Kernel, Error> {
        self.program.load_runtime_types();
        let program = &self.program;
        let mut kernel = Kernel::load(ENTRY_PROGRAM)?;
        kernel.write_tables(&program.tables.types, &program.tables.rtypes)?;
        if !target.pids.is_empty() {
            kernel.set_pids(&target.pids)?;
        }
        for (id, p) in self.probes.iter().enumerate() {
            let mut params = probe_params(p, program, opts, self.pairs[id], &self.filters[id]);
            if !target.pids.is_empty() {
                params.flags |= probe_common::PARAM_PID_FILTER;
            }
            kernel.configure(id as u32, &params)?;
        }
        for (id, p) in self.probes.iter().enumerate() {
            let mut sites = vec![p.file_offset];
            sites.extend(p.more_sites.iter().map(|s| s.1));
            for off in sites {
                kernel.attach(id as u32, &target.exe, off, target.pid)?;
            }
        }
        Ok(kernel)
    }
}

async fn trace(opts: &AttachOptions, target: &mut Target) -> anyhow::Result<Summary> {
    let mut resolved = Resolved::new(opts, target)?;
    if opts.locals && !opts.funcs.is_empty() {
        eprintln!("probe: note: locals are not live yet at a function's entry; use --line FILE:LINE to see them");
    }
    if opts.dry_run {
        let r = &resolved;
        print!(
            "{}",
            dry_run(
                &r.probes,
                &r.pairs,
                &r.program,
                &r.conds,
                &r.filters,
                &r.user_terms,
                opts,
            )
        );
        return Ok(Summary {
            reason: StopReason::DryRun,
            target_exit: None,
            target_code: None,
            export: None,
            bpf_ns_per_hit: None,
            probes: vec![],
            elapsed: Duration::ZERO,
        });
    }
    let mut kernel = match resolved.load(opts, target) {
        Err(_) if target.exited() => {
            anyhow::bail!(
                "the target exited while probes were being attached; nothing is left attached"
            )
        }
        other => other?,
    };
    let (program, probes) = (&resolved.program, &resolved.probes);
    target.release();
    let who = match (target.pid, &opts.target) {
        (Some(pid), TargetSpec::Command(_)) => format!("launched pid {pid}"),
        (Some(pid), _) => format!("pid {pid}"),
        (None, _) if !target.pids.is_empty() => format!(
            "{} processes, filtered by pid in the kernel",
            target.pids.len()
        ),
        (None, _) => "every process running it".to_owned(),
    };
    eprintln!(
        "probe: attached {} probe{} to {} ({}, {}); Ctrl-C to stop",
        probes.len(),
        if probes.len() == 1 { "" } else { "s" },
        target.display.display(),
        program.binary.go_version.as_deref().unwrap_or("unknown Go"),
        who
    );

    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let exporter = opts.otlp.clone().map(|cfg| {
        let cfg = cfg.with_resource(
            opts.service_name.clone(),
            &service_default(&target.display),
            resource(target, program),
        );
        crate::otlp::Exporter::start(cfg)
    });
    let ring = kernel.take_events()?;
    // SAFETY: the ring buffer owns its fd and outlives the registration
    // (both are dropped together at the end of this function).
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the ring buffer: {e}"))?;
    let started = Instant::now();
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    // The kernel side submits without waking us (see probe-ebpf): drain on a
    // short timer, which bounds the delay before a hit is shown.
    let mut drain = tokio::time::interval(Duration::from_millis(10));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = vec![0u64; probes.len()];
    let mut suspended = false;
    let mut rd =
        Renderer::new(&resolved, opts.format, exporter.as_ref()).stack_window(opts.stack_window);
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(5));
    let mut total = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut broken_pipe = false;

    let reason = loop {
        tokio::select! {
            woke = async {
                tokio::select! {
                    g = ring.readable_mut() => g.map(|mut g| { g.clear_ready(); }),
                    _ = drain.tick() => Ok(()),
                }
            } => {
                woke?;
                let rb = ring.get_mut();
                while let Some(item) = rb.next_event() {
                    if opts.max_hits.is_some_and(|m| total >= m) {
                        continue; // drain, but show no more than asked
                    }
                    if let Some((id, line)) = rd.render(&item) {
                        shown[id] += 1;
                        total += 1;
                        if out.write_all(line.as_bytes()).is_err() {
                            broken_pipe = true;
                        }
                    }
                }
                rd.flush_export();
                if out.flush().is_err() {
                    broken_pipe = true;
                }
                if broken_pipe {
                    break StopReason::Signal;
                }
                if opts.max_hits.is_some_and(|m| total >= m) {
                    break StopReason::MaxHits;
                }
            }
            _ = sigint.recv() => break StopReason::Signal,
            _ = sigterm.recv() => break StopReason::Signal,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                break StopReason::Duration;
            }
            _ = metrics_tick.tick(), if rd.exporter.is_some() => {
                let mut sums = vec![];
                for (id, p) in probes.iter().enumerate() {
                    let st = kernel.stats(id as u32)?;
                    sums.push(ProbeSummary {
                        spec: p.spec.clone(),
                        hits: st.hits,
                        shown: shown[id],
                        dropped: st.ringbuf_drops,
                        rate_limited: st.rate_limited,
                        cond_kernel: st.filtered,
                        cond_user: rd.cond_user[id],
                        suspended: st.suspended,
                        ..Default::default()
                    });
                }
                if let Some(x) = rd.exporter {
                    x.offer(crate::otlp::Item::Metrics(health_metrics(&sums, &rd.bytes, start_ns, Some(&x.stats))));
                }
            }
            _ = tick.tick() => {
                if target.exited() {
                    break StopReason::TargetExited;
                }
                if opts.follow && target.replaced() {
                    break StopReason::TargetReplaced;
                }
                if !suspended {
                    if let Some((pct, window)) = kernel.sample_cpu() {
                        if pct > opts.cpu_budget {
                            kernel.set_suspended(true)?;
                            suspended = true;
                            eprintln!(
                                "probe: probes suspended: they used {pct:.2}% of a CPU over {:.1}s, over the --cpu-budget of {}%; further hits are counted, not captured",
                                window.as_secs_f64(),
                                opts.cpu_budget
                            );
                        }
                    }
                }
            }
        }
    };
    // Events already in the ring when we stopped are still shown, unless
    // --max-hits says we are done.
    if reason != StopReason::MaxHits {
        let rb = ring.get_mut();
        while let Some(item) = rb.next_event() {
            if let Some((id, line)) = rd.render(&item) {
                if opts.max_hits.is_some_and(|m| total >= m) {
                    break;
                }
                shown[id] += 1;
                total += 1;
                let _ = out.write_all(line.as_bytes());
            }
        }
        rd.flush_export();
    }
    let _ = out.flush();
    if let Some(note) = ring.get_ref().corrupt_note() {
        eprintln!("probe: {note}");
    }

    let mut summaries = vec![];
    for (id, p) in probes.iter().enumerate() {
        let st = kernel.stats(id as u32)?;
        summaries.push(ProbeSummary {
            spec: {
                let mut s = if p.spec == p.function.name {
                    p.spec.clone()
                } else {
                    format!("{} ({})", p.spec, p.function.name)
                };
                if let Some(c) = &p.inlined {
                    s = format!("{s} (inlined in {} at line {})", c.caller, c.call_line);
                }
                if p.kind == ProbeKind::Return {
                    format!("{s} returns")
                } else {
                    s
                }
            },
            hits: st.hits,
            shown: shown[id],
            dropped: st.ringbuf_drops,
            read_errors: st.read_errors,
            truncated: st.truncated,
            rate_limited: st.rate_limited,
            unpaired: st.unpaired,
            cond_kernel: st.filtered,
            cond_user: rd.cond_user[id],
            cond_unknown: rd.cond_unknown[id],
            suspended: st.suspended,
        });
    }
    let total_hits: u64 = summaries.iter().map(|s| s.hits).sum();
    let bpf_ns_per_hit = kernel.ns_per_run().filter(|_| total_hits > 0);
    drop(kernel); // detaches every uprobe
    let target_exit = target.child.as_ref().and_then(|l| l.exit_description());
    let target_code = target.child.as_ref().and_then(|l| l.exit_code());
    let bytes = std::mem::take(&mut rd.bytes);
    drop(rd);
    let export = match exporter {
        Some(x) => {
            x.offer(crate::otlp::Item::Metrics(health_metrics(
                &summaries,
                &bytes,
                start_ns,
                Some(&x.stats),
            )));
            let (stats, endpoint) = (x.stats.clone(), x.endpoint.clone());
            x.shutdown(Duration::from_secs(5)).await;
            use std::sync::atomic::Ordering::Relaxed;
            Some(format!(
                "OTLP export to {endpoint}: {} hits and {} spans sent, {} dropped (queue full), {} dropped (collector unreachable), {} failed requests",
                stats.logs_sent.load(Relaxed),
                stats.spans_sent.load(Relaxed),
                stats.dropped_queue_full.load(Relaxed),
                stats.dropped_failed.load(Relaxed),
                stats.failed_requests.load(Relaxed)
            ))
        }
        None => None,
    };
    Ok(Summary {
        reason,
        target_exit,
        target_code,
        export,
        bpf_ns_per_hit,
        probes: summaries,
        elapsed: started.elapsed(),
    })
}

/// Function, file and line of each return address (the call instruction
/// just before it, for all but the probed PC itself), with the functions
/// inlined at that address expanded into frames of their own.
fn symbolize(program: &Program, pcs: &[u64], bias: u64) -> Vec<crate::output::Frame> {
    let mut out = vec![];
    for (i, &runtime_pc) in pcs.iter().enumerate() {
        // Addresses as linked: a PIE runs `bias` further up.
        let pc = runtime_pc.wrapping_sub(bias);
        let at = if i == 0 { pc } else { pc.saturating_sub(1) };
        if let Some((function, file, line)) = program.table_position(at) {
            out.push(crate::output::Frame {
                pc,
                function,
                file,
                line,
            });
            continue;
        }
        let (mut file, mut line) = program
            .debug
            .line_at(at)
            .map(|(f, l)| (f.to_owned(), l))
            .unwrap_or_default();
        for c in program.debug.inline_chain(at) {
            out.push(crate::output::Frame {
                pc,
                function: c.name.clone(),
                file: file.clone(),
                line,
            });
            (file, line) = (c.call_file.clone(), c.call_line);
        }
        let function = program
            .debug
            .function_at(at)
            .map(|f| f.name.clone())
            .unwrap_or_else(|| "?".into());
        out.push(crate::output::Frame {
            pc,
            function,
            file,
            line,
        });
    }
    out
}

/// Turns ring-buffer records into output lines, applying conditions.
pub struct Renderer<'a> {
    probes: &'a [ResolvedProbe],
    program: &'a Program,
    conds: &'a [Option<Condition>],
    pairs: &'a [Option<u32>],
    wall: i128,
    format: Format,
    /// (entry probe, goid, frame) of shown entries whose returns are due.
    matched: HashSet<(u32, u64, u64)>,
    cond_user: Vec<u64>,
    cond_unknown: Vec<u64>,
    exporter: Option<&'a crate::otlp::Exporter>,
    /// Per probe: the names of results of type `error`.
    error_results: Vec<Vec<String>>,
    /// Event bytes received per probe.
    bytes: Vec<u64>,
    /// Per probe: its JSON entries that are the same in every hit.
    json_heads: Vec<Vec<u8>>,
    /// Per probe: its exported attributes that are the same in every hit.
    export_heads: Vec<Vec<opentelemetry_proto::tonic::common::v1::KeyValue>>,
    span_seq: u64,
    /// `PROBE_DEBUG_EVENTS` is set: describe every raw event on stderr.
    debug: bool,
    /// `--stack-window`: bytes of raw stack shown per hit (0: none).
    stack_window: u32,
    /// Attributes added to every exported record (the daemon's breakpoint,
    /// session and owner).
    export_attrs: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    /// Applied to a hit's values before they are exported (the daemon's
    /// redaction); the record's body is then built from them too.
    export_filter: Option<ExportFilter<'a>>,
    /// Records built and not yet offered: offered together by
    /// [`Renderer::flush_export`] (at the end of each drain), or when
    /// [`EXPORT_BATCH`] accumulate.
    export_buf: Vec<crate::otlp::Item>,
}

/// Records a renderer offers to the exporter at once, at most.
const EXPORT_BATCH: usize = 256;

/// A change made to a hit's JSON before it is exported.
pub type ExportFilter<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;

impl<'a> Renderer<'a> {
    /// A renderer for `r`'s probes (loaded, so runtime types are known).
    pub fn new(
        r: &'a Resolved,
        format: Format,
        exporter: Option<&'a crate::otlp::Exporter>,
    ) -> Self {
        let n = r.probes.len();
        let error_results = r
            .probes
            .iter()
            .map(|p| {
                p.plan
                    .params
                    .iter()
                    .filter(|v| decode::type_name(&r.program.debug, v.ty) == "error")
                    .map(|v| v.name.clone())
                    .collect()
            })
            .collect();
        Renderer {
            probes: &r.probes,
            program: &r.program,
            conds: &r.conds,
            pairs: &r.pairs,
            wall: monotonic_to_wall(),
            format,
            matched: HashSet::new(),
            cond_user: vec![0; n],
            cond_unknown: vec![0; n],
            exporter,
            error_results,
            bytes: vec![0; n],
            json_heads: r.probes.iter().map(crate::output::json_head).collect(),
            export_heads: r.probes.iter().map(export_head).collect(),
            span_seq: 0,
            debug: std::env::var_os("PROBE_DEBUG_EVENTS").is_some(),
            stack_window: 0,
            export_attrs: vec![],
            export_filter: None,
            export_buf: vec![],
        }
    }

    /// Shows the first `bytes` of each hit's copied stack window
    /// (`--stack-window`).
    pub fn stack_window(mut self, bytes: u32) -> Self {
        self.stack_window = bytes;
        self
    }

    /// Offers the records built since the last call to the exporter.
    pub fn flush_export(&mut self) {
        if let Some(x) = self.exporter {
            if !self.export_buf.is_empty() {
                x.offer_all(std::mem::take(&mut self.export_buf));
            }
        }
    }

    /// Exported records also carry `attrs`, and their values go through
    /// `filter` first.
    pub fn for_export(
        mut self,
        attrs: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
        filter: ExportFilter<'a>,
    ) -> Self {
        self.export_attrs = attrs;
        self.export_filter = Some(filter);
        self
    }
}

impl Renderer<'_> {
    /// Decodes one record; `None` when it is not shown.
    pub fn render(&mut self, bytes: &[u8]) -> Option<(usize, String)> {
        let mut ev = RawEvent::parse(bytes)?;
        // Linked vs runtime addresses differ by the load bias in a PIE.
        if let Some(p) = self.probes.get(ev.header.probe_id as usize) {
            ev.bias = ev.header.regs[16].wrapping_sub(p.pc);
        }
        ev.rodata = self.program.binary.rodata_bytes();
        if self.debug {
            eprintln!("{}", ev.describe());
        }
        let id = ev.header.probe_id as usize;
        let probe = self.probes.get(id)?;
        let (program, h) = (self.program, &ev.header);
        let args = decode::decode_args(&program.debug, &program.rtypes, &probe.plan, &ev);
        let locals = (probe.locals || self.conds[id].is_some())
            .then(|| decode::decode_vars(&program.debug, &program.rtypes, &probe.plan, &ev, true));
        if let Some(c) = &self.conds[id] {
            let mut vars = args.clone();
            vars.extend(locals.clone().unwrap_or_default());
            match c.eval(&vars) {
                Ok(true) => {}
                Ok(false) => {
                    self.cond_user[id] += 1;
                    return None;
                }
                Err(_) => {
                    self.cond_unknown[id] += 1;
                    return None;
                }
            }
        }
        if let Some(entry) = self.pairs[id] {
            // Only returns of shown entries are shown.
            if self.conds[entry as usize].is_some()
                && !self.matched.remove(&(entry, h.goid, h.frame))
            {
                return None;
            }
        } else if self.conds[id].is_some() {
            self.matched.insert((id as u32, h.goid, h.frame));
        }
        let mut hit = Hit {
            probe,
            pid: h.pid,
            tid: h.tid,
            goid: (h.flags & probe_common::EV_GOID != 0).then_some(h.goid),
            time_ns: self.wall + h.ktime_ns as i128,
            args,
            locals: if probe.locals { locals } else { None },
            regs: (probe.kind == ProbeKind::Addr && probe.plan.params.is_empty()).then_some(h.regs),
            returns: None,
            duration_ns: None,
            stack_window: (self.stack_window > 0).then(|| {
                // The window may be shorter: the kernel stops at the top of
                // the goroutine's stack (`g.stack.hi`), or the read failed.
                let sp = ev.sp();
                let b = ev.memory_at(sp).map_or(&[][..], |(b, _)| b);
                (sp, b[..b.len().min(self.stack_window as usize)].to_vec())
            }),
            stack: (!ev.stack.is_empty()).then(|| {
                symbolize(
                    program,
                    &ev.stack,
                    ev.header.regs[16].wrapping_sub(probe.pc),
                )
            }),
        };
        if h.kind == EVK_RETURN {
            hit.returns = Some(std::mem::take(&mut hit.args));
            hit.duration_ns =
                (h.entry_ktime != 0).then(|| h.ktime_ns.saturating_sub(h.entry_ktime));
        }
        self.bytes[id] += bytes.len() as u64;
        if self.exporter.is_some() {
            let mut json = hit.tail_json();
            if let Some(f) = &self.export_filter {
                f(&mut json);
            }
            self.export(id, &hit, &json);
            if self.export_buf.len() >= EXPORT_BATCH {
                self.flush_export();
            }
        }
        let line = match self.format {
            Format::Json => {
                let mut v = Vec::with_capacity(512);
                hit.write_json_line(&self.json_heads[id], &mut v);
                // serde_json writes UTF-8 only.
                String::from_utf8(v).unwrap_or_default()
            }
            Format::Pretty => hit.pretty(),
        };
        Some((id, line))
    }

    /// The hit of probe `idx` as an OTLP log record (and, for a paired
    /// return, a span), with semantic-convention attributes and the values
    /// as structured `AnyValue`s.
    fn export(&mut self, idx: usize, hit: &Hit, json: &serde_json::Value) {
        use crate::otlp::{any_from_json, int_value, kv, str_value};
        let p = hit.probe;
        let mut attrs = Vec::with_capacity(self.export_heads[idx].len() + 12);
        attrs.extend(self.export_heads[idx].iter().cloned());
        attrs.push(kv("thread.id", int_value(hit.tid as i64)));
        attrs.push(kv("process.pid", int_value(hit.pid as i64)));
        if let Some(g) = hit.goid {
            attrs.push(kv("go.goroutine.id", int_value(g as i64)));
        }
        attrs.extend(self.export_attrs.iter().cloned());
        for key in [
            "args",
            "locals",
            "returns",
            "duration_ns",
            "stack",
            "inlined",
            "regs",
        ] {
            if let Some(v) = json.get(key) {
                attrs.push(kv(key, any_from_json(v)));
            }
        }
        let event = if hit.returns.is_some() {
            "probe.return"
        } else {
            "probe.hit"
        };
        let body = if self.export_filter.is_some() {
            // The pretty line shows values as captured: build the body from
            // the filtered ones instead.
            let vals = json
                .get("returns")
                .or_else(|| json.get("args"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            format!("{} {vals}", p.function.name)
        } else {
            hit.headline()
        };
        let time = hit.time_ns.max(0) as u64;
        self.export_buf
            .push(crate::otlp::Item::Log(crate::otlp::log_record(
                event, time, body, attrs,
            )));
        if let (Some(returns), Some(d)) = (json.get("returns"), hit.duration_ns) {
            let error = self.error_results[idx]
                .iter()
                .filter_map(|n| returns.get(n).filter(|v| !v.is_null()))
                .map(|v| v.to_string())
                .next();
            self.span_seq += 1;
            let mut span_attrs = vec![
                kv("code.function.name", str_value(&p.function.name)),
                kv("thread.id", int_value(hit.tid as i64)),
                kv("go.goroutine.id", int_value(hit.goid.unwrap_or(0) as i64)),
                kv("probe.id", str_value(&p.spec)),
            ];
            span_attrs.extend(self.export_attrs.iter().cloned());
            let ids = crate::otlp::ids(time ^ self.span_seq.rotate_left(32));
            self.export_buf
                .push(crate::otlp::Item::Span(crate::otlp::span(
                    &p.function.name,
                    time.saturating_sub(d),
                    time,
                    error,
                    span_attrs,
                    ids,
                )));
        }
    }
}

/// A probe's exported attributes that are the same in every hit (built
/// once: formatting them per record was a visible part of the reader's CPU).
fn export_head(p: &ResolvedProbe) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    use crate::otlp::{int_value, kv, str_value};
    vec![
        kv("code.function.name", str_value(&p.function.name)),
        kv("code.file.path", str_value(&p.file)),
        kv("code.line.number", int_value(p.line as i64)),
        kv("probe.id", str_value(&p.spec)),
        kv("probe.kind", str_value(p.kind.as_str())),
        kv("probe.pc", str_value(&format!("{:#x}", p.pc))),
    ]
}

/// Probe's own health counters, per probe (export drops are for all probes).
fn health_metrics(
    sums: &[ProbeSummary],
    bytes: &[u64],
    start_ns: u64,
    export: Option<&crate::otlp::Stats>,
) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
    use crate::otlp::{counter, kv, str_value};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let per = |f: &dyn Fn(&ProbeSummary) -> u64| -> Vec<_> {
        sums.iter()
            .map(|s| (vec![kv("probe.id", str_value(&s.spec))], f(s)))
            .collect()
    };
    let mut dropped = vec![];
    for s in sums {
        for (reason, v) in [
            ("ring_buffer_full", s.dropped),
            ("rate_limit", s.rate_limited),
            ("suspended", s.suspended),
        ] {
            dropped.push((
                vec![
                    kv("probe.id", str_value(&s.spec)),
                    kv("reason", str_value(reason)),
                ],
                v,
            ));
        }
    }
    if let Some(x) = export {
        use std::sync::atomic::Ordering::Relaxed;
        dropped.push((
            vec![kv("reason", str_value("export_queue_full"))],
            x.dropped_queue_full.load(Relaxed),
        ));
        dropped.push((
            vec![kv("reason", str_value("export_failed"))],
            x.dropped_failed.load(Relaxed),
        ));
    }
    vec![
        counter(
            "probe.hits",
            "Times a probe fired",
            start_ns,
            now,
            per(&|s| s.hits),
        ),
        counter(
            "probe.captured",
            "Hits captured and shown",
            start_ns,
            now,
            per(&|s| s.shown),
        ),
        counter(
            "probe.filtered",
            "Hits rejected by --cond",
            start_ns,
            now,
            per(&|s| s.cond_kernel + s.cond_user),
        ),
        counter(
            "probe.dropped",
            "Hits not captured, by reason",
            start_ns,
            now,
            dropped,
        ),
        counter(
            "probe.captured_bytes",
            "Bytes of captured events",
            start_ns,
            now,
            sums.iter()
                .zip(bytes)
                .map(|(s, b)| (vec![kv("probe.id", str_value(&s.spec))], *b))
                .collect(),
        ),
    ]
}

/// The default `service.name`: the traced binary's file name.
fn service_default(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unknown_service".into())
}

/// Resource attributes describing Probe itself and its host (the daemon's
/// whole resource; `probe attach` adds the traced process).
pub fn probe_resource() -> Vec<(String, opentelemetry_proto::tonic::common::v1::AnyValue)> {
    use crate::otlp::str_value;
    let mut host = [0u8; 256];
    // SAFETY: buffer and length match.
    let host = if unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0 {
        String::from_utf8_lossy(&host[..host.iter().position(|&b| b == 0).unwrap_or(0)])
            .into_owned()
    } else {
        String::new()
    };
    vec![
        ("host.name".to_owned(), str_value(&host)),
        ("telemetry.sdk.name".to_owned(), str_value("probe")),
        ("telemetry.sdk.language".to_owned(), str_value("rust")),
        (
            "telemetry.sdk.version".to_owned(),
            str_value(env!("CARGO_PKG_VERSION")),
        ),
    ]
}

/// Resource attributes describing the traced process and Probe itself.
fn resource(
    target: &Target,
    program: &Program,
) -> Vec<(String, opentelemetry_proto::tonic::common::v1::AnyValue)> {
    use crate::otlp::{int_value, str_value};
    let mut r = vec![(
        "process.executable.path".to_owned(),
        str_value(&target.display.to_string_lossy()),
    )];
    r.extend(probe_resource());
    if let Some(pid) = target.pid {
        r.push(("process.pid".to_owned(), int_value(pid as i64)));
    }
    if let Some(v) = &program.binary.go_version {
        r.push(("go.version".to_owned(), str_value(v)));
    }
    if let Some(b) = &program.binary.build_id {
        r.push(("go.build_id".to_owned(), str_value(b)));
    }
    r
}

/// `--dry-run`: what would be attached where, and what runs where.
fn dry_run(
    probes: &[ResolvedProbe],
    pairs: &[Option<u32>],
    program: &Program,
    conds: &[Option<Condition>],
    filters: &[Vec<(probe_common::Filter, String)>],
    user_terms: &[Vec<String>],
    opts: &AttachOptions,
) -> String {
    let window = opts.stack_window;
    use std::fmt::Write;
    let mut s = String::new();
    // The kernel is asked once (it loads a few tiny programs), not per probe.
    let walk = crate::kernel::WalkLoop::describe();
    for (i, p) in probes.iter().enumerate() {
        let _ = writeln!(
            s,
            "probe {i}: {} [{}] {} at {}:{}",
            p.spec, p.kind, p.function.name, p.file, p.line
        );
        let mut pcs = vec![format!("{:#x}", p.pc)];
        pcs.extend(p.more_sites.iter().map(|(pc, _)| format!("{pc:#x}")));
        let _ = writeln!(
            s,
            "  uprobe at {} (file offset {:#x}{})",
            pcs.join(", "),
            p.file_offset,
            if p.more_sites.is_empty() { "" } else { ", …" }
        );
        if !p.placement.is_empty() {
            let _ = writeln!(s, "  placed {}", p.placement);
        }
        if let Some(e) = pairs[i] {
            let _ = writeln!(s, "  returns of probe {e}, paired by goroutine and frame");
        }
        for v in &p.plan.params {
            let ty = decode::type_name(&program.debug, v.ty);
            let places: Vec<String> = v
                .pieces
                .iter()
                .map(|pc| format!("{:?}", pc.place))
                .collect();
            let role = if p.kind == ProbeKind::Return {
                "result"
            } else if v.local {
                "local"
            } else {
                "arg"
            };
            let at = if places.is_empty() {
                // Optimized code: DWARF places the variable nowhere at this PC.
                "no location at this PC (hits show it as optimized out)".to_owned()
            } else {
                places.join(" + ")
            };
            let _ = writeln!(s, "  {role} {} {ty}: {at}", v.name);
        }
        let l = p.plan.limits;
        let _ = writeln!(
            s,
            "  capture: {} roots, depth {}, strings {} B, {} elements, {} B per hit",
            p.plan.roots.len(),
            l.max_depth,
            l.max_string,
            l.max_elems,
            l.max_bytes
        );
        let params = probe_params(p, program, opts, pairs[i], &filters[i]);
        let _ = writeln!(
            s,
            "  kernel path: {}",
            if crate::kernel::takes_lean_path(&params) {
                "lean (no pointers to follow but strings, no condition, rate limit, returns or --stack)"
            } else if params.lean() {
                "general (PROBE_NO_LEAN=1; the lean path would do)"
            } else {
                "general (the capture plan interpreted: pointers followed, types looked up)"
            }
        );
        if !crate::kernel::takes_lean_path(&params) {
            let _ = writeln!(s, "  walk loop: {walk}");
        }
        match (p.plan.needs_stack_window, window) {
            (true, 0) => {
                let _ = writeln!(
                    s,
                    "  stack window: {STACK_BYTES} B copied (a variable lives there)"
                );
            }
            (true, w) => {
                let _ = writeln!(
                    s,
                    "  stack window: {STACK_BYTES} B copied (a variable lives there), {w} B shown"
                );
            }
            (false, 0) => {}
            (false, w) => {
                let _ = writeln!(s, "  stack window: {w} B copied and shown");
            }
        }
        if let Some(c) = &conds[i] {
            let _ = writeln!(s, "  condition {}", c.src);
            let kt: Vec<&str> = filters[i].iter().map(|(_, t)| t.as_str()).collect();
            let _ = writeln!(
                s,
                "    in the kernel: {}",
                if kt.is_empty() {
                    "nothing".into()
                } else {
                    kt.join(" && ")
                }
            );
            let _ = writeln!(
                s,
                "    in userspace: the whole condition{}",
                if user_terms[i].is_empty() {
                    String::new()
                } else {
                    format!(" (kernel cannot check: {})", user_terms[i].join(", "))
                }
            );
        }
    }
    s
}

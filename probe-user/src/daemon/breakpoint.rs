//! One breakpoint of the daemon: a spec resolved against its target and
//! loaded into a [`Kernel`] of its own (its own BPF object, maps and ring
//! buffer), driven by a thread of its own.
//!
//! Why a thread and a kernel object per breakpoint: resolving reads DWARF
//! (blocking, sometimes seconds) and must not stall the daemon's other
//! breakpoints or its API; and a breakpoint that fails (unknown function,
//! process gone, verifier) fails alone, recorded as its status with an error
//! kind, while the others keep running. Removing a breakpoint sets its stop
//! flag; the thread drops its `Kernel`, which detaches every uprobe.
//!
//! The per-event pipeline (ring buffer → decode → condition → JSON `Hit`)
//! is `probe attach`'s own: [`Resolved`] and [`Renderer`]; so is the CPU
//! budget (the kernel's BPF run-time statistics sampled in windows, see
//! [`crate::kernel::Kernel::sample_cpu`]): a breakpoint whose program uses
//! more than its budget is suspended in the kernel (its hits counted, not
//! captured) and says so in its state, until it is removed.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, watch};

use super::{
    policy::Redactor,
    proto::{BreakpointInfo, BreakpointSpec, Event},
    store::Store,
};
use crate::otlp::{kv, str_value, Exporter};
use crate::{
    capture::Limits,
    output::Format,
    session::{AttachOptions, Renderer, Resolved},
    target::{Target, TargetSpec},
};

/// Events buffered per breakpoint for its subscribers; a subscriber that
/// falls further behind loses the oldest and is told how many.
const EVENT_BUFFER: usize = 1024;

/// The daemon's CPU budget per breakpoint when `--cpu-budget` is not given:
/// percent of one CPU its BPF program may use (as `probe attach`'s default).
pub const DEFAULT_CPU_BUDGET: f64 = 20.0;

/// What every breakpoint of a daemon shares.
#[derive(Clone)]
pub struct Shared {
    pub store: Arc<Store>,
    /// Applied to every hit before it is published, stored or exported.
    pub redact: Redactor,
    /// `--cpu-budget`: each breakpoint's default, and the most a client may ask for.
    pub cpu_budget: f64,
    /// `--otlp-endpoint`: every hit is also exported.
    pub exporter: Option<Arc<Exporter>>,
}

impl Shared {
    /// A spec's own budget if it asks for less than the daemon's, else the daemon's.
    pub fn budget_for(&self, spec: &BreakpointSpec) -> f64 {
        if spec.cpu_budget > 0.0 {
            spec.cpu_budget.min(self.cpu_budget)
        } else {
            self.cpu_budget
        }
    }
}

/// Where a breakpoint is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Being resolved and attached.
    Pending,
    /// `probes` probes attached to `target`.
    Attached { probes: u32, target: String },
    /// Attached, but over its CPU budget: the kernel counts its hits and
    /// captures nothing (`why` says how much it used).
    Suspended {
        probes: u32,
        target: String,
        why: String,
    },
    /// It could not be attached; nothing of it is in the kernel.
    Error { kind: &'static str, message: String },
    /// It was attached and is no more (its process exited, or it was removed).
    Detached { why: String },
}

/// A running breakpoint.
pub struct Breakpoint {
    pub id: String,
    pub spec: BreakpointSpec,
    /// The owning session, if any.
    pub session: Option<String>,
    /// Unix milliseconds; 0: no expiry.
    pub expires_at_ms: u64,
    pub created_ms: u64,
    /// The identity that added it.
    pub owner: String,
    pub state: watch::Receiver<State>,
    pub hits: Arc<AtomicU64>,
    /// Hits the kernel counted while it was suspended (CPU budget).
    pub suspended_hits: Arc<AtomicU64>,
    /// Every shown hit, for the sessions following this breakpoint.
    pub events: broadcast::Sender<Arc<Event>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl BreakpointSpec {
    /// The daemon's options for this spec: it must name a pid or a binary.
    pub fn to_options(&self) -> Result<AttachOptions, String> {
        let target = match (self.pid, self.binary.is_empty()) {
            (0, false) => TargetSpec::Binary(self.binary.clone().into()),
            (pid, true) if pid != 0 => TargetSpec::Pid(pid),
            (0, true) => {
                return Err("a breakpoint needs a target: --binary PATH or --pid PID".into())
            }
            _ => return Err("--binary and --pid exclude each other".into()),
        };
        if self.funcs.is_empty() && self.lines.is_empty() && self.addrs.is_empty() {
            return Err("a breakpoint needs something to probe: --func, --line or --addr".into());
        }
        Ok(self.options(target))
    }

    /// The `probe attach` options this spec stands for, on `target` (JSON
    /// output, no stop condition; `probe attach` sets its own).
    pub fn options(&self, target: TargetSpec) -> AttachOptions {
        let d = Limits::default();
        let or = |v: u32, def: u32| if v == 0 { def } else { v };
        AttachOptions {
            target,
            funcs: self.funcs.clone(),
            lines: self.lines.clone(),
            addrs: self.addrs.clone(),
            locals: self.locals,
            format: Format::Json,
            max_hits: None,
            duration: None,
            limits: Limits {
                max_depth: or(self.max_depth, d.max_depth),
                max_string: or(self.max_string, d.max_string),
                max_elems: or(self.max_elems, d.max_elems),
                max_bytes: or(self.max_bytes, d.max_bytes)
                    .clamp(64, probe_common::DATA_BYTES as u32),
                strings: !self.withhold_strings,
            },
            returns: self.returns,
            stack: self.stack,
            stack_window: 0,
            rate: (self.rate != 0).then_some(self.rate),
            cond: (!self.cond.is_empty()).then(|| self.cond.clone()),
            dry_run: false,
            cpu_budget: if self.cpu_budget > 0.0 {
                self.cpu_budget
            } else {
                DEFAULT_CPU_BUDGET
            },
            otlp: None,
            service_name: None,
            // The daemon's own priority is its operator's business.
            nice: crate::session::Priority::Nice(0),
            follow: false,
            debug_file: None,
        }
    }

    /// A short description: the probed functions, lines and addresses.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.funcs.clone();
        parts.extend(self.lines.iter().cloned());
        parts.extend(self.addrs.iter().cloned());
        let mut s = parts.join(",");
        if !self.cond.is_empty() {
            s.push_str(&format!(" if {}", self.cond));
        }
        s
    }

    /// What a policy or the client took away from the capture, for `bp ls`.
    pub fn restrictions(&self) -> Vec<&'static str> {
        let mut r = vec![];
        if self.withhold_strings {
            r.push("strings withheld");
        }
        r
    }
}

impl Breakpoint {
    /// Starts resolving and attaching `info.spec` in a thread of its own;
    /// its hits are redacted by `shared.redact` before anyone sees, stores
    /// or exports them.
    pub fn start(info: BreakpointInfo, shared: &Shared) -> Self {
        let BreakpointInfo {
            id,
            spec,
            session,
            expires_at_ms,
            created_ms,
            owner,
            ..
        } = info;
        let spec = spec.unwrap_or_default();
        let session = (!session.is_empty()).then_some(session);
        let (state_tx, state) = watch::channel(State::Pending);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let suspended_hits = Arc::new(AtomicU64::new(0));
        let mut export_attrs = vec![kv("probe.breakpoint.id", str_value(&id))];
        if let Some(s) = &session {
            export_attrs.push(kv("probe.session.id", str_value(s)));
        }
        if !owner.is_empty() {
            export_attrs.push(kv("probe.owner", str_value(&owner)));
        }
        let run = Runner {
            id: id.clone(),
            spec: spec.clone(),
            state: state_tx,
            events: events.clone(),
            stop: stop.clone(),
            hits: hits.clone(),
            suspended_hits: suspended_hits.clone(),
            budget: shared.budget_for(&spec),
            store: shared.store.clone(),
            redact: shared.redact.clone(),
            exporter: shared.exporter.clone(),
            export_attrs,
        };
        let thread = std::thread::Builder::new()
            .name(format!("probe-{id}"))
            .spawn(move || run.run())
            .ok();
        Self {
            id,
            spec,
            session,
            expires_at_ms,
            created_ms,
            owner,
            state,
            hits,
            suspended_hits,
            events,
            stop,
            thread,
        }
    }

    /// Its public description and status.
    pub fn info(&self) -> BreakpointInfo {
        let mut i = BreakpointInfo {
            id: self.id.clone(),
            spec: Some(self.spec.clone()),
            session: self.session.clone().unwrap_or_default(),
            expires_at_ms: self.expires_at_ms,
            hits: self.hits.load(Ordering::Relaxed),
            suspended_hits: self.suspended_hits.load(Ordering::Relaxed),
            created_ms: self.created_ms,
            owner: self.owner.clone(),
            ..Default::default()
        };
        match &*self.state.borrow() {
            State::Pending => i.state = "pending".into(),
            State::Attached { probes, target } => {
                i.state = "attached".into();
                i.probes = *probes;
                i.target = target.clone();
            }
            State::Suspended {
                probes,
                target,
                why,
            } => {
                i.state = "suspended".into();
                i.probes = *probes;
                i.target = target.clone();
                i.error_kind = "cpu_budget".into();
                i.error = why.clone();
            }
            State::Error { kind, message } => {
                i.state = "error".into();
                i.error_kind = (*kind).into();
                i.error = message.clone();
            }
            State::Detached { why } => {
                i.state = "detached".into();
                i.error_kind = "detached".into();
                i.error = why.clone();
            }
        }
        i
    }
}

impl Drop for Breakpoint {
    /// Detaches: the thread sees the flag within one drain period and drops
    /// its kernel objects. Not joined here (this may run on the async
    /// runtime); the daemon's shutdown joins through [`Breakpoint::join`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Breakpoint {
    /// Stops it and waits until its uprobes are detached.
    pub fn join(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The breakpoint's thread.
struct Runner {
    id: String,
    spec: BreakpointSpec,
    state: watch::Sender<State>,
    events: broadcast::Sender<Arc<Event>>,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    suspended_hits: Arc<AtomicU64>,
    /// Percent of one CPU.
    budget: f64,
    store: Arc<Store>,
    redact: Redactor,
    exporter: Option<Arc<Exporter>>,
    /// Attributes of every exported record: breakpoint, session, owner.
    export_attrs: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
}

impl Runner {
    fn run(self) {
        let fail = |kind: &'static str, message: String| {
            eprintln!("probe daemon: {}: {kind}: {message}", self.id);
            self.state.send_replace(State::Error { kind, message });
        };
        let opts = match self.spec.to_options() {
            Ok(o) => o,
            Err(e) => return fail("invalid", e),
        };
        if self.spec.pid != 0
            && self.spec.pid_start != 0
            && crate::target::start_time(self.spec.pid) != Some(self.spec.pid_start)
        {
            let e = crate::Error::NoSuchPid { pid: self.spec.pid };
            return fail(
                e.kind(),
                format!("{e} (the process it was added for has exited)"),
            );
        }
        let attached = (|| -> anyhow::Result<_> {
            let target = Target::resolve(&opts.target, true)?;
            let mut resolved = Resolved::new(&opts, &target)?;
            let kernel = resolved.load(&opts, &target)?;
            Ok((target, resolved, kernel))
        })();
        let (mut target, resolved, mut kernel) = match attached {
            Ok(a) => a,
            Err(e) => {
                let kind = e
                    .downcast_ref::<crate::Error>()
                    .map_or("invalid", crate::Error::kind);
                return fail(kind, format!("{e:#}"));
            }
        };
        let mut ring = match kernel.take_events() {
            Ok(r) => r,
            Err(e) => return fail(e.kind(), e.to_string()),
        };
        let who = match target.pid {
            Some(pid) => format!("pid {pid}"),
            None => "every process running it".into(),
        };
        let desc = format!(
            "{} ({}, {who})",
            target.display.display(),
            resolved
                .program
                .binary
                .go_version
                .as_deref()
                .unwrap_or("unknown Go")
        );
        eprintln!(
            "probe daemon: {}: attached {} probe(s) to {desc}",
            self.id,
            resolved.probes.len()
        );
        let probes = resolved.probes.len() as u32;
        self.state.send_replace(State::Attached {
            probes,
            target: desc.clone(),
        });
        let mut attrs = self.export_attrs.clone();
        attrs.push(kv(
            "process.executable.path",
            str_value(&target.display.to_string_lossy()),
        ));
        // Exported hits are redacted like the stored ones.
        let redact = self.redact.clone();
        let mut rd = Renderer::new(&resolved, Format::Json, self.exporter.as_deref()).for_export(
            attrs,
            Box::new(move |v| {
                redact.hit(v);
            }),
        );
        let mut suspended = false;
        let mut checked = Instant::now();
        let mut why = "removed".to_owned();
        // The kernel submits without waking readers (see probe-ebpf): poll
        // the ring every 10 ms, as `probe attach` does.
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
            while let Some(item) = ring.next_event() {
                let Some((_, mut line)) = rd.render(&item) else {
                    continue;
                };
                drop(item);
                line.truncate(line.trim_end().len());
                let line = self.redact.line(line);
                self.hits.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = self.store.append(&self.id, &line) {
                    eprintln!("probe daemon: {}: history: {e}", self.id);
                }
                // No subscriber is fine: the hit is in the history.
                let _ = self.events.send(Arc::new(Event {
                    bp_id: self.id.clone(),
                    json: line,
                }));
            }
            rd.flush_export();
            if checked.elapsed() >= Duration::from_millis(200) {
                checked = Instant::now();
                if target.exited() {
                    why = "the target process exited".into();
                    break;
                }
                if suspended {
                    let n: u64 = (0..probes)
                        .filter_map(|p| kernel.stats(p).ok())
                        .map(|s| s.suspended)
                        .sum();
                    self.suspended_hits.store(n, Ordering::Relaxed);
                } else if let Some((pct, window)) = kernel.sample_cpu() {
                    if pct > self.budget {
                        let why = format!(
                            "its probes used {pct:.2}% of a CPU over {:.1}s, over its CPU budget of {}%; hits are counted, not captured, until it is removed",
                            window.as_secs_f64(),
                            self.budget
                        );
                        match kernel.set_suspended(true) {
                            Ok(()) => {
                                eprintln!("probe daemon: {}: suspended: {why}", self.id);
                                suspended = true;
                                self.state.send_replace(State::Suspended {
                                    probes,
                                    target: desc.clone(),
                                    why,
                                });
                            }
                            Err(e) => {
                                eprintln!("probe daemon: {}: cannot suspend: {e}", self.id)
                            }
                        }
                    }
                }
            }
        }
        drop(rd);
        if let Some(note) = ring.corrupt_note() {
            eprintln!("probe daemon: {}: {note}", self.id);
        }
        drop(ring);
        drop(kernel); // detaches every uprobe
        eprintln!("probe daemon: {}: detached ({why})", self.id);
        self.state.send_replace(State::Detached { why });
    }
}

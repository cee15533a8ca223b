//! `cargo xtask bench`: Probe's overhead measured side by side with no
//! tracing, an empty BPF program (the floor), bpftrace and Delve, on the
//! same Go program (`testdata/hot`), in one run. Writes
//! `bench/results/latest.md` and `bench/results/latest.svg`.
//!
//! Absolute numbers on these nested VMs are noisy and inflated; the ratios
//! measured side by side in one run are what the results are about.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

mod goals;
mod pairs;
mod toggle;

/// Go release the benchmark target is built with: Debian's Delve (1.20)
/// still reads its binaries.
const GO: &str = "1.21.13";

/// A tracer running beside the target.
struct Tracer {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Drop for Tracer {
    /// Never left attached: an error between start and stop (or a panic)
    /// would otherwise leave its probes on the binary for the rest of the
    /// run, slowing every later configuration.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Tracer {
    fn start(mut cmd: Command, ready: &str) -> Result<Self> {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tracer")?;
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let start = Instant::now();
        while !log.lock().unwrap().contains(ready) {
            if start.elapsed() > Duration::from_secs(60) {
                bail!("tracer never became ready: {}", log.lock().unwrap());
            }
            if let Ok(Some(st)) = child.try_wait() {
                bail!("tracer exited ({st}): {}", log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { child, log })
    }

    /// CPU seconds and peak RSS (MiB) of the tracer so far.
    fn footprint(&self) -> (f64, f64) {
        footprint(self.child.id())
    }

    fn stop(mut self) -> String {
        // SIGTERM, not SIGINT: a shell running us in the background passes
        // SIGINT on ignored, and a tracer that ignores it would stay
        // attached (probe and bpftrace end cleanly on either).
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(50));
        self.log.lock().unwrap().clone()
    }
}

fn footprint(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, hwm / 1024.0)
}

/// The configurations, in table order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    None,
    /// Untraced again, in the service tables only: the A/A control, how far
    /// two runs of the same thing differ on this machine.
    NoneAgain,
    FloorFirstByte,
    FloorEmulated,
    /// The floor plus one piece of a capture's work each (per-hit table
    /// only): what the per-hit goal's data costs at the least here.
    FloorClock,
    FloorRead,
    /// The two reads the goal needs whatever the arguments (g's head, the
    /// stack window), nothing else.
    FloorReads,
    FloorMinimal,
    /// The minimal capture written as an event into a per-CPU ring like
    /// Probe's and read on the other CPU: what delivery adds.
    FloorDelivered,
    ProbeFirstByte,
    ProbeArgs,
    /// Probe args with `hot -heap-key` (per-hit table only): the string
    /// argument on the heap, so read from the process at each hit.
    ProbeArgsHeap,
    /// Probe args on the kernel's general capture path (`PROBE_NO_LEAN=1`;
    /// per-hit table only): what the lean path saves.
    ProbeArgsGeneral,
    ProbeFull,
    ProbeCond,
    Bpftrace,
    Delve,
}

impl Config {
    /// The name `--configs` takes.
    fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::NoneAgain => "none-again",
            Config::FloorFirstByte => "floor-first-byte",
            Config::FloorEmulated => "floor",
            Config::FloorClock => "floor-clock",
            Config::FloorRead => "floor-read",
            Config::FloorReads => "floor-reads",
            Config::FloorMinimal => "minimal",
            Config::FloorDelivered => "minimal-delivered",
            Config::ProbeFirstByte => "first-byte",
            Config::ProbeArgs => "args",
            Config::ProbeArgsHeap => "args-heap",
            Config::ProbeArgsGeneral => "args-general",
            Config::ProbeFull => "full",
            Config::ProbeCond => "cond",
            Config::Bpftrace => "bpftrace",
            Config::Delve => "dlv",
        }
    }

    /// The plot's label: the table's name, shorter where that would not fit.
    fn label(self) -> &'static str {
        match self {
            Config::FloorClock => "empty program + a clock read",
            Config::FloorRead => "empty program + one read of target memory",
            Config::FloorReads => "empty program + g's head + stack window",
            Config::FloorMinimal => "minimal capture by hand (no ring, no reader)",
            Config::FloorDelivered => "minimal capture delivered to a reader",
            Config::ProbeArgsHeap => "probe args, the string on the heap",
            Config::ProbeArgsGeneral => "probe args, general kernel path",
            c => c.name(),
        }
    }

    /// Pieces of the per-hit floor, measured in the per-hit table only.
    fn per_hit_only(self) -> bool {
        matches!(
            self,
            Config::FloorClock
                | Config::FloorRead
                | Config::FloorReads
                | Config::FloorMinimal
                | Config::FloorDelivered
                | Config::ProbeArgsHeap
                | Config::ProbeArgsGeneral
        )
    }

    fn name(self) -> &'static str {
        match self {
            Config::None => "no tracing",
            Config::NoneAgain => "no tracing, again (A/A control)",
            Config::FloorFirstByte => "empty BPF program, first byte (single-stepped cmp)",
            Config::FloorEmulated => "empty BPF program, after stack check (emulated push)",
            Config::FloorClock => "empty program + one clock read (bpf_ktime_get_ns)",
            Config::FloorRead => {
                "empty program + one 8-byte read of target memory (bpf_probe_read_user)"
            }
            Config::FloorReads => {
                "empty program + the goal's two reads: g's head (goroutine id), 256-byte stack window"
            }
            Config::FloorMinimal => {
                "minimal capture by hand: clock, registers, g's head, 256-byte stack window, string bytes"
            }
            Config::FloorDelivered => {
                "the same minimal capture as an event in a per-CPU ring, read by a reader on the other CPU"
            }
            Config::ProbeFirstByte => "probe args, first byte",
            Config::ProbeArgs => "probe args (--func: after stack check)",
            Config::ProbeArgsGeneral => {
                "probe args on the kernel's general capture path (`PROBE_NO_LEAN=1`: no lean path)"
            }
            Config::ProbeArgsHeap => {
                "probe args, the string on the heap (`hot -heap-key`: its bytes read at each hit)"
            }
            Config::ProbeFull => "probe args + --stack 16 + --returns",
            Config::ProbeCond => "probe --cond matching 1%",
            Config::Bpftrace => "bpftrace printing the same args",
            Config::Delve => "dlv trace",
        }
    }
}

/// The names `--configs` takes, in the order the configurations run.
pub fn config_keys() -> Vec<&'static str> {
    CONFIGS.map(Config::key).to_vec()
}

const CONFIGS: [Config; 16] = [
    Config::None,
    Config::FloorFirstByte,
    Config::FloorEmulated,
    Config::FloorClock,
    Config::FloorRead,
    Config::FloorReads,
    Config::FloorMinimal,
    Config::FloorDelivered,
    Config::ProbeFirstByte,
    Config::ProbeArgs,
    Config::ProbeArgsHeap,
    Config::ProbeArgsGeneral,
    Config::ProbeFull,
    Config::ProbeCond,
    Config::Bpftrace,
    Config::Delve,
];

/// Calls a second in the paced per-hit runs: well below the rate Probe's
/// reader drains without drops (see the capture-throughput section).
const PACED_RATE: u32 = 100_000;

/// Calls a second in the sparse per-hit runs: one call each millisecond,
/// as a service with one probed call per request at a modest rate makes
/// them. Between hits the target sleeps and the CPU runs other work, so a
/// hit finds the probe's program, maps and ring lines cold rather than in
/// cache as back-to-back hits do.
const SPARSE_RATE: u32 = 1_000;

/// What `cargo xtask bench` runs: every section and configuration by
/// default; a subset for experiments.
pub struct Selection {
    sections: Vec<String>,
    configs: Vec<Config>,
    reps: usize,
    /// The toggle section's load, a fraction of the closed-loop maximum.
    toggle_load: f64,
    /// A subset: results go to partial.md, not the published latest.md.
    partial: bool,
}

/// The sections `--only` takes, in the order they run.
pub const SECTIONS: [&str; 5] = ["per-hit", "bpf-time", "service", "toggle", "throughput"];

impl Selection {
    pub fn new(
        only: Vec<String>,
        configs: Vec<String>,
        reps: usize,
        toggle_load: f64,
    ) -> Result<Self> {
        if !(toggle_load > 0.0 && toggle_load < 1.0) {
            bail!("--toggle-load {toggle_load}: a fraction of the maximum, between 0 and 1");
        }
        for s in &only {
            if !SECTIONS.contains(&s.as_str()) {
                bail!("unknown section {s:?}; sections: {}", SECTIONS.join(", "));
            }
        }
        let mut picked = vec![];
        for k in &configs {
            match CONFIGS.iter().find(|c| c.key() == k) {
                Some(c) => picked.push(*c),
                None => bail!(
                    "unknown configuration {k:?}; configurations: {}",
                    CONFIGS.map(Config::key).join(", ")
                ),
            }
        }
        let partial = !only.is_empty() || !configs.is_empty() || toggle_load != 0.5;
        // Ratios are taken against "no tracing": always measure it.
        if !picked.is_empty() && !picked.contains(&Config::None) {
            picked.insert(0, Config::None);
        }
        Ok(Self {
            sections: if only.is_empty() {
                SECTIONS.map(String::from).to_vec()
            } else {
                only
            },
            configs: if picked.is_empty() {
                CONFIGS.to_vec()
            } else {
                CONFIGS.into_iter().filter(|c| picked.contains(c)).collect()
            },
            reps: reps.max(1),
            toggle_load,
            partial,
        })
    }

    fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

struct Ctx {
    probe: PathBuf,
    hot: PathBuf,
}

fn tracer(ctx: &Ctx, c: Config) -> Result<Option<Tracer>> {
    tracer_with(ctx, c, &[])
}

/// [`tracer`], with `extra` arguments for Probe's configurations.
fn tracer_with(ctx: &Ctx, c: Config, extra: &[&str]) -> Result<Option<Tracer>> {
    let hot = ctx.hot.to_str().unwrap();
    let probe = |args: &[&str]| -> Result<Option<Tracer>> {
        let mut cmd = Command::new(&ctx.probe);
        cmd.args([
            "attach",
            "--binary",
            hot,
            "--format",
            "json",
            "--cpu-budget",
            "10000",
            // What the per-hit goal names: arguments, the goroutine id and
            // a 256-byte stack window.
            "--stack-window",
            "256",
        ])
        .args(args)
        .args(extra);
        if c == Config::ProbeArgsGeneral {
            cmd.env("PROBE_NO_LEAN", "1");
        }
        Tracer::start(cmd, "probe: attached").map(Some)
    };
    let floor = |at: &str, work: &str| -> Result<Option<Tracer>> {
        let mut cmd = Command::new(&ctx.probe);
        cmd.args(["selftest", "floor", hot, at, "1h", "--work", work]);
        Tracer::start(cmd, "program attached").map(Some)
    };
    match c {
        Config::None | Config::NoneAgain | Config::Delve => Ok(None),
        Config::FloorFirstByte => floor("main.work", "empty"),
        Config::FloorEmulated => floor("main.work+0x6", "empty"),
        Config::FloorClock => floor("main.work+0x6", "clock"),
        Config::FloorRead => floor("main.work+0x6", "read"),
        Config::FloorReads => floor("main.work+0x6", "reads"),
        Config::FloorMinimal => floor("main.work+0x6", "minimal"),
        Config::FloorDelivered => floor("main.work+0x6", "delivered"),
        Config::ProbeFirstByte => probe(&["--addr", "main.work"]),
        Config::ProbeArgs | Config::ProbeArgsHeap | Config::ProbeArgsGeneral => {
            probe(&["--func", "main.work"])
        }
        Config::ProbeFull => probe(&["--func", "main.work", "--stack", "16", "--returns"]),
        Config::ProbeCond => probe(&["--func", "main.work", "--cond", "n % 100 == 0"]),
        Config::Bpftrace => {
            let mut cmd = Command::new("bpftrace");
            cmd.arg("-e").arg(format!("uprobe:{hot}:\"main.work\" {{ printf(\"%d %d %d\\n\", reg(\"ax\"), reg(\"bx\"), reg(\"cx\")); }}"));
            // bpftrace prints its banner on stdout; watch for it there.
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("bpftrace")?;
            let out = child.stdout.take().unwrap();
            let log = Arc::new(Mutex::new(String::new()));
            let (l, ready) = (log.clone(), Arc::new(AtomicBool::new(false)));
            let r = ready.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(out);
                let mut line = String::new();
                while rd.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line.contains("Attaching") {
                        r.store(true, Ordering::SeqCst);
                    }
                    line.clear();
                }
                let _ = l;
            });
            let start = Instant::now();
            while !ready.load(Ordering::SeqCst) {
                if start.elapsed() > Duration::from_secs(60) {
                    bail!("bpftrace never attached");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(300));
            Ok(Some(Tracer { child, log }))
        }
    }
}

/// How `hot` calls the probed function in a per-hit run.
#[derive(Clone, Copy)]
enum Load {
    /// G goroutines calling it back to back: far more hits than any reader
    /// drains, so a tracer's ring fills and most hits take the drop path.
    Loop(usize),
    /// One goroutine calling it [`PACED_RATE`] times a second, in bursts
    /// every millisecond: a rate Probe's reader keeps up with, so every hit
    /// is captured; timed over the bursts only.
    Paced,
    /// One goroutine calling it [`SPARSE_RATE`] times a second, one call a
    /// burst, timed without the slowest 1% of bursts: cold hits.
    Sparse,
}

impl Load {
    /// `hot`'s arguments for this load.
    fn args(self) -> Vec<String> {
        let rate = |r: u32| vec!["-mode".into(), "rate".into(), "-rate".into(), r.to_string()];
        match self {
            Load::Loop(g) => vec![
                "-mode".into(),
                "loop".into(),
                "-goroutines".into(),
                g.to_string(),
            ],
            Load::Paced => rate(PACED_RATE),
            Load::Sparse => rate(SPARSE_RATE),
        }
    }
}

/// One per-hit run: ns per call and the tracer's log.
fn loop_run(
    ctx: &Ctx,
    c: Config,
    load: Load,
    secs: f64,
) -> Result<(f64, Option<String>, (f64, f64))> {
    let t = tracer(ctx, c)?;
    let mut args = load.args();
    args.extend(["-duration".into(), format!("{secs}s")]);
    if c == Config::ProbeArgsHeap {
        args.push("-heap-key".into());
    }
    let out = if c == Config::Delve {
        Command::new("dlv")
            .args(["trace", "--check-go-version=false", "--exec"])
            .arg(&ctx.hot)
            .arg("main.work")
            .arg("--")
            .args(&args)
            .current_dir(std::env::temp_dir())
            .stderr(Stdio::null())
            .output()?
    } else {
        Command::new(&ctx.hot).args(&args).output()?
    };
    let fp = t.as_ref().map(|t| t.footprint()).unwrap_or_default();
    let log = t.map(Tracer::stop);
    let text = String::from_utf8_lossy(&out.stdout);
    let ns = if matches!(load, Load::Sparse) {
        // One call a burst: the mean of a few thousand microsecond calls
        // is moved by a fifth by one millisecond's stall of the host, so
        // the slowest 1% of bursts are left out (`hot` prints both).
        text.lines()
            .find_map(|l| l.strip_prefix("trimmed ")?.trim().parse().ok())
    } else {
        text.lines().find_map(|l| {
            l.strip_prefix("calls ")
                .and_then(|r| r.split("ns_per_call ").nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
    }
    .with_context(|| format!("no result from the target under {c:?}: {text}"))?;
    Ok((ns, log, fp))
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

/// (median, lowest, highest) of `v`.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&mut v), lo, hi)
}

/// Closed-loop maximum throughput (wrk): requests/s, p50 and p99 (ms).
fn wrk(url: &str, secs: u32, rt: bool) -> Result<(f64, f64, f64)> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c16", &format!("-d{secs}s"), "--latency", url]);
    if rt {
        use std::os::unix::process::CommandExt;
        // SAFETY: only a syscall between fork and exec.
        unsafe { cmd.pre_exec(|| realtime(false)) };
    }
    let out = cmd.output().context("wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("wrk output")?;
    let pct = |p: &str| -> f64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(parse_ms)
            .unwrap_or(f64::NAN)
    };
    Ok((rps, pct("50%"), pct("99%")))
}

fn parse_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// One configuration's service measurements in one round.
#[derive(Clone)]
struct ServiceRun {
    /// Closed-loop maximum and its p50/p99 (ms).
    rps: f64,
    p50: f64,
    p99: f64,
    /// Open loop at 50% and 90% of the untraced maximum.
    half: OpenLoop,
    ninety: OpenLoop,
    /// The target's CPU seconds over the run.
    cpu: f64,
    /// The tracer's CPU seconds and peak RSS (MiB).
    tracer: Option<(f64, f64)>,
}

/// One open-loop run: achieved req/s and latencies (ms).
#[derive(Clone, Copy)]
struct OpenLoop {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    /// The median over the run's 1-second windows (by scheduled send time)
    /// of each window's p99: a host stall of a few milliseconds, which on
    /// these nested VMs comes and goes whatever runs, moves one window, not
    /// the statistic, while a cost every request pays moves every window.
    p99w: f64,
}

/// One service table: `configs` in turn for `sel.reps` rounds; with `pin`,
/// the service alone on CPU 0 and everything else on the other CPUs.
fn service_table(
    ctx: &Ctx,
    sel: &Selection,
    configs: &[Config],
    pin: bool,
    md: &mut String,
) -> Result<Option<goals::ServiceGoal>> {
    md.push_str("| configuration | max req/s (closed loop) | p50 / p99 ms | 50% load: req/s, p50 / p99 / p99.9 ms, windowed p99 ms | 90% load: req/s, p50 / p99 / p99.9 ms | target CPU s | tracer CPU s / peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all: Vec<usize> = (0..cpus).collect();
    // This thread runs the load generator and spawns the tracers and wrk,
    // which inherit its CPUs; restored on return.
    let _restore = Affinity::set(if pin { &all[1..] } else { &all })?;
    // Pinned, the generators (this thread, wrk) share their CPU with the
    // tracer: real-time priority keeps the tracer from delaying them, as if
    // it had a core of its own (its children are reset to normal
    // scheduling, so the tracer is not real-time).
    let _rt = if pin { Some(RealTime::set()?) } else { None };
    let mut runs: Vec<Vec<ServiceRun>> = vec![vec![]; configs.len()];
    // The load levels for every configuration and round: one closed-loop
    // maximum can be off by a third on these machines, and every open-loop
    // run is at a fraction of it.
    let max_rps = calibrate(ctx, pin)?;
    eprintln!("  untraced maximum (median of 3 closed-loop runs): {max_rps:.0} req/s");
    for round in 0..sel.reps {
        for (i, c) in configs.iter().copied().enumerate() {
            let r = service_run(ctx, c, max_rps, pin)?;
            eprintln!(
                "  round {round}: {:<55} {:.0} req/s; 50%: p99 {:.2} ms, windowed {:.2} ms",
                c.name(),
                r.rps,
                r.half.p99,
                r.half.p99w
            );
            runs[i].push(r);
        }
    }
    for (c, rs) in configs.iter().zip(&runs) {
        let m = |f: &dyn Fn(&ServiceRun) -> f64| median(&mut rs.iter().map(f).collect::<Vec<_>>());
        let fp = if rs.iter().all(|r| r.tracer.is_none()) {
            "–".to_owned()
        } else {
            format!(
                "{:.2} / {:.0}",
                m(&|r| r.tracer.map_or(0.0, |t| t.0)),
                m(&|r| r.tracer.map_or(0.0, |t| t.1))
            )
        };
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} / {:.2} | {:.0}, {:.2} / {:.2} / {:.2}, {:.2} | {:.0}, {:.2} / {:.2} / {:.2} | {:.2} | {fp} |\n",
            c.name(),
            m(&|r| r.rps),
            m(&|r| r.p50),
            m(&|r| r.p99),
            m(&|r| r.half.rps),
            m(&|r| r.half.p50),
            m(&|r| r.half.p99),
            m(&|r| r.half.p999),
            m(&|r| r.half.p99w),
            m(&|r| r.ninety.rps),
            m(&|r| r.ninety.p50),
            m(&|r| r.ninety.p99),
            m(&|r| r.ninety.p999),
            m(&|r| r.cpu),
        ));
    }
    let at = |k: Config| configs.iter().position(|c| *c == k);
    let mut goal = None;
    if let (Some(n), Some(a)) = (at(Config::None), at(Config::ProbeArgs)) {
        // Each round's ratio to the untraced run of the same round (they ran
        // minutes apart, not hours), then the median over rounds.
        let changes = |i: usize, f: fn(&ServiceRun) -> f64| -> Vec<f64> {
            runs[i]
                .iter()
                .zip(&runs[n])
                .map(|(x, base)| (f(x) / f(base) - 1.0) * 100.0)
                .collect()
        };
        let ratio = |i: usize, f: fn(&ServiceRun) -> f64| median(&mut changes(i, f));
        md.push_str(&format!(
            "\nAt 50% load with one probe per request (probe args against no tracing, median of the rounds' ratios): throughput {:+.1}%, p99 {:+.1}% (windowed p99 {:+.1}%), p99.9 {:+.1}%; at 90% load: throughput {:+.1}%, p99 {:+.1}%.",
            ratio(a, |r| r.half.rps),
            ratio(a, |r| r.half.p99),
            ratio(a, |r| r.half.p99w),
            ratio(a, |r| r.half.p999),
            ratio(a, |r| r.ninety.rps),
            ratio(a, |r| r.ninety.p99),
        ));
        let mut control = None;
        if let Some(aa) = at(Config::NoneAgain) {
            let spread = |f: fn(&ServiceRun) -> f64| spread(changes(aa, f));
            let (p, plo, phi) = spread(|r| r.half.p99);
            let (w, wlo, whi) = spread(|r| r.half.p99w);
            control = Some((p, plo, phi));
            md.push_str(&format!(
                " The A/A control (no tracing against no tracing, same rounds): p99 {p:+.1}% (rounds {plo:+.0}% to {phi:+.0}%), windowed p99 {w:+.1}% (rounds {wlo:+.0}% to {whi:+.0}%): differences smaller than that are not resolved by this run."
            ));
        }
        md.push('\n');
        goal = Some((ratio(a, |r| r.half.rps), ratio(a, |r| r.half.p99), control));
    }
    Ok(goal)
}

/// Waits until the HTTP target `server` accepts connections on `addr`.
fn wait_listening(addr: &str, server: &mut std::process::Child) -> Result<()> {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the HTTP target did not start");
        }
        if let Ok(Some(st)) = server.try_wait() {
            bail!("the HTTP target exited ({st})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the HTTP target on a free port (alone on CPU 0 with `pin`;
/// under `dlv trace` with `delve`) and waits until it listens: its address
/// and process.
fn http_target(ctx: &Ctx, pin: bool, delve: bool) -> Result<(String, Child)> {
    // A port nobody holds (a fixed one may still be held by a server of
    // an earlier, interrupted run: wrk would then measure that server).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let mut cmd = if delve {
        let mut d = Command::new("dlv");
        d.args(["trace", "--check-go-version=false", "--exec"])
            .arg(&ctx.hot)
            .args(["main.work", "--", "-mode", "http", "-http", &addr])
            .current_dir(std::env::temp_dir())
            .stderr(Stdio::null());
        d
    } else {
        let mut h = Command::new(&ctx.hot);
        h.args(["-mode", "http", "-http", &addr]);
        h
    };
    cmd.stdout(Stdio::null());
    if pin {
        use std::os::unix::process::CommandExt;
        // SAFETY: only a syscall between fork and exec.
        unsafe { cmd.pre_exec(|| pin_to(&[0])) };
    }
    let mut server = cmd.spawn()?;
    if let Err(e) = wait_listening(&addr, &mut server) {
        let _ = server.kill();
        let _ = server.wait();
        return Err(e);
    }
    Ok((addr, server))
}

/// The untraced service's closed-loop maximum: the median of three `wrk`
/// runs against one server.
fn calibrate(ctx: &Ctx, pin: bool) -> Result<f64> {
    // The builds just before leave dirty pages whose writeback competes
    // with the first runs; flush them first.
    // SAFETY: a plain syscall.
    unsafe { libc::sync() };
    std::thread::sleep(Duration::from_secs(2));
    let (addr, mut server) =
        http_target(ctx, pin, false).context("untraced, measuring its maximum")?;
    let url = format!("http://{addr}/work?n=1");
    let mut rps = vec![];
    for _ in 0..3 {
        rps.push(wrk(&url, 4, pin)?.0);
    }
    let _ = server.kill();
    let _ = server.wait();
    let m = median(&mut rps);
    if m.is_nan() || m <= 0.0 {
        bail!("wrk measured no throughput against the untraced service");
    }
    Ok(m)
}

/// This thread's CPU affinity, set for a while: the previous set comes back
/// on drop.
struct Affinity(libc::cpu_set_t);

impl Affinity {
    fn set(cpus: &[usize]) -> Result<Self> {
        // SAFETY: plain syscalls on this thread with a zeroed set.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            pin_to(cpus)?;
            Ok(Self(old))
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // SAFETY: restores the set read in `set`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// `SCHED_FIFO` for this thread while held; children it forks start with
/// normal scheduling (`SCHED_RESET_ON_FORK`).
struct RealTime;

impl RealTime {
    fn set() -> Result<Self> {
        realtime(true).context("real-time priority for the load generator")?;
        Ok(Self)
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        let p = libc::sched_param { sched_priority: 0 };
        // SAFETY: back to normal scheduling for this thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) };
    }
}

/// `SCHED_FIFO` priority 1 for the calling thread (or, after fork, process);
/// with `reset_on_fork`, its children start with normal scheduling.
fn realtime(reset_on_fork: bool) -> std::io::Result<()> {
    let p = libc::sched_param { sched_priority: 1 };
    let policy = libc::SCHED_FIFO
        | if reset_on_fork {
            libc::SCHED_RESET_ON_FORK
        } else {
            0
        };
    // SAFETY: a plain syscall.
    if unsafe { libc::sched_setscheduler(0, policy, &p) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread (or, after fork, process) to `cpus`.
fn pin_to(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed set filled with valid CPU numbers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts the HTTP target under configuration `c` and measures it: a
/// closed-loop maximum, then open-loop runs at 50% and 90% of `max_rps`
/// (of this run's own maximum when `max_rps` is 0: the untraced baseline).
fn service_run(ctx: &Ctx, c: Config, max_rps: f64, pin: bool) -> Result<ServiceRun> {
    // Delve is no tracer beside the target: it starts it (`http_target`).
    let t = tracer(ctx, c)?;
    let (addr, mut server) =
        http_target(ctx, pin, c == Config::Delve).with_context(|| format!("under {c:?}"))?;
    let addr = addr.as_str();
    let url = format!("http://{addr}/work?n=1");
    let target_pid = pid_of_listener(&server);
    let cpu0 = footprint(target_pid).0;
    let (rps, p50, p99) = wrk(&url, 4, pin)?;
    if rps.is_nan() || rps <= 0.0 {
        bail!("wrk measured no throughput under {c:?}");
    }
    let max_rps = if max_rps > 0.0 { max_rps } else { rps };
    let half = open_loop(addr, max_rps * 0.5, 10.0);
    let ninety = open_loop(addr, max_rps * 0.9, 5.0);
    let cpu = footprint(target_pid).0 - cpu0;
    let tracer = t.as_ref().map(|t| t.footprint());
    if let Some(t) = t {
        t.stop();
    }
    let _ = server.kill();
    let _ = server.wait();
    std::thread::sleep(Duration::from_millis(300));
    Ok(ServiceRun {
        rps,
        p50,
        p99,
        half,
        ninety,
        cpu,
        tracer,
    })
}

/// Open-loop load at `rate` requests/s for `secs`: achieved rate and
/// latency p50/p99/p99.9 (ms) measured from each request's scheduled time,
/// so a stalled server cannot hide its delay (no coordinated omission).
///
/// One thread drives every connection with `ppoll` (as wrk2 does): a
/// thread per connection would itself compete with the service for the
/// two vCPUs and add its own wake-up noise to the tail it measures.
fn open_loop(addr: &str, rate: f64, secs: f64) -> OpenLoop {
    let start = Instant::now() + Duration::from_millis(50);
    open_loop_from(addr, rate, secs, start, None).0
}

/// [`open_loop`] with its schedule starting at `start`, ended early when
/// `stop` is set; also returns every completed request as (scheduled time
/// in seconds after `start`, latency in ms).
fn open_loop_from(
    addr: &str,
    rate: f64,
    secs: f64,
    start: Instant,
    stop: Option<&AtomicBool>,
) -> (OpenLoop, Vec<(f32, f32)>) {
    use std::os::fd::AsRawFd;
    const CONNS: usize = 32;
    struct Conn {
        stream: Option<TcpStream>,
        /// Scheduled time of the request in flight.
        busy: Option<Instant>,
        buf: Vec<u8>,
    }
    let connect = || -> Option<TcpStream> {
        let c = TcpStream::connect(addr).ok()?;
        c.set_nodelay(true).ok()?;
        c.set_nonblocking(true).ok()?;
        Some(c)
    };
    // Wake-ups as precise as the kernel allows (default slack is 50 µs).
    // (SCHED_FIFO for the generator only when pinned away from the service,
    // see `service_table`: sharing the CPUs, its short polls starve the
    // service on two vCPUs and every tail got worse.)
    // SAFETY: prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0, 0, 0) };
    let mut conns: Vec<Conn> = (0..CONNS)
        .map(|_| Conn {
            stream: connect(),
            busy: None,
            buf: Vec::with_capacity(512),
        })
        .collect();
    let total = (rate * secs) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let deadline = start + Duration::from_secs_f64(secs + 1.0);
    // Grown past this as needed (a long schedule ended by `stop` offers
    // far more than it sends).
    let cap = (total as usize).min(1 << 22);
    let mut lat = Vec::with_capacity(cap);
    let mut samples = Vec::with_capacity(cap);
    let mut windows: Vec<Vec<f64>> = vec![];
    let mut pending = std::collections::VecDeque::new();
    let mut k = 0u64;
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        while k < total && start + interval * k as u32 <= now {
            pending.push_back((k, start + interval * k as u32));
            k += 1;
        }
        for c in conns.iter_mut().filter(|c| c.busy.is_none()) {
            let Some(&(n, due)) = pending.front() else {
                break;
            };
            if c.stream.is_none() {
                c.stream = connect();
            }
            let Some(s) = c.stream.as_mut() else {
                continue;
            };
            let req = format!("GET /work?n={n} HTTP/1.1\r\nHost: b\r\n\r\n");
            // A request this small goes out whole into an idle connection.
            if s.write_all(req.as_bytes()).is_err() {
                c.stream = None;
                continue;
            }
            pending.pop_front();
            c.busy = Some(due);
            c.buf.clear();
        }
        let in_flight = conns.iter().any(|c| c.busy.is_some());
        // A server that falls behind leaves requests unsent at the deadline:
        // they show up as a lower achieved rate, not as a longer run.
        if (k >= total && pending.is_empty() && !in_flight)
            || now > deadline
            || stop.is_some_and(|s| s.load(Ordering::Relaxed))
        {
            break;
        }
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .map(|c| libc::pollfd {
                fd: match (&c.stream, c.busy) {
                    (Some(s), Some(_)) => s.as_raw_fd(),
                    _ => -1,
                },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let wait = if !pending.is_empty() && conns.iter().any(|c| c.busy.is_none()) {
            Duration::ZERO
        } else if k < total {
            (start + interval * k as u32).saturating_duration_since(now)
        } else {
            Duration::from_millis(10)
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: fds is a live array of pollfd of the given length.
        unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        for (c, f) in conns.iter_mut().zip(&fds) {
            if f.fd < 0 || f.revents == 0 {
                continue;
            }
            let s = c.stream.as_mut().unwrap();
            match s.read(&mut chunk) {
                Ok(n) if n > 0 => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if response_complete(&c.buf) {
                        let due = c.busy.take().unwrap();
                        let ms = due.elapsed().as_secs_f64() * 1000.0;
                        lat.push(ms);
                        let at = due.saturating_duration_since(start);
                        samples.push((at.as_secs_f32(), ms as f32));
                        let w = at.as_secs() as usize;
                        if windows.len() <= w {
                            windows.resize_with(w + 1, Vec::new);
                        }
                        windows[w].push(ms);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                // Closed or broken: its request is lost (a lower achieved
                // rate); the next request due reconnects.
                _ => {
                    c.stream = None;
                    c.busy = None;
                }
            }
        }
    }
    let mut per_window: Vec<f64> = windows
        .iter_mut()
        .filter(|w| !w.is_empty())
        .map(|w| quantile(w, 0.99))
        .collect();
    let run = OpenLoop {
        rps: lat.len() as f64 / secs,
        p50: quantile(&mut lat, 0.5),
        p99: quantile(&mut lat, 0.99),
        p999: quantile(&mut lat, 0.999),
        p99w: quantile(&mut per_window, 0.5),
    };
    (run, samples)
}

/// The `q` quantile of `v` (sorted in place); NaN when empty.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Has `buf` one whole HTTP response (headers and a Content-Length body)?
fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

pub fn run(root: &Path, probe: PathBuf, sel: &Selection) -> Result<()> {
    crate::ensure_debian(
        "the bench",
        &[
            ("bpftrace", "bpftrace"),
            ("delve", "dlv"),
            ("wrk", "wrk"),
            ("bpftool", "bpftool"),
        ],
    )?;
    let ctx = Ctx {
        probe,
        hot: root.join(format!("target/testdata/go{GO}/hot")),
    };
    let mut md = String::new();
    let kernel = String::from_utf8(Command::new("uname").arg("-r").output()?.stdout)?
        .trim()
        .to_owned();
    let date = String::from_utf8(
        Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()?
            .stdout,
    )?
    .trim()
    .to_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    md.push_str(&format!(
        "Machine: {cpus} vCPUs (nested VM), kernel {kernel}, target built with Go {GO}, {date}. Medians of {} runs after a warm-up.\n\n",
        sel.reps
    ));

    // The goals' table goes right under the machine's line, once known.
    let goals_at = md.len();
    let mut goals = goals::Goals::default();
    let mut added = vec![];
    if sel.runs("per-hit") {
        // Added ns per hit when sparse (one call each millisecond).
        let mut sparse = vec![];
        crate::step("per-hit cost: a probed function called paced and in a tight loop");
        md.push_str(&format!("### Per-hit cost (`testdata/hot`, `main.work`)\n\nPaced: one goroutine calls it {PACED_RATE} times a second in bursts every millisecond, timed over the bursts; Probe's reader keeps up, so every hit is captured (the dropped column shows it). Tight loop: calls back to back, far faster than any reader drains; a tracer's ring fills and most hits take the cheaper drop path, so those columns understate what a captured hit costs. Probe's configurations capture, with the arguments (`n int, key string`), the goroutine id and a 256-byte stack window (`--stack-window 256`), the workload of the per-hit goal. `key` is the literal `\"key\"`, whose bytes lie in the binary's read-only data: Probe reads them from the file, not the process (no read at the hit); the `-heap-key` row passes the same bytes from the heap, read at each hit, as a string built at run time is.\n\n"));
        md.push_str(&format!("Sparse: {SPARSE_RATE} calls a second, one each millisecond, each timed alone, the slowest 1% left out (one stall of the host would otherwise outweigh thousands of calls): hits that find the probe's program and data cold, as one probed call per request at a modest request rate does.\n\n"));
        md.push_str("| configuration | paced: ns/call | added ns/hit | hits dropped (paced) | sparse: ns/call | added ns/hit | loop, 1 goroutine: ns/call | added ns/hit | loop, 2 goroutines: ns/call | added ns/hit | BPF ns/hit (paced) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let loads = [Load::Paced, Load::Sparse, Load::Loop(1), Load::Loop(2)];
        let nc = sel.configs.len();
        // [config][load]: ns per call of each round; BPF ns/hit and drops.
        let mut ns = vec![vec![vec![]; loads.len()]; nc];
        let mut bpf = vec![vec![]; nc];
        let mut dropped = vec![vec![]; nc];
        for (li, load) in loads.into_iter().enumerate() {
            // Configurations take turns, round after round: the machine's
            // slow drifts (other VMs on the host) then touch all alike.
            for round in 0..sel.reps {
                for (ci, c) in sel.configs.iter().copied().enumerate() {
                    let secs = match (c, load) {
                        (Config::Delve, _) => 1.0,
                        (_, Load::Paced | Load::Sparse) => 3.0,
                        _ => 2.0,
                    };
                    if round == 0 {
                        let _ = loop_run(&ctx, c, load, 0.5)?; // warm-up
                    }
                    let (v, log, _) = loop_run(&ctx, c, load, secs)?;
                    // Only where every hit is captured at the usual rate: in
                    // the loops most hits take the drop path, a fraction of
                    // the program.
                    if let (Some(log), Load::Paced) = (log.as_deref(), load) {
                        if let Some(b) = log.lines().find_map(|x| {
                            x.trim()
                                .strip_prefix("BPF run time per hit: ")?
                                .trim_end_matches(" ns")
                                .parse::<f64>()
                                .ok()
                        }) {
                            bpf[ci].push(b);
                        }
                        if let Some(k) = summary_counts(log) {
                            dropped[ci].push(format!("{} of {}", k.dropped, k.hits));
                        }
                    }
                    let what = match load {
                        Load::Paced => format!("paced {PACED_RATE}/s"),
                        Load::Sparse => format!("sparse {SPARSE_RATE}/s"),
                        Load::Loop(g) => format!("loop, {g} goroutine(s)"),
                    };
                    eprintln!("  round {round}: {:<55} {what}: {v:.1} ns/call", c.name());
                    ns[ci][li].push(v);
                }
            }
        }
        let at = |k: Config| sel.configs.iter().position(|c| *c == k);
        let none = at(Config::None);
        // On copies: `ns` keeps each round's place (the goal's ratio is also
        // taken round by round below).
        let med: Vec<Vec<f64>> = ns
            .iter()
            .map(|per| per.iter().map(|v| median(&mut v.clone())).collect())
            .collect();
        for (ci, c) in sel.configs.iter().copied().enumerate() {
            let col = |li: usize| med[ci][li] - none.map_or(0.0, |n| med[n][li]);
            added.push((c, col(0)));
            sparse.push((c, col(1)));
            let d = if dropped[ci].is_empty() {
                "–".to_owned()
            } else {
                dropped[ci].join(", ")
            };
            let b = if bpf[ci].is_empty() {
                "–".to_owned()
            } else {
                format!("{:.0}", median(&mut bpf[ci]))
            };
            md.push_str(&format!(
                "| {} | {:.1} | {:.1} | {d} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
                c.name(),
                med[ci][0],
                col(0),
                med[ci][1],
                col(1),
                med[ci][2],
                col(2),
                med[ci][3],
                col(3),
                b,
            ));
        }
        let of = |v: &[(Config, f64)], c: Config| {
            v.iter().find(|a| a.0 == c).map(|a| a.1).unwrap_or(f64::NAN)
        };
        let get = |c: Config| of(&added, c);
        // The ratios the goals name, computed once for both places.
        let floor = get(Config::FloorEmulated);
        let args = get(Config::ProbeArgs);
        let heap = get(Config::ProbeArgsHeap);
        // The goal's ratio round by round: each round's Probe against the
        // same round's floor (and untraced run), paired like the turns.
        let round_ratios: Vec<f64> = match (at(Config::ProbeArgs), at(Config::FloorEmulated)) {
            (Some(a), Some(f)) => (0..sel.reps)
                .map(|r| {
                    let base = none.map_or(0.0, |n| ns[n][0][r]);
                    (ns[a][0][r] - base) / (ns[f][0][r] - base)
                })
                .collect(),
            _ => vec![],
        };
        let per_hit = goals::PerHit {
            literal: args / floor,
            literal_rounds: (
                round_ratios.iter().copied().fold(f64::NAN, f64::min),
                round_ratios.iter().copied().fold(f64::NAN, f64::max),
            ),
            heap: heap / floor,
            reads: get(Config::FloorReads) / floor,
            delivered: get(Config::FloorDelivered) / floor,
        };
        let (bpftrace, delve) = (get(Config::Bpftrace) / args, get(Config::Delve) / args);
        // Only the ratios whose configurations ran (a partial run has fewer).
        let ratios: Vec<String> = [
            (
                "probe args / empty-program floor at the same emulated point",
                per_hit.literal,
                2,
            ),
            (
                "probe args with the string on the heap / that floor",
                per_hit.heap,
                2,
            ),
            (
                "probe at the first byte / the floor there",
                get(Config::ProbeFirstByte) / get(Config::FloorFirstByte),
                2,
            ),
            ("bpftrace / probe args", bpftrace, 1),
            ("dlv trace / probe args", delve, 0),
            (
                "sparse hits (cold): probe args / the floor",
                of(&sparse, Config::ProbeArgs) / of(&sparse, Config::FloorEmulated),
                2,
            ),
            (
                "sparse, the string on the heap / the floor",
                of(&sparse, Config::ProbeArgsHeap) / of(&sparse, Config::FloorEmulated),
                2,
            ),
        ]
        .into_iter()
        .filter(|r| r.1.is_finite())
        .map(|(what, v, places)| format!("{what}: **{v:.places$}×**"))
        .collect();
        if !ratios.is_empty() {
            md.push_str(&format!(
                "\nRatios (paced, every hit captured): {}.\n\n",
                ratios.join("; ")
            ));
        }
        goals.per_hit = Some(per_hit);
        goals.bpftrace = Some(bpftrace);
        goals.delve = Some(delve);
        // What the goal's data costs at the least: each piece whose
        // configurations ran (a partial run may have only some).
        let minimal = get(Config::FloorMinimal);
        let delivered = get(Config::FloorDelivered);
        // (value, true for added ns / false for a ratio, text with `{}` for
        // the value).
        let pieces: Vec<String> = [
            (get(Config::FloorClock) - floor, true, "one clock read **{}**"),
            (get(Config::FloorRead) - floor, true, "one 8-byte read of target memory **{}**"),
            (get(Config::FloorReads) / floor, false, "the two reads the goal needs whatever the arguments (g's head for the goroutine id, the 256-byte stack window) **{}× the floor**"),
            (minimal / floor, false, "the hand-written minimal capture (a timestamp, the argument registers, g's head for the goroutine id, the 256-byte stack window and the string's bytes: three reads of target memory, into a per-CPU buffer, with no ring, no capture plan and no reader) **{}× the floor**"),
            (heap / minimal, false, "probe args with the string on the heap (the same three reads) / that minimal capture: **{}×**"),
            (delivered / floor, false, "the same minimal capture delivered, written as an event into a per-CPU ring like Probe's and read, every byte, by a reader on the other CPU draining every 10 ms (no attach cookie, pid, ring lock, counters or doorbell; `probe selftest floor --work delivered`) **{}× the floor**"),
            (delivered - minimal, true, "what delivering it adds **{}** ns/hit"),
            (args / delivered, false, "probe args / that delivered capture **{}×**"),
            (heap / delivered, false, "probe args with the string on the heap / it **{}×** (Probe's own work per hit: attach cookie, pid and thread id, the ring's lock, counters, the full register set, the capture limits)"),
        ]
        .into_iter()
        .filter(|(v, _, _)| v.is_finite())
        // `round() + 0.0`: a value that rounds to zero prints "+0", not "-0".
        .map(|(v, ns, text)| text.replacen("{}", &if ns { format!("{:+.0}", v.round() + 0.0) } else { format!("{v:.2}") }, 1))
        .collect();
        if floor.is_finite() && !pieces.is_empty() {
            md.push_str(&format!(
                "What the goal's data costs at the least, at the same emulated point (paced, added ns/hit over the floor's {floor:.0}): {}.\n\n",
                pieces.join("; ")
            ));
        }
    }

    if sel.runs("bpf-time") {
        crate::step("BPF run time per hit: the programs side by side on one run of hot");
        md.push_str(&pairs::run(&ctx)?);
    }

    if sel.runs("service") {
        crate::step("service overhead: the same function behind an HTTP handler");
        md.push_str("### Service overhead (`hot -mode http`, one probed call per request)\n\n");
        // The A/A control runs right after the untraced configuration.
        let service_configs: Vec<Config> = sel
            .configs
            .iter()
            .filter(|c| !c.per_hit_only())
            .flat_map(|&c| {
                if c == Config::None {
                    vec![c, Config::NoneAgain]
                } else {
                    vec![c]
                }
            })
            .collect();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus >= 2 {
            md.push_str(&format!("The service alone on CPU 0 (so `GOMAXPROCS` is 1); the load generator and the tracer on the other CPU{}: what a probe costs inside the service, apart from the tracer's own CPU (shown in the last column, and below with everything sharing the CPUs). Configurations run in turn, round after round ({} rounds; medians), so a slow drift of the machine touches all of them alike. Open-loop load at 50% (10 s) and 90% (5 s) of the untraced maximum (the median of three closed-loop runs before the rounds), latency measured from each request's scheduled send time; the windowed p99 is the median of the 50% run's per-second p99s, which a stall of the host (a few milliseconds, coming and going whatever runs) moves less than the whole run's p99. The A/A control row is the untraced service measured again in each round, right after the first: how far two runs of the same thing land apart here. Probe's configurations capture the goroutine id and a 256-byte stack window besides the arguments (`--stack-window 256`).\n\n", if cpus > 2 { "s" } else { "" }, sel.reps));
            goals.service = service_table(&ctx, sel, &service_configs, true, &mut md)?;
            md.push_str("\n#### Everything sharing the CPUs\n\nThe service, the load generator and the tracer on all CPUs, as on a machine with no spare core: the tracer's reader now competes with the service for CPU.\n\n");
            let shared: Vec<Config> = service_configs
                .iter()
                .copied()
                .filter(|c| {
                    matches!(
                        c,
                        Config::None | Config::NoneAgain | Config::ProbeArgs | Config::ProbeCond
                    )
                })
                .collect();
            service_table(&ctx, sel, &shared, false, &mut md)?;
        } else {
            md.push_str(&format!("One CPU: the service, the load generator and the tracer share it. Configurations run in turn, round after round ({} rounds; medians). Open-loop load at 50% and 90% of the untraced maximum (the median of three closed-loop runs before the rounds), latency measured from each request's scheduled send time.\n\n", sel.reps));
            goals.service = service_table(&ctx, sel, &service_configs, false, &mut md)?;
        }
    }

    if sel.runs("toggle") {
        crate::step("service overhead in one process: Probe attached and detached in turn");
        md.push_str(
            "\n### Service overhead in one process (Probe attached and detached in turn)\n\n",
        );
        let mut t = toggle::run(&ctx, (sel.reps * 2).max(4), 4.0, sel.toggle_load)?;
        if t.requests() == 0 {
            bail!("the toggled service run completed no requests");
        }
        md.push_str(&t.markdown());
        goals.toggle = Some(t.goal_changes());
    }

    if sel.runs("throughput") {
        crate::step("capture throughput: offered hit rates until drops start");
        md.push_str("\n### Capture throughput (`hot -mode rate`, paced calls of `main.work`; `probe attach --format json` to /dev/null)\n\n");
        let (clean, lossy) = throughput_table(&ctx, None, &mut md)?;
        md.push_str(&format!(
            "\nHighest offered rate with no drops: **{clean}**; drops start at: **{lossy}**. Drops are counted per probe (never hidden) and cost the target nothing: the kernel side submits without waking the reader.\n"
        ));
        // The same with every hit also exported to a real collector.
        crate::step("capture throughput with OTLP export to a local collector");
        let collector = Collector::start(&crate::setup_collector(root)?)?;
        md.push_str("\n#### With OTLP export (every hit also sent as a log record over gRPC to a local `rotel` collector, exporter `blackhole`)\n\n");
        let (clean, lossy) = throughput_table(&ctx, Some(&collector.endpoint), &mut md)?;
        drop(collector);
        md.push_str(&format!(
            "\nExporting too: highest offered rate with every hit exported: **{clean}**; losses start at: **{lossy}** (counted in the summary and in the exported health metrics).\n"
        ));
    }

    md.insert_str(goals_at, &goals.markdown());
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    if sel.partial {
        std::fs::write(dir.join("partial.md"), &md)?;
        crate::step(&format!(
            "wrote {} (a subset: latest.md left alone)",
            dir.join("partial.md").display()
        ));
    } else {
        std::fs::write(dir.join("latest.md"), &md)?;
        std::fs::write(dir.join("latest.svg"), svg(&added))?;
        crate::step(&format!(
            "wrote {} and latest.svg",
            dir.join("latest.md").display()
        ));
    }
    println!("{md}");
    Ok(())
}

/// What one capture-throughput run saw.
struct Throughput {
    /// With OTLP export: hits exported, hits dropped by the export queue.
    export: Option<(u64, u64)>,
    hits: u64,
    shown: u64,
    dropped: u64,
    cpu_pct: f64,
    rss: f64,
}

impl Throughput {
    fn drop_pct(&self) -> f64 {
        if self.hits == 0 {
            0.0
        } else {
            self.dropped as f64 * 100.0 / self.hits as f64
        }
    }
}

/// Offers `rate` hits a second for `secs` and reads Probe's own summary.
fn throughput_run(ctx: &Ctx, rate: u32, secs: f64, otlp: Option<&str>) -> Result<Throughput> {
    let extra: Vec<&str> = otlp.map(|e| vec!["--otlp-endpoint", e]).unwrap_or_default();
    let t = tracer_with(ctx, Config::ProbeArgs, &extra)?.context("probe")?;
    let (cpu0, _) = t.footprint();
    let started = Instant::now();
    let out = Command::new(&ctx.hot)
        .args([
            "-mode",
            "rate",
            "-rate",
            &rate.to_string(),
            "-duration",
            &format!("{secs}s"),
        ])
        .output()?;
    // Let the reader drain what is still in the ring.
    std::thread::sleep(Duration::from_millis(300));
    let (cpu1, rss) = t.footprint();
    let wall = started.elapsed().as_secs_f64();
    let log = t.stop();
    if !out.status.success() {
        bail!(
            "hot -mode rate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let k = summary_counts(&log).with_context(|| format!("no summary from probe: {log}"))?;
    // "OTLP export to URL: N hits and M spans sent, Q dropped (queue full), ..."
    let export = log.lines().find(|l| l.contains("OTLP export to")).map(|l| {
        let n = |what: &str| {
            l.split(',')
                .chain(l.split(':'))
                .find_map(|part| {
                    let w: Vec<&str> = part.split_whitespace().collect();
                    let i = w.windows(2).position(|p| p.join(" ") == what)?;
                    w.get(i.checked_sub(1)?)?.parse::<u64>().ok()
                })
                .unwrap_or(0)
        };
        (n("hits and"), n("dropped (queue"))
    });
    Ok(Throughput {
        export,
        hits: k.hits,
        shown: k.shown,
        dropped: k.dropped,
        cpu_pct: (cpu1 - cpu0) / wall * 100.0,
        rss,
    })
}

/// One capture-throughput table (exporting to `otlp` when given): rows
/// appended to `md`; the highest rate without loss and the first with.
fn throughput_table(ctx: &Ctx, otlp: Option<&str>, md: &mut String) -> Result<(String, String)> {
    if otlp.is_some() {
        md.push_str("| offered hits/s | hits | shown | dropped (ring full) | exported | export dropped (queue full) | tracer CPU % | tracer peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        md.push_str("| offered hits/s | hits | shown | dropped (ring full) | tracer CPU % | tracer peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|\n");
    }
    let (mut last_clean, mut first_drop) = (None, None);
    for rate in [25_000u32, 50_000, 100_000, 200_000, 400_000, 800_000] {
        let r = throughput_run(ctx, rate, 3.0, otlp)?;
        let export = match r.export {
            Some((sent, qdrop)) if otlp.is_some() => format!(" {sent} | {qdrop} |"),
            _ if otlp.is_some() => " 0 | 0 |".to_owned(),
            _ => String::new(),
        };
        eprintln!(
            "  {rate:>7}/s offered: {} hits, {} shown, {} dropped,{export} tracer {:.0}% CPU",
            r.hits, r.shown, r.dropped, r.cpu_pct
        );
        md.push_str(&format!(
            "| {rate} | {} | {} | {} ({:.1}%) |{export} {:.0} | {:.0} |\n",
            r.hits,
            r.shown,
            r.dropped,
            r.drop_pct(),
            r.cpu_pct,
            r.rss
        ));
        let lossless = r.dropped == 0
            && r.hits > 0
            && (otlp.is_none() || r.export.is_some_and(|(sent, q)| q == 0 && sent == r.hits));
        if lossless {
            last_clean = Some(rate);
        } else if first_drop.is_none() {
            first_drop = Some(rate);
        }
    }
    let show =
        |r: Option<u32>, none: &str| r.map(|r| format!("{r}/s")).unwrap_or_else(|| none.into());
    Ok((
        show(last_clean, "none measured"),
        show(first_drop, "not reached"),
    ))
}

/// A `rotel` OpenTelemetry collector on a free port, discarding what it
/// receives (exporter `blackhole`): the receiving end of the export rows.
struct Collector {
    child: Child,
    endpoint: String,
}

impl Collector {
    fn start(agent: &Path) -> Result<Self> {
        let free = || -> Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (grpc, http) = (free()?, free()?);
        let mut child = Command::new(agent)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
            ])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the rotel collector")?;
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", grpc)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                bail!("the rotel collector did not listen on 127.0.0.1:{grpc}");
            }
            if let Ok(Some(st)) = child.try_wait() {
                bail!("the rotel collector exited ({st})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{grpc}"),
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts from a probe summary line.
struct Counts {
    hits: u64,
    shown: u64,
    dropped: u64,
}

/// Reads "  main.work: 123 hits, 120 shown, 3 dropped (ring buffer full), ..."
/// from probe's summary.
fn summary_counts(log: &str) -> Option<Counts> {
    let line = log
        .lines()
        .find(|l| l.trim_start().starts_with("main.work:"))?;
    let num = |what: &str| -> u64 {
        line.split(',')
            .find_map(|part| {
                let w: Vec<&str> = part.split_whitespace().collect();
                let i = w.iter().position(|x| *x == what)?;
                w.get(i.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or(0)
    };
    Some(Counts {
        hits: num("hits"),
        shown: num("shown"),
        dropped: num("dropped"),
    })
}

/// The PID serving: the target itself, or Delve's child.
fn pid_of_listener(server: &Child) -> u32 {
    let pid = server.id();
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(pid)
}

/// A horizontal bar chart of added ns per hit (log scale).
fn svg(added: &[(Config, f64)]) -> String {
    let rows: Vec<&(Config, f64)> = added.iter().filter(|a| a.0 != Config::None).collect();
    let (w, bar_h, left) = (900.0, 28.0, 380.0);
    let h = 50.0 + rows.len() as f64 * bar_h;
    let max = rows
        .iter()
        .map(|r| r.1.max(1.0))
        .fold(1.0, f64::max)
        .log10()
        .ceil()
        .max(1.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='13'>\n<rect width='100%' height='100%' fill='white'/>\n<text x='10' y='20' font-weight='bold'>Added cost per hit, ns (log scale, 1 goroutine)</text>\n"
    );
    for (i, (c, v)) in rows.iter().enumerate() {
        let y = 35.0 + i as f64 * bar_h;
        let len = (v.max(1.0).log10() / max) * (w - left - 90.0);
        let color = if matches!(c, Config::Bpftrace | Config::Delve) {
            "#b0b0b0"
        } else if c.name().starts_with("empty") || c.per_hit_only() {
            "#8fb3d9"
        } else {
            "#2d6cb5"
        };
        s.push_str(&format!(
            "<text x='{}' y='{:.0}' text-anchor='end'>{}</text><rect x='{left}' y='{:.0}' width='{len:.1}' height='18' fill='{color}'/><text x='{:.1}' y='{:.0}'>{v:.0}</text>\n",
            left - 8.0,
            y + 14.0,
            c.label(),
            y,
            left + len + 6.0,
            y + 14.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

//! The service's cost measured inside one process: one steady open-loop load
//! at 50% (`--toggle-load`) of the untraced maximum, with Probe attached and
//! detached in turn.
//!
//! Why: two runs of the same untraced service, each in its own process,
//! land far apart here (the A/A rows of the service tables: p99 ±60%), so a
//! 5% change in p99 cannot be resolved by comparing processes. Toggling the
//! probe inside one process under one load removes everything that differs
//! between processes and runs (placement, warm-up, the host's mood for the
//! minute), and each traced window is compared with the untraced windows
//! right before and after it. The empty BPF program at the same
//! instruction is toggled too: what any uprobe there costs the service.
//! "Sham" windows follow the same schedule with no tracer: the spread of
//! their changes is what the machine's noise alone produces, the A/A
//! control of this design.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    calibrate, goals::Spread, http_target, open_loop_from, pid_of_listener, quantile, spread,
    tracer, tracer_with, Affinity, Config, Ctx, RealTime,
};

/// What runs during a window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Nothing attached, between the others.
    Off,
    /// `probe attach` on the handler's function, as in the service tables.
    Probe,
    /// The empty BPF program at the same instruction: the floor.
    Floor,
    /// Probe with a condition its kernel side rejects on every hit: the
    /// uprobe and the program's filter, no event, the reader idle.
    Filtered,
    /// Nothing attached, on the probe windows' schedule.
    Sham,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Off => "untraced",
            Kind::Sham => "untraced, sham (A/A control)",
            Kind::Probe => "probe args (--func: after stack check)",
            Kind::Floor => "empty BPF program, after stack check (emulated push)",
            Kind::Filtered => "probe, condition false in the kernel (`n < 0`)",
        }
    }
}

/// One measured window, in seconds after the load's start.
struct Phase {
    kind: Kind,
    from: f64,
    to: f64,
    /// The service's CPU time in the window.
    cpu_ns: u64,
}

/// What one window measured.
struct Window {
    kind: Kind,
    reqs: usize,
    /// Requests per second scheduled and completed in the window.
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    /// Service CPU per request, µs.
    cpu_us: f64,
}

/// The whole run.
pub(super) struct Toggled {
    rate: f64,
    /// `rate` as a fraction of the untraced maximum.
    load: f64,
    window: f64,
    windows: Vec<Window>,
    /// Every request's latency pooled per kind of window.
    pooled: Vec<Pool>,
}

/// All windows of one kind together.
struct Pool {
    kind: Kind,
    /// Latencies, ms.
    lat: Vec<f64>,
    secs: f64,
    cpu_ns: u64,
    /// The p99 of each whole second of these windows: a host stall moves
    /// the seconds it falls in, their median hardly.
    second_p99: Vec<f64>,
}

/// The service's CPU time so far: every thread's run time
/// (`/proc/PID/task/*/schedstat`, nanoseconds, unlike `stat`'s ticks).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Runs `cycles` of (off, probe, off, floor, off, filtered, off, sham)
/// windows of `window` seconds, then a last off window, under one
/// open-loop load.
pub(super) fn run(ctx: &Ctx, cycles: usize, window: f64, load: f64) -> Result<Toggled> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = cpus >= 2;
    let all: Vec<usize> = (0..cpus).collect();
    // As in the service tables: the service alone on CPU 0, the load
    // generator (this thread, real-time) and the tracer on the others.
    let _restore = Affinity::set(if pin { &all[1..] } else { &all })?;
    let _rt = if pin { Some(RealTime::set()?) } else { None };
    let max_rps = calibrate(ctx, pin)?;
    let rate = max_rps * load;
    eprintln!("  untraced maximum {max_rps:.0} req/s: load at {rate:.0} req/s");
    let (addr, mut server) = http_target(ctx, pin, false)?;
    let pid = pid_of_listener(&server);
    let stop = AtomicBool::new(false);
    let start = Instant::now() + Duration::from_millis(200);
    // Far longer than any schedule: the controller ends the load (a load
    // that ended first would leave the last windows empty).
    let horizon = 3600.0;
    let (phases, mut samples) = std::thread::scope(|s| {
        // Spawned from a real-time thread with SCHED_RESET_ON_FORK: the
        // controller (and the tracers it starts) run at normal priority.
        let ctl = s.spawn(|| {
            // Ends the load however the controller ends (a panic too).
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _stop = Stop(&stop);
            control(ctx, pid, start, cycles, window)
        });
        let (_, samples) = open_loop_from(&addr, rate, horizon, start, Some(&stop));
        (ctl.join().expect("controller thread"), samples)
    });
    let _ = server.kill();
    let _ = server.wait();
    let phases = phases?;
    if phases.iter().any(|p| p.to > horizon) {
        anyhow::bail!("the schedule outlasted the load ({horizon} s)");
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut windows = vec![];
    let mut pooled: Vec<Pool> = [
        Kind::Off,
        Kind::Sham,
        Kind::Floor,
        Kind::Filtered,
        Kind::Probe,
    ]
    .into_iter()
    .map(|kind| Pool {
        kind,
        lat: vec![],
        secs: 0.0,
        cpu_ns: 0,
        second_p99: vec![],
    })
    .collect();
    let span = |from: f64, to: f64| {
        let lo = samples.partition_point(|s| (s.0 as f64) < from);
        let hi = samples.partition_point(|s| (s.0 as f64) < to);
        samples[lo..hi]
            .iter()
            .map(|s| s.1 as f64)
            .collect::<Vec<f64>>()
    };
    for p in &phases {
        let mut lat = span(p.from, p.to);
        let reqs = lat.len();
        let pool = pooled.iter_mut().find(|x| x.kind == p.kind).unwrap();
        pool.lat.extend_from_slice(&lat);
        pool.secs += p.to - p.from;
        pool.cpu_ns += p.cpu_ns;
        let mut t = p.from;
        while t + 1.0 <= p.to {
            let mut second = span(t, t + 1.0);
            if !second.is_empty() {
                pool.second_p99.push(quantile(&mut second, 0.99));
            }
            t += 1.0;
        }
        windows.push(Window {
            kind: p.kind,
            reqs,
            rps: reqs as f64 / (p.to - p.from),
            p50: quantile(&mut lat, 0.5),
            p90: quantile(&mut lat, 0.9),
            p99: quantile(&mut lat, 0.99),
            p999: quantile(&mut lat, 0.999),
            cpu_us: p.cpu_ns as f64 / 1000.0 / reqs.max(1) as f64,
        });
    }
    Ok(Toggled {
        rate,
        load,
        window,
        windows,
        pooled,
    })
}

/// The schedule: measures each window and attaches/detaches between them.
fn control(ctx: &Ctx, pid: u32, start: Instant, cycles: usize, window: f64) -> Result<Vec<Phase>> {
    // Attaching and detaching stay out of every window (the tracer's start
    // and the uprobes' removal settle first).
    let settle = Duration::from_millis(300);
    let secs = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
    let measure = |kind: Kind, phases: &mut Vec<Phase>| {
        let (from, c0) = (Instant::now(), cpu_ns(pid));
        std::thread::sleep(Duration::from_secs_f64(window));
        phases.push(Phase {
            kind,
            from: secs(from),
            to: secs(Instant::now()),
            cpu_ns: cpu_ns(pid) - c0,
        });
    };
    // Warm-up: connections open, the service's heap and the caches settle.
    std::thread::sleep((start + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    let mut phases = vec![];
    let mut attach = Duration::from_secs(1);
    for cycle in 0..cycles {
        for kind in [Kind::Probe, Kind::Floor, Kind::Filtered, Kind::Sham] {
            measure(Kind::Off, &mut phases);
            if kind != Kind::Sham {
                let t0 = Instant::now();
                let t = match kind {
                    Kind::Probe => tracer(ctx, Config::ProbeArgs)?,
                    Kind::Filtered => tracer_with(ctx, Config::ProbeArgs, &["--cond", "n < 0"])?,
                    _ => tracer(ctx, Config::FloorEmulated)?,
                }
                .expect("a tracer");
                attach = t0.elapsed();
                std::thread::sleep(settle);
                measure(kind, &mut phases);
                t.stop();
            } else {
                // The same gap as attaching took, so both kinds of window
                // sit alike in the schedule.
                std::thread::sleep(attach + settle);
                measure(Kind::Sham, &mut phases);
            }
            std::thread::sleep(settle);
        }
        eprintln!("  cycle {} of {cycles} measured", cycle + 1);
    }
    measure(Kind::Off, &mut phases);
    Ok(phases)
}

/// Per-window changes of `kind` against the mean of the untraced windows
/// right before and after each, in percent.
fn changes(t: &Toggled, kind: Kind, f: fn(&Window) -> f64) -> Vec<f64> {
    let w = &t.windows;
    (1..w.len().saturating_sub(1))
        .filter(|&i| w[i].kind == kind && w[i - 1].kind == Kind::Off && w[i + 1].kind == Kind::Off)
        .map(|i| (f(&w[i]) / ((f(&w[i - 1]) + f(&w[i + 1])) / 2.0) - 1.0) * 100.0)
        .collect()
}

impl Toggled {
    /// The markdown section.
    pub(super) fn markdown(&mut self) -> String {
        let mut md = format!(
            "One service process under one open-loop load at {:.0} req/s ({:.0}% of the untraced maximum, the median of three closed-loop runs), the service alone on CPU 0 as above. Probe (`--func main.work`, arguments, goroutine id and a 256-byte stack window), the empty BPF program at the same instruction, and Probe with a condition its kernel side rejects on every hit (no event, the reader idle) are attached and detached in turn, with untraced windows of {:.0} s between each: Probe, empty program, filtered Probe, \"sham\" (untraced, on the traced windows' schedule), {} cycles. Each traced or sham window is compared with the untraced windows right before and after it; the sham windows' changes are what the machine's noise alone produces here.\n\n",
            self.rate,
            self.load * 100.0,
            self.window,
            self.windows.iter().filter(|w| w.kind == Kind::Sham).count(),
        );
        md.push_str("| windows | requests | req/s | p50 / p90 / p99 / p99.9 ms (pooled) | p99 ms of each second: median (quartiles) | service CPU µs per request |\n|---|---:|---:|---:|---:|---:|\n");
        for p in &mut self.pooled {
            let (m, q1, q3) = (
                quantile(&mut p.second_p99, 0.5),
                quantile(&mut p.second_p99, 0.25),
                quantile(&mut p.second_p99, 0.75),
            );
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.3} / {:.3} / {:.2} / {:.2} | {m:.2} ({q1:.2}–{q3:.2}) | {:.2} |\n",
                p.kind.name(),
                p.lat.len(),
                p.lat.len() as f64 / p.secs,
                quantile(&mut p.lat, 0.5),
                quantile(&mut p.lat, 0.9),
                quantile(&mut p.lat, 0.99),
                quantile(&mut p.lat, 0.999),
                p.cpu_ns as f64 / 1000.0 / p.lat.len().max(1) as f64,
            ));
        }
        md.push_str("\nPer window, against the untraced windows right before and after it: median change (lowest to highest).\n\n| windows | req/s | p50 | p90 | p99 | p99.9 | service CPU per request |\n|---|---:|---:|---:|---:|---:|---:|\n");
        let stats: [fn(&Window) -> f64; 6] = [
            |w| w.rps,
            |w| w.p50,
            |w| w.p90,
            |w| w.p99,
            |w| w.p999,
            |w| w.cpu_us,
        ];
        for kind in [Kind::Sham, Kind::Floor, Kind::Filtered, Kind::Probe] {
            md.push_str(&format!("| {} |", kind.name()));
            for f in stats {
                let (m, lo, hi) = spread(changes(self, kind, f));
                md.push_str(&format!(" {m:+.1}% ({lo:+.0}% to {hi:+.0}%) |"));
            }
            md.push('\n');
        }
        if let Some(off) = self.pooled.iter().find(|p| p.kind == Kind::Off) {
            md.push_str(&format!(
                "\nUntraced at this rate the service kept its CPU {:.0}% busy (open-loop requests each pay for their own wake-ups, which the closed-loop maximum amortizes), so a few percent more CPU per request lengthens its queues by more than that.\n",
                off.cpu_ns as f64 / 1e9 / off.secs * 100.0
            ));
        }
        md
    }

    /// For the goals: Probe's windows' changes in req/s and p99, and the
    /// sham windows' change in p99.
    pub(super) fn goal_changes(&self) -> (Spread, Spread, Spread) {
        (
            spread(changes(self, Kind::Probe, |w| w.rps)),
            spread(changes(self, Kind::Probe, |w| w.p99)),
            spread(changes(self, Kind::Sham, |w| w.p99)),
        )
    }

    /// Requests that completed, for a sanity check.
    pub(super) fn requests(&self) -> usize {
        self.windows.iter().map(|w| w.reqs).sum()
    }
}

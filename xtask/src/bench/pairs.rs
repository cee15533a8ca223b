//! BPF run time per hit, the programs side by side: the empty program, its
//! pieces, the hand-written minimal capture and Probe on both kernel
//! paths are all attached at once to the same instruction of one run of
//! `hot`, and `kernel.bpf_stats_enabled`'s `run_time_ns / run_cnt` of each
//! is sampled every 200 ms.
//!
//! Why: the per-hit table's time per call moves by ±10% between runs here,
//! more than the pieces it prices (a clock read, one read of target
//! memory, the lean path's savings). Every program here runs at every hit,
//! in the same state of the host, so each 200 ms sample pairs them; the
//! median of the paired differences from the empty program prices each one
//! to a few nanoseconds. The statistics' own clock reads (two per run)
//! cost every program alike and cancel in the differences. What run time
//! cannot show (the cost of an event's cache lines reaching the reader, paid
//! when the hit returns to user mode) is the per-hit table's business.

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{quantile, tracer, Config, Ctx, Tracer, PACED_RATE};

/// Attached in this order (programs at one uprobe run in attach order).
const PROGRAMS: [Config; 8] = [
    Config::FloorEmulated,
    Config::FloorClock,
    Config::FloorRead,
    Config::FloorReads,
    Config::FloorMinimal,
    Config::FloorDelivered,
    Config::ProbeArgs,
    Config::ProbeArgsGeneral,
];

/// Loaded programs named `probe_*`: id → (name, run_time_ns, run_cnt).
fn programs() -> Result<HashMap<u32, (String, u64, u64)>> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .context("bpftool prog show")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut progs = HashMap::new();
    for line in text.lines() {
        let Some((id, rest)) = line.split_once(": ") else {
            continue;
        };
        let Ok(id) = id.trim().parse::<u32>() else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let Some(name) = after("name").filter(|n| n.starts_with("probe_")) else {
            continue;
        };
        let num = |key| after(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        progs.insert(id, (name.to_owned(), num("run_time_ns"), num("run_cnt")));
    }
    Ok(progs)
}

/// Restores `kernel.bpf_stats_enabled` when the section ends.
struct StatsOn(String);

impl StatsOn {
    fn new() -> Result<Self> {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(path).context(path)?;
        std::fs::write(path, "1").context(path)?;
        Ok(Self(before.trim().to_owned()))
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

/// The section's markdown.
pub(super) fn run(ctx: &Ctx) -> Result<String> {
    let _stats = StatsOn::new()?;
    let mut tracers: Vec<Tracer> = vec![];
    let mut ids = vec![];
    for c in PROGRAMS {
        let before = programs()?;
        tracers.push(tracer(ctx, c)?.context("a tracer")?);
        // The tracer says "attached" once its program is in; its id is the
        // one program that was not there before.
        let start = Instant::now();
        let id = loop {
            let new: Vec<u32> = programs()?
                .into_keys()
                .filter(|id| !before.contains_key(id))
                .collect();
            if let [id] = new[..] {
                break id;
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{c:?}: expected one new BPF program, found {new:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        ids.push(id);
    }
    let mut hot = Command::new(&ctx.hot)
        .args(["-mode", "rate", "-rate", &PACED_RATE.to_string()])
        .args(["-duration", "20s"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("hot")?;
    // Per program, ns per run of each 200 ms sample.
    let mut samples: Vec<Vec<f64>> = vec![vec![]; ids.len()];
    let mut last: Vec<Option<(u64, u64)>> = vec![None; ids.len()];
    let mut rows = 0;
    while hot.try_wait()?.is_none() {
        let now = programs()?;
        let cur: Vec<Option<(u64, u64)>> = ids
            .iter()
            .map(|id| now.get(id).map(|p| (p.1, p.2)))
            .collect();
        // A sample counts only when every program ran (all of them fire at
        // every hit), so the columns stay paired.
        let deltas: Vec<Option<f64>> = cur
            .iter()
            .zip(&last)
            .map(|(c, l)| match (c, l) {
                (Some((t, n)), Some((t0, n0))) if n - n0 >= 1000 => {
                    Some((t - t0) as f64 / (n - n0) as f64)
                }
                _ => None,
            })
            .collect();
        if deltas.iter().all(Option::is_some) {
            for (s, d) in samples.iter_mut().zip(deltas) {
                s.push(d.unwrap());
            }
            rows += 1;
        }
        last = cur;
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tracers);
    if rows < 10 {
        bail!("only {rows} paired samples of BPF run time");
    }
    let mut md = String::from("\n### BPF run time per hit, the programs side by side\n\n");
    md.push_str(&format!("Every program below attached at once to `main.work+0x6` (after the stack check) of one run of `hot` calling it {PACED_RATE} times a second for 20 s, so each runs at every hit, in the order listed; `kernel.bpf_stats_enabled`'s run time per run sampled every 200 ms ({rows} samples). The added column is the median over the samples of each program's difference from the empty program in the same sample (quartiles in brackets): the piece of a hit each one adds, with the statistics' own clock reads and the host's drift cancelled. Run time does not include what a hit costs after the program (its event's cache lines reaching the reader on the other CPU, paid when the hit returns to user mode): the per-hit table measures that.\n\n| program | ns per run (median) | added over the empty program: median (quartiles) |\n|---|---:|---:|\n"));
    let base = samples[0].clone();
    for (c, s) in PROGRAMS.iter().zip(&samples) {
        let mut own = s.clone();
        let mut diff: Vec<f64> = s.iter().zip(&base).map(|(a, b)| a - b).collect();
        md.push_str(&format!(
            "| {} | {:.0} | {:+.0} ({:+.0} to {:+.0}) |\n",
            c.name(),
            quantile(&mut own, 0.5),
            quantile(&mut diff, 0.5),
            quantile(&mut diff, 0.25),
            quantile(&mut diff, 0.75),
        ));
    }
    // A blank line before the next section's heading.
    md.push('\n');
    Ok(md)
}

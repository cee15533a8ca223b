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
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Go release the benchmark target is built with: Debian's Delve (1.20)
/// still reads its binaries.
const GO: &str = "1.21.13";
const REPS: usize = 3;

/// A tracer running beside the target.
struct Tracer {
    child: Child,
    log: Arc<Mutex<String>>,
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
        // SAFETY: signalling our own child.
        unsafe { libc_kill(self.child.id() as i32, 2) };
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

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
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
    FloorFirstByte,
    FloorEmulated,
    ProbeFirstByte,
    ProbeArgs,
    ProbeFull,
    ProbeCond,
    Bpftrace,
    Delve,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::None => "no tracing",
            Config::FloorFirstByte => "empty BPF program, first byte (single-stepped cmp)",
            Config::FloorEmulated => "empty BPF program, after stack check (emulated push)",
            Config::ProbeFirstByte => "probe args, first byte",
            Config::ProbeArgs => "probe args (--func: after stack check)",
            Config::ProbeFull => "probe args + --stack 16 + --returns",
            Config::ProbeCond => "probe --cond matching 1%",
            Config::Bpftrace => "bpftrace printing the same args",
            Config::Delve => "dlv trace",
        }
    }
}

const CONFIGS: [Config; 9] = [
    Config::None,
    Config::FloorFirstByte,
    Config::FloorEmulated,
    Config::ProbeFirstByte,
    Config::ProbeArgs,
    Config::ProbeFull,
    Config::ProbeCond,
    Config::Bpftrace,
    Config::Delve,
];

struct Ctx {
    probe: PathBuf,
    hot: PathBuf,
}

fn tracer(ctx: &Ctx, c: Config) -> Result<Option<Tracer>> {
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
        ])
        .args(args);
        Tracer::start(cmd, "probe: attached").map(Some)
    };
    let floor = |at: &str| -> Result<Option<Tracer>> {
        let mut cmd = Command::new(&ctx.probe);
        cmd.args(["selftest", "floor", hot, at, "1h"]);
        Tracer::start(cmd, "empty program attached").map(Some)
    };
    match c {
        Config::None | Config::Delve => Ok(None),
        Config::FloorFirstByte => floor("main.work"),
        Config::FloorEmulated => floor("main.work+0x6"),
        Config::ProbeFirstByte => probe(&["--addr", "main.work"]),
        Config::ProbeArgs => probe(&["--func", "main.work"]),
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

/// One loop run: ns per call.
fn loop_run(
    ctx: &Ctx,
    c: Config,
    goroutines: usize,
    secs: f64,
) -> Result<(f64, Option<String>, (f64, f64))> {
    let t = tracer(ctx, c)?;
    let args = [
        "-mode",
        "loop",
        "-goroutines",
        &goroutines.to_string(),
        "-duration",
        &format!("{secs}s"),
    ]
    .map(String::from);
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
    let ns = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("calls ")
                .and_then(|r| r.split("ns_per_call ").nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .with_context(|| format!("no result from the target under {c:?}: {text}"))?;
    Ok((ns, log, fp))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Closed-loop maximum throughput (wrk): requests/s, p50 and p99 (ms).
fn wrk(url: &str, secs: u32) -> Result<(f64, f64, f64)> {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{secs}s"), "--latency", url])
        .output()
        .context("wrk")?;
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

/// Open-loop load at `rate` requests/s for `secs`: achieved rate and
/// latency p50/p99/p99.9 (ms) measured from each request's scheduled time,
/// so a stalled server cannot hide its delay (no coordinated omission).
fn open_loop(addr: &str, rate: f64, secs: f64) -> (f64, f64, f64, f64) {
    let total = (rate * secs) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let start = Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (next, lat, addr) = (next.clone(), lat.clone(), addr.to_owned());
            std::thread::spawn(move || {
                let mut conn: Option<TcpStream> = None;
                let mut buf = vec![0u8; 4096];
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    // Stop at the end of the run (plus a grace second): a
                    // server that falls behind leaves requests unsent, which
                    // show up as a lower achieved rate, not as a longer run.
                    if k >= total || start.elapsed().as_secs_f64() > secs + 1.0 {
                        return;
                    }
                    let due = start + interval * k as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let ok = (|| -> std::io::Result<()> {
                        if conn.is_none() {
                            let c = TcpStream::connect(&addr)?;
                            c.set_nodelay(true)?;
                            conn = Some(c);
                        }
                        let c = conn.as_mut().unwrap();
                        c.write_all(
                            format!("GET /work?n={k} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
                        )?;
                        let n = c.read(&mut buf)?;
                        if n == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                        Ok(())
                    })();
                    if ok.is_err() {
                        conn = None;
                        continue;
                    }
                    lat.lock()
                        .unwrap()
                        .push(due.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut l = lat.lock().unwrap().clone();
    let el = secs;
    l.sort_by(f64::total_cmp);
    let p = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (l.len() as f64 / el, p(0.5), p(0.99), p(0.999))
}

pub fn run(root: &Path, probe: PathBuf) -> Result<()> {
    for (pkg, bin) in [("bpftrace", "bpftrace"), ("delve", "dlv"), ("wrk", "wrk")] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {bin}"))
            .output()?
            .stdout
            .is_empty()
        {
            crate::step(&format!("installing {pkg} (Debian)"));
            crate::run(Command::new("apt-get").arg("update").arg("-qq"))?;
            crate::run(
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", pkg])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
    }
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
        "Machine: {cpus} vCPUs (nested VM), kernel {kernel}, target built with Go {GO}, {date}. Medians of {REPS} runs after a warm-up.\n\n"
    ));

    // Per-hit cost.
    crate::step("per-hit cost: a probed function in a tight loop");
    md.push_str("### Per-hit cost (`testdata/hot`, `main.work` in a tight loop)\n\n");
    md.push_str("| configuration | ns/call, 1 goroutine | added ns/hit | ns/call, 2 goroutines | added ns/hit | BPF ns/hit |\n|---|---:|---:|---:|---:|---:|\n");
    let mut added = vec![];
    let mut base = [0.0f64; 2];
    for c in CONFIGS {
        let mut cols = vec![];
        let mut bpf = String::from("–");
        for (gi, g) in [1usize, 2].into_iter().enumerate() {
            let secs = if c == Config::Delve { 1.0 } else { 2.0 };
            let _ = loop_run(&ctx, c, g, 0.5)?; // warm-up
            let mut v = vec![];
            for _ in 0..REPS {
                let (ns, log, _) = loop_run(&ctx, c, g, secs)?;
                if let Some(b) = log.as_deref().and_then(|l| {
                    l.lines()
                        .find_map(|x| x.trim().strip_prefix("BPF run time per hit: "))
                }) {
                    bpf = b.trim_end_matches(" ns").to_owned();
                }
                v.push(ns);
            }
            let m = median(&mut v);
            if c == Config::None {
                base[gi] = m;
            }
            cols.push(m);
            eprintln!("  {:<55} {g} goroutine(s): {m:.1} ns/call", c.name());
        }
        let a1 = cols[0] - base[0];
        let a2 = cols[1] - base[1];
        added.push((c, a1));
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {bpf} |\n",
            c.name(),
            cols[0],
            a1,
            cols[1],
            a2
        ));
    }
    let get = |c: Config| {
        added
            .iter()
            .find(|a| a.0 == c)
            .map(|a| a.1)
            .unwrap_or(f64::NAN)
    };
    md.push_str(&format!(
        "\nRatios (1 goroutine): probe args / empty-program floor at the same emulated point: **{:.2}×**; at the first byte: **{:.2}×**; bpftrace / probe args: **{:.1}×**; dlv trace / probe args: **{:.0}×**.\n\n",
        get(Config::ProbeArgs) / get(Config::FloorEmulated),
        get(Config::ProbeFirstByte) / get(Config::FloorFirstByte),
        get(Config::Bpftrace) / get(Config::ProbeArgs),
        get(Config::Delve) / get(Config::ProbeArgs),
    ));

    // Service overhead.
    crate::step("service overhead: the same function behind an HTTP handler");
    md.push_str("### Service overhead (`hot -mode http`, one probed call per request)\n\n");
    md.push_str("| configuration | max req/s (closed loop) | p50 / p99 ms | 50% load: req/s, p50 / p99 / p99.9 ms | 90% load: req/s, p50 / p99 / p99.9 ms | target CPU s | tracer CPU s / peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let mut max_rps = 0.0;
    for c in CONFIGS {
        // A port nobody holds (a fixed one may still be held by a server of
        // an earlier, interrupted run: wrk would then measure that server).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .to_string();
        let addr = addr.as_str();
        let url = format!("http://{addr}/work?n=1");
        let t = if c == Config::Delve {
            None
        } else {
            tracer(&ctx, c)?
        };
        let mut server = if c == Config::Delve {
            Command::new("dlv")
                .args(["trace", "--check-go-version=false", "--exec"])
                .arg(&ctx.hot)
                .args(["main.work", "--", "-mode", "http", "-http", addr])
                .current_dir(std::env::temp_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?
        } else {
            Command::new(&ctx.hot)
                .args(["-mode", "http", "-http", addr])
                .stdout(Stdio::null())
                .spawn()?
        };
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                bail!("the HTTP target did not start under {c:?}");
            }
            if let Ok(Some(st)) = server.try_wait() {
                bail!("the HTTP target exited ({st}) under {c:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let target_pid = pid_of_listener(&server);
        let cpu0 = footprint(target_pid).0;
        let (rps, p50, p99) = wrk(&url, 4)?;
        if !(rps > 0.0) {
            bail!("wrk measured no throughput under {c:?}");
        }
        if c == Config::None {
            max_rps = rps;
        }
        let half = open_loop(addr, max_rps * 0.5, 4.0);
        let ninety = open_loop(addr, max_rps * 0.9, 4.0);
        let cpu = footprint(target_pid).0 - cpu0;
        let fp = t.as_ref().map(|t| t.footprint());
        if let Some(t) = t {
            t.stop();
        }
        let _ = server.kill();
        let _ = server.wait();
        let fp = fp
            .map(|(c, m)| format!("{c:.2} / {m:.0}"))
            .unwrap_or_else(|| "–".into());
        eprintln!(
            "  {:<55} {rps:.0} req/s; 50%: p99 {:.2} ms",
            c.name(),
            half.2
        );
        md.push_str(&format!(
            "| {} | {rps:.0} | {p50:.2} / {p99:.2} | {:.0}, {:.2} / {:.2} / {:.2} | {:.0}, {:.2} / {:.2} / {:.2} | {cpu:.2} | {fp} |\n",
            c.name(),
            half.0,
            half.1,
            half.2,
            half.3,
            ninety.0,
            ninety.1,
            ninety.2,
            ninety.3
        ));
        std::thread::sleep(Duration::from_millis(300));
    }

    // Capture throughput.
    crate::step("capture throughput: offered hit rates until drops start");
    md.push_str("\n### Capture throughput (`hot -mode rate`, paced calls of `main.work`; `probe attach --format json` to /dev/null)\n\n");
    md.push_str("| offered hits/s | hits | shown | dropped (ring full) | tracer CPU % | tracer peak RSS MiB |\n|---:|---:|---:|---:|---:|---:|\n");
    let mut last_clean = None;
    let mut first_drop = None;
    for rate in [25_000u32, 50_000, 100_000, 200_000, 400_000, 800_000] {
        let r = throughput_run(&ctx, rate, 3.0)?;
        eprintln!(
            "  {rate:>7}/s offered: {} hits, {} shown, {} dropped, tracer {:.0}% CPU",
            r.hits, r.shown, r.dropped, r.cpu_pct
        );
        md.push_str(&format!(
            "| {rate} | {} | {} | {} ({:.1}%) | {:.0} | {:.0} |\n",
            r.hits,
            r.shown,
            r.dropped,
            r.drop_pct(),
            r.cpu_pct,
            r.rss
        ));
        if r.dropped == 0 && r.hits > 0 {
            last_clean = Some(rate);
        } else if first_drop.is_none() {
            first_drop = Some(rate);
        }
    }
    md.push_str(&format!(
        "\nHighest offered rate with no drops: **{}**; drops start at: **{}**. Drops are counted per probe (never hidden) and cost the target nothing: the kernel side submits without waking the reader.\n",
        last_clean.map(|r| format!("{r}/s")).unwrap_or_else(|| "none measured".into()),
        first_drop.map(|r| format!("{r}/s")).unwrap_or_else(|| "not reached".into()),
    ));

    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("latest.md"), &md)?;
    std::fs::write(dir.join("latest.svg"), svg(&added))?;
    crate::step(&format!(
        "wrote {} and latest.svg",
        dir.join("latest.md").display()
    ));
    println!("{md}");
    Ok(())
}

/// What one capture-throughput run saw.
struct Throughput {
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
fn throughput_run(ctx: &Ctx, rate: u32, secs: f64) -> Result<Throughput> {
    let t = tracer(ctx, Config::ProbeArgs)?.context("probe")?;
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
    // "  main.work: 123 hits, 120 shown, 3 dropped (ring buffer full), ..."
    let line = log
        .lines()
        .find(|l| l.trim_start().starts_with("main.work:"))
        .with_context(|| format!("no summary from probe: {log}"))?;
    let num = |what: &str| -> u64 {
        line.split(',')
            .find_map(|part| {
                let w: Vec<&str> = part.split_whitespace().collect();
                let i = w.iter().position(|x| *x == what)?;
                w.get(i.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or(0)
    };
    Ok(Throughput {
        hits: num("hits"),
        shown: num("shown"),
        dropped: num("dropped"),
        cpu_pct: (cpu1 - cpu0) / wall * 100.0,
        rss,
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
        } else if c.name().starts_with("empty") {
            "#8fb3d9"
        } else {
            "#2d6cb5"
        };
        s.push_str(&format!(
            "<text x='{}' y='{:.0}' text-anchor='end'>{}</text><rect x='{left}' y='{:.0}' width='{len:.1}' height='18' fill='{color}'/><text x='{:.1}' y='{:.0}'>{v:.0}</text>\n",
            left - 8.0,
            y + 14.0,
            c.name(),
            y,
            left + len + 6.0,
            y + 14.0
        ));
    }
    s.push_str("</svg>\n");
    s
}

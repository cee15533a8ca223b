//! Probe under load: thousands of goroutines hitting a probe at once, and a
//! minute of 100 000 offered hits a second with the tracer's memory bounded.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use probe_integration::{go_versions, probe, probe_bin, testdata};

/// Every goroutine of thousands alive at once is seen once, with its own
/// goroutine id, and every return pairs with its own entry.
#[test]
fn thousands_of_goroutines() {
    const N: usize = 5000;
    let v = go_versions().pop().unwrap();
    let bin = testdata(&v, "calls");
    let run = probe(
        &[
            "attach",
            "--func",
            "main.spawned",
            "--returns",
            "--format",
            "json",
            "--",
            bin.to_str().unwrap(),
            "-mode",
            "goroutines",
            "-count",
            &N.to_string(),
        ],
        Duration::from_secs(120),
    );
    assert!(run.status.success(), "{}", run.stderr);
    // With --format json a launched target's stdout goes to stderr.
    assert!(
        run.stderr.contains(&format!("goroutines {N} sum")),
        "{}",
        run.stderr
    );
    let mut ids = HashSet::new();
    let mut goids = HashSet::new();
    let mut returns = 0;
    for e in &run.events {
        match e["kind"].as_str().unwrap() {
            "entry" => {
                assert!(
                    ids.insert(e["args"]["id"].as_i64().unwrap()),
                    "one call per id: {e}"
                );
                assert!(
                    goids.insert(e["goid"].as_u64().unwrap()),
                    "one goroutine per call: {e}"
                );
            }
            "return" => {
                returns += 1;
                assert!(
                    e["duration_ns"].as_u64().unwrap() >= 1_000_000,
                    "it sleeps 1ms: {e}"
                );
            }
            k => panic!("unexpected kind {k}"),
        }
    }
    assert_eq!(ids.len(), N, "every goroutine's call seen: {}", run.stderr);
    assert_eq!(ids, (0..N as i64).collect::<HashSet<_>>());
    assert_eq!(
        returns, N,
        "every return paired with its entry: {}",
        run.stderr
    );
}

/// main.work's summary line ("  main.work: H hits, S shown, D dropped
/// (ring buffer full), …") and its hits, shown and dropped counts.
fn work_counts(stderr: &str) -> (&str, u64, u64, u64) {
    let summary = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("main.work:"))
        .expect("summary");
    let num = |what: &str| -> u64 {
        summary
            .split(',')
            .find_map(|p| {
                let w: Vec<&str> = p.split_whitespace().collect();
                let i = w.iter().position(|x| *x == what)?;
                w.get(i.checked_sub(1)?)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {what} in {summary}"))
    };
    (summary, num("hits"), num("shown"), num("dropped"))
}

/// `probe attach --func main.work -- hot -mode rate -rate RATE -duration
/// SECS`, with its stdout piped for the caller and its stderr collected.
fn attach_rate(rate: u64, secs: u64) -> (std::process::Child, std::thread::JoinHandle<String>) {
    let v = go_versions().pop().unwrap();
    let bin = testdata(&v, "hot");
    let mut child = Command::new(probe_bin())
        .args(["attach", "--func", "main.work", "--format", "json", "--"])
        .arg(&bin)
        .args([
            "-mode",
            "rate",
            "-rate",
            &rate.to_string(),
            "-duration",
            &format!("{secs}s"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe");
    let err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    (child, stderr)
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// 100 000 hits a second offered for a minute: the tracer keeps up or drops
/// and counts, and its resident memory stays flat (bounded queues, no
/// per-event growth).
#[test]
fn a_minute_at_100k_hits_a_second_in_bounded_memory() {
    const SECS: u64 = 60;
    const RATE: u64 = 100_000;
    let (mut child, stderr) = attach_rate(RATE, SECS);
    let pid = child.id();
    // Read stdout as a consumer would (a reader that stops would stall the
    // tracer's writes, which is a different test).
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(out).lines().map_while(Result::ok).count() as u64
    });
    // RSS once a second; the first 10 s are warm-up (ring buffer mapped,
    // DWARF loaded, allocator arenas settled).
    let start = Instant::now();
    let mut warm_max = 0u64;
    let mut late_max = 0u64;
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(SECS + 60) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Some(kib) = rss_kib(pid) {
            if start.elapsed() < Duration::from_secs(10) {
                warm_max = warm_max.max(kib);
            } else {
                late_max = late_max.max(kib);
                samples += 1;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let shown = reader.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        samples >= SECS as usize / 2,
        "sampled the tracer through the minute ({samples} samples): {stderr}"
    );
    let (summary, hits, shown_n, dropped) = work_counts(&stderr);
    assert!(
        hits >= RATE * SECS * 9 / 10,
        "the target ran at the offered rate: {summary}"
    );
    assert_eq!(
        shown_n, shown,
        "every event counted as shown was printed: {summary}"
    );
    assert_eq!(
        shown_n + dropped,
        hits,
        "every hit is shown or counted as dropped: {summary}"
    );
    // Bounded: after warm-up, memory does not grow with the number of
    // events (6 million here); allow allocator noise.
    assert!(
        late_max <= warm_max + 32 * 1024,
        "tracer RSS grew from {warm_max} KiB (warm-up) to {late_max} KiB under load: {summary}"
    );
    assert!(
        late_max < 512 * 1024,
        "tracer RSS {late_max} KiB: {summary}"
    );
    eprintln!("tracer RSS: {warm_max} KiB warm, {late_max} KiB max after; {summary}");
}

/// A reader that stops reading (a stalled pipe) saturates the ring buffer:
/// the target keeps its pace, and every hit the tracer could not take is
/// counted as dropped for its probe and reported.
#[test]
fn a_saturated_ring_buffer_drops_and_counts_without_slowing_the_target() {
    const SECS: u64 = 6;
    const RATE: u64 = 100_000;
    let (mut child, stderr) = attach_rate(RATE, SECS);
    let out = child.stdout.take().unwrap();
    // Nobody reads the events for the whole run: the pipe fills, the
    // tracer blocks writing, the ring buffer fills behind it.
    std::thread::sleep(Duration::from_secs(SECS + 2));
    let shown = BufReader::new(out).lines().map_while(Result::ok).count() as u64;
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{stderr}");
    let (summary, hits, shown_n, dropped) = work_counts(&stderr);
    assert!(
        hits >= RATE * SECS * 9 / 10,
        "the target kept its pace: {summary}"
    );
    assert!(
        dropped > 0,
        "a stalled reader must overflow the ring: {summary}"
    );
    assert_eq!(shown_n, shown, "{summary}");
    assert_eq!(
        shown_n + dropped,
        hits,
        "every hit is shown or counted as dropped: {summary}"
    );
}

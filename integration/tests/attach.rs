//! `probe attach` end to end: real uprobes on real Go binaries (Go 1.21 and
//! 1.27), every decoded value checked against what the program passed.

use std::time::Duration;

use probe_integration::{
    finish, go_versions, hit_number, leftover_programs, probe, probe_programs, testdata,
    PrivateCopy, Target,
};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

/// Checks one `main.(*Store).Put` event against hit N's arguments.
fn check_put(ev: &Value, pid: u32) {
    let n = hit_number(ev);
    assert_eq!(ev["v"], 1);
    assert_eq!(ev["kind"], "entry");
    assert_eq!(ev["probe"], "main.(*Store).Put");
    assert_eq!(ev["function"], "main.(*Store).Put");
    assert!(
        ev["file"]
            .as_str()
            .unwrap()
            .ends_with("/testdata/store/main.go"),
        "{ev}"
    );
    assert_eq!(ev["line"], 45);
    assert!(ev["pc"].as_str().unwrap().starts_with("0x"));
    assert_eq!(ev["pid"], pid);
    assert!(ev["tid"].as_u64().unwrap() > 0);
    assert!(
        ev["goid"].as_u64().unwrap() >= 1,
        "goroutine id read through g: {ev}"
    );
    let time = ev["time"].as_str().unwrap();
    assert!(
        time.len() == 30 && time.ends_with('Z') && time.starts_with("20"),
        "{time}"
    );
    let a = &ev["args"];
    assert_eq!(a["key"], format!("k{n}"));
    assert_eq!(
        a["val"],
        json!([n % 256, (n + 1) % 256, (n + 2) % 256]),
        "{ev}"
    );
    assert_eq!(
        a["ttl"],
        json!(n * 1_000_000_000),
        "time.Duration as nanoseconds: {ev}"
    );
    let s = &a["s"];
    assert_eq!(
        s["name"], "main-store",
        "string field behind the receiver pointer: {ev}"
    );
    assert_eq!(s["shard"], 7);
    assert_eq!(s["puts"], n);
    assert_eq!(s["ratio"].as_f64().unwrap(), n as f64 / 2.0);
    assert_eq!(s["ready"], n.is_multiple_of(2));
    assert_eq!(s["level"], 3);
    // The map holds k0..k<N-1> (the program starts over after 1000 keys):
    // every entry captured is right, and a cut map says its real length.
    let data = &s["data"];
    let (entries, len) = match data.get("@truncated") {
        Some(m) => (m.as_object().unwrap(), data["@len"].as_u64().unwrap()),
        None => (
            data.as_object().unwrap_or_else(|| panic!("map: {ev}")),
            data.as_object().unwrap().len() as u64,
        ),
    };
    assert!(
        len <= n.min(1000) && (n > 1000 || len == n),
        "map length {len} at hit {n}: {ev}"
    );
    assert!(!entries.is_empty() || n == 0);
    for (k, v) in entries {
        if v.get("@unavailable").is_some() || k.starts_with("@unavailable#") {
            continue; // cut by the byte budget, and says so
        }
        let m: u64 = k.trim_start_matches('k').parse().unwrap();
        assert!(m < n, "{k} at hit {n}");
        let want = [m % 256, (m + 1) % 256, (m + 2) % 256];
        match v.get("@truncated") {
            // Cut by the byte budget: a correct prefix, with the real length.
            Some(part) => {
                let part = part.as_array().unwrap();
                assert_eq!(v["@len"], 3);
                assert_eq!(
                    part,
                    &want[..part.len()]
                        .iter()
                        .map(|x| json!(x))
                        .collect::<Vec<_>>(),
                    "{k}: {ev}"
                );
            }
            None => assert_eq!(v, &json!(want), "{k}: {ev}"),
        }
    }
}

#[test]
fn put_is_decoded_on_every_go_version() {
    for v in go_versions() {
        let target = Target::store(&v, &["-interval", "20ms"]);
        let pid = target.pid().to_string();
        let run = probe(
            &[
                "attach",
                "--pid",
                &pid,
                "--func",
                "main.(*Store).Put",
                "--format",
                "json",
                "--max-hits",
                "3",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert_eq!(
            run.events.len(),
            3,
            "go{v}: exactly --max-hits events: {}",
            run.stdout
        );
        for ev in &run.events {
            check_put(ev, target.pid());
        }
        // Consecutive calls: each hit seen once (the probe sits after the stack check).
        let ns: Vec<u64> = run.events.iter().map(hit_number).collect();
        assert!(ns.windows(2).all(|w| w[1] == w[0] + 1), "go{v}: {ns:?}");
        assert!(
            run.stderr.contains("reached --max-hits") && run.stderr.contains("3 shown"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn every_basic_kind_is_decoded_including_stack_arguments() {
    for v in go_versions() {
        let target = Target::store(&v, &["-interval", "10ms"]);
        let pid = target.pid().to_string();
        let run = probe(
            &[
                "attach",
                "--pid",
                &pid,
                "--func",
                "main.kinds",
                "--format",
                "json",
                "--max-hits",
                "4",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert_eq!(run.events.len(), 4);
        for ev in &run.events {
            let n = hit_number(ev) as i64;
            let a = &ev["args"];
            assert_eq!(a["a"], n % 100);
            assert_eq!(a["b"], -n as i16);
            assert_eq!(a["c"], n * 3);
            assert_eq!(a["d"], n << 33);
            assert_eq!(a["e"], n as u8);
            assert_eq!(a["f"], n as u16);
            assert_eq!(a["g"], n * 5);
            assert_eq!(a["h"], (n as u64) << 40);
            assert_eq!(a["i"], -n * 7);
            // From here on the integer registers are used up: stack arguments.
            assert_eq!(a["j"], n * 11, "go{v}: {ev}");
            assert_eq!(a["k"], n * 13);
            assert_eq!(a["ok"], n % 2 == 1);
            assert_eq!(
                a["name"],
                format!("name-{n}"),
                "go{v}: string passed on the stack: {ev}"
            );
            // Float arguments travel in XMM registers, which a uprobe cannot read.
            assert!(
                a["f32"]["@unavailable"].as_str().unwrap().contains("XMM0"),
                "{ev}"
            );
            assert!(
                a["f64"]["@unavailable"].as_str().unwrap().contains("XMM1"),
                "{ev}"
            );
        }
    }
}

#[test]
fn stack_window_shows_the_raw_stack_at_the_hit() {
    let v = &go_versions()[0];
    let target = Target::store(v, &["-interval", "10ms"]);
    let pid = target.pid().to_string();
    let run = probe(
        &[
            "attach",
            "--pid",
            &pid,
            "--func",
            "main.kinds",
            "--stack",
            "2",
            "--stack-window",
            "64",
            "--format",
            "json",
            "--max-hits",
            "3",
        ],
        T,
    );
    assert!(run.status.success(), "go{v}: {}", run.stderr);
    assert_eq!(run.events.len(), 3, "{}", run.stdout);
    for ev in &run.events {
        let w = &ev["stack_window"];
        let hex = w["bytes"]
            .as_str()
            .unwrap_or_else(|| panic!("no window: {ev}"));
        assert_eq!(hex.len(), 128, "64 bytes asked for: {ev}");
        let word = |i: usize| {
            u64::from_str_radix(&hex[i * 16..i * 16 + 16], 16)
                .unwrap()
                .swap_bytes()
        };
        let sp = w["sp"].as_str().and_then(|s| s.strip_prefix("0x")).unwrap();
        assert!(u64::from_str_radix(sp, 16).unwrap() > 0, "{ev}");
        // At the entry the return address is on top, then the arguments
        // Go's ABI passes on the stack (j and k: the integer registers ran out).
        let ret = ev["stack"][1]["pc"].as_str().unwrap();
        assert_eq!(format!("{:#x}", word(0)), ret, "{ev}");
        assert_eq!(word(1) as i64, ev["args"]["j"].as_i64().unwrap(), "{ev}");
        assert_eq!(word(2) as i64, ev["args"]["k"].as_i64().unwrap(), "{ev}");
    }
}

#[test]
fn launched_command_is_traced_from_its_first_call() {
    let v = go_versions().pop().unwrap();
    let store = testdata(&v, "store");
    let run = probe(
        &[
            "attach",
            "--func",
            "main.kinds",
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--max-hits",
            "4",
            "--",
        ],
        T,
    );
    // (no command given: must be a usage error, not a hang)
    assert!(!run.status.success());
    let run = probe(
        &[
            "attach",
            "--func",
            "main.(*Store).Put",
            "--func",
            "main.kinds",
            "--format",
            "json",
            "--max-hits",
            "4",
            "--",
            store.to_str().unwrap(),
            "-interval",
            "1ms",
            "-count",
            "100000",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let first: Vec<(String, u64)> = run
        .events
        .iter()
        .map(|e| (e["probe"].as_str().unwrap().to_owned(), hit_number(e)))
        .collect();
    assert_eq!(
        first,
        [
            ("main.(*Store).Put".into(), 0),
            ("main.kinds".into(), 0),
            ("main.(*Store).Put".into(), 1),
            ("main.kinds".into(), 1)
        ],
        "attached before the program ran its first call"
    );
    let pid = run.events[0]["pid"].as_u64().unwrap() as u32;
    check_put(&run.events[0], pid);
    // The target's own stdout went to stderr, keeping stdout pure JSON.
    assert!(
        run.stdout.lines().all(|l| l.starts_with('{')),
        "{}",
        run.stdout
    );
}

#[test]
fn binary_target_traces_every_process_running_it() {
    let v = go_versions().remove(0);
    let a = Target::store(&v, &["-interval", "5ms"]);
    let b = Target::store(&v, &["-interval", "5ms"]);
    let bin = testdata(&v, "store");
    let run = probe(
        &[
            "attach",
            "--binary",
            bin.to_str().unwrap(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--max-hits",
            "40",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let pids = run.pids();
    // Both of ours (other tests may run the same binary meanwhile: also traced, rightly).
    assert!(
        pids.contains(&(a.pid() as u64)) && pids.contains(&(b.pid() as u64)),
        "{pids:?} vs {} {}",
        a.pid(),
        b.pid()
    );
    for ev in &run.events {
        check_put(ev, ev["pid"].as_u64().unwrap() as u32);
    }
}

#[test]
fn target_is_never_paused_while_traced() {
    for v in go_versions() {
        // 2 ms between calls: a debugger that stopped the process at each hit
        // (as breakpoint tracers do) would stretch the gaps far beyond that.
        let target = Target::store(&v, &["-interval", "2ms"]);
        target.wait_ticks(50, Duration::from_secs(20));
        let before = target.ticks.lock().unwrap().len();
        let pid = target.pid().to_string();
        let run = probe(
            &[
                "attach",
                "--pid",
                &pid,
                "--func",
                "main.(*Store).Put",
                "--func",
                "main.kinds",
                "--format",
                "json",
                "--duration",
                "3s",
            ],
            T,
        );
        assert!(run.status.success(), "{}", run.stderr);
        let ticks = target.ticks.lock().unwrap().clone();
        let during: Vec<(u64, i128)> = ticks[before..].to_vec();
        let traced: std::collections::BTreeSet<u64> = run.events.iter().map(hit_number).collect();
        // Every call made while attached was seen, and the program kept its pace.
        assert!(
            traced.len() >= 100,
            "go{v}: only {} calls traced in 3s",
            traced.len()
        );
        let (lo, hi) = (*traced.first().unwrap(), *traced.last().unwrap());
        assert_eq!(
            traced.len() as u64,
            hi - lo + 1,
            "go{v}: no call between the first and last traced hit was missed"
        );
        let gaps: Vec<i128> = during.windows(2).map(|w| w[1].1 - w[0].1).collect();
        let max_gap_ms = gaps.iter().max().copied().unwrap_or(0) / 1_000_000;
        // Generous bound for noisy nested VMs; a paused target shows seconds.
        assert!(
            max_gap_ms < 500,
            "go{v}: the target stalled {max_gap_ms} ms while traced"
        );
        let summary = &run.stderr;
        assert!(
            summary.contains("reached --duration") && summary.contains("0 dropped"),
            "{summary}"
        );
    }
}

#[test]
fn target_exit_ends_the_session_with_a_summary() {
    let v = go_versions().pop().unwrap();
    // Long enough to outlive attaching on a loaded machine.
    let target = Target::store(&v, &["-interval", "10ms", "-count", "300"]);
    let pid = target.pid().to_string();
    let before = probe_programs();
    let run = probe(
        &[
            "attach",
            "--pid",
            &pid,
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
        ],
        T,
    );
    // A --pid target is not our child: its own exit code is unknown, and
    // probe says "the target went away" with exit code 3.
    let left = leftover_programs(&before);
    assert!(
        left.is_empty(),
        "BPF programs {left:?} left loaded after the target exited"
    );
    assert_eq!(run.status.code(), Some(3), "{}", run.stderr);
    assert!(run.stderr.contains("the target exited"), "{}", run.stderr);
    assert!(!run.events.is_empty());
    let last = run.events.last().unwrap();
    assert_eq!(
        hit_number(last),
        299,
        "calls up to the very last are delivered"
    );
}

#[test]
fn sigint_detaches_cleanly_with_a_summary() {
    let v = go_versions().pop().unwrap();
    let target = Target::store(&v, &["-interval", "5ms"]);
    let child = std::process::Command::new(probe_integration::probe_bin())
        .args([
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let run = finish(child, T);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(!run.events.is_empty());
    // The target outlives the tracer, still running.
    let before = target.ticks.lock().unwrap().len();
    target.wait_ticks(before + 5, Duration::from_secs(10));
}

#[test]
fn pretty_output_reads_like_go() {
    let v = go_versions().pop().unwrap();
    let target = Target::store(&v, &["-interval", "10ms"]);
    let pid = target.pid().to_string();
    let run = probe(
        &[
            "attach",
            "--pid",
            &pid,
            "--func",
            "main.(*Store).Put",
            "--format",
            "pretty",
            "--max-hits",
            "2",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stdout.contains("main.(*Store).Put main.go:45"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("    s = &{name:\"main-store\" shard:7"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("    ttl = ") && run.stdout.contains("s\n"),
        "durations in Go's notation: {}",
        run.stdout
    );
}

#[test]
fn a_launched_command_exit_status_is_probes_exit_status() {
    let v = go_versions().pop().unwrap();
    let bin = testdata(&v, "calls");
    let bin = bin.to_str().unwrap();
    // Go's flag package exits with status 2 on an unknown flag.
    let run = probe(
        &[
            "attach",
            "--func",
            "main.divide",
            "--format",
            "json",
            "--",
            bin,
            "-no-such-flag",
        ],
        T,
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("the target exited, exit status 2"),
        "{}",
        run.stderr
    );
}

/// Several processes of one binary by pid: one attachment to the file, the
/// kernel filters by pid. Listed processes are all seen; another process
/// running the same binary is not (not even counted as a hit).
#[test]
fn several_pids_of_one_binary_are_filtered_in_the_kernel() {
    let v = go_versions().pop().unwrap();
    let traced: Vec<Target> = (0..3)
        .map(|_| Target::store(&v, &["-interval", "5ms"]))
        .collect();
    let other = Target::store(&v, &["-interval", "5ms"]);
    let pids: Vec<String> = traced.iter().map(|t| t.pid().to_string()).collect();
    let list = pids.join(",");
    let run = probe(
        &[
            "attach",
            "--pid",
            &list,
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--duration",
            "2s",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("3 processes, filtered by pid in the kernel"),
        "{}",
        run.stderr
    );
    let seen = run.pids();
    for t in &traced {
        assert!(
            seen.contains(&(t.pid() as u64)),
            "pid {} traced: {seen:?}",
            t.pid()
        );
    }
    assert!(
        !seen.contains(&(other.pid() as u64)),
        "pid {} is not in --pid: {seen:?}",
        other.pid()
    );
    // Hits count only the listed processes: every hit was shown.
    let line = run
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("main.(*Store).Put:"))
        .unwrap();
    let hits: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(hits, run.events.len() as u64, "{line}");

    // Processes of different binaries cannot share one attach.
    let values = Target::store(&go_versions()[0], &["-interval", "5ms"]);
    if go_versions()[0] != v {
        let mixed = format!("{},{}", traced[0].pid(), values.pid());
        let run = probe(
            &["attach", "--pid", &mixed, "--func", "main.(*Store).Put"],
            T,
        );
        assert_eq!(run.status.code(), Some(1));
        assert!(
            run.stderr.contains("run different executables"),
            "{}",
            run.stderr
        );
    }
}

/// --follow: when the traced process exits, the next process running the
/// same binary is found and traced, with a summary for each.
#[test]
fn follow_attaches_to_the_next_process_of_the_binary() {
    let v = go_versions().pop().unwrap();
    // A private copy: other tests run the same testdata binaries meanwhile,
    // and --follow would rightly pick up one of their processes.
    let copy = PrivateCopy::new(&v, "store", "follow");
    let start = |args: &[&str]| copy.start(args);
    let mut first = start(&["-interval", "10ms", "-count", "400"]);
    let pid1 = first.id();
    let p = pid1.to_string();
    let tracer = std::thread::spawn(move || {
        probe(
            &[
                "attach",
                "--pid",
                &p,
                "--func",
                "main.(*Store).Put",
                "--follow",
                "--format",
                "json",
                "--duration",
                "12s",
            ],
            T,
        )
    });
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut second = start(&["-interval", "10ms"]);
    let run = tracer.join().unwrap();
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--follow: waiting for a new process running"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("reached --duration"), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("probe: attached").count(),
        2,
        "{}",
        run.stderr
    );
    let pids = run.pids();
    assert!(
        pids.contains(&(pid1 as u64)) && pids.contains(&(second.id() as u64)),
        "both processes traced: {pids:?}\n{}",
        run.stderr
    );
}

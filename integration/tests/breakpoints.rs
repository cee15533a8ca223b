//! Breakpoints beyond function entry on Go 1.21 and 1.27 (and 1.24): return
//! values and durations, stack growth under --returns and --stack,
//! conditions (kernel and userspace), --rate, loops.

use std::time::Duration;

use probe_integration::{go_versions, probe, source_line, testdata};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(120);

fn calls(v: &str) -> String {
    testdata(v, "calls").to_str().unwrap().to_owned()
}

#[test]
fn returns_report_named_results_errors_and_durations() {
    for v in go_versions() {
        let bin = calls(&v);
        let run = probe(
            &[
                "attach",
                "--func",
                "main.divide",
                "--func",
                "main.sleepy",
                "--returns",
                "--format",
                "json",
                "--",
                &bin,
                "-count",
                "30",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(
            run.stderr.contains("the target exited, exit status 0"),
            "{}",
            run.stderr
        );
        let (mut entries, mut returns, mut sleeps) = (0, 0, 0);
        let mut last_n: Option<i64> = None;
        for e in &run.events {
            match (e["function"].as_str().unwrap(), e["kind"].as_str().unwrap()) {
                ("main.divide", "entry") => {
                    entries += 1;
                    let (a, b) = (
                        e["args"]["a"].as_i64().unwrap(),
                        e["args"]["b"].as_i64().unwrap(),
                    );
                    assert_eq!(a % 6, 0);
                    last_n = Some(a / 6);
                    assert_eq!(b, (a / 6) % 3);
                }
                ("main.divide", "return") => {
                    returns += 1;
                    let n = last_n.take().expect("a return follows its entry");
                    let r = &e["returns"];
                    if n % 3 == 0 {
                        assert_eq!(r["q"], 0);
                        assert_eq!(
                            r["err"],
                            json!({"type": "*errors.errorString", "value": {"s": "division by zero"}}),
                            "go{v}: {e}"
                        );
                    } else {
                        assert_eq!(r["q"], (n * 6) / (n % 3), "go{v}: {e}");
                        assert_eq!(r["err"], Value::Null);
                    }
                    assert!(e["duration_ns"].as_u64().is_some(), "{e}");
                }
                ("main.sleepy", "return") => {
                    sleeps += 1;
                    assert!(
                        e["duration_ns"].as_u64().unwrap() >= 10_000_000,
                        "go{v}: slept 10ms: {e}"
                    );
                    assert!(e["returns"]["~r0"].as_i64().unwrap() % 20 == 0, "{e}");
                }
                ("main.sleepy", "entry") => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((entries, returns, sleeps), (30, 30, 3), "go{v}");
    }
}

#[test]
fn recursion_that_grows_stacks_is_traced_without_harm() {
    for v in go_versions() {
        let bin = calls(&v);
        // 16 goroutines × 6 calls × ~110 levels of 256-byte frames: the
        // runtime copies goroutine stacks while calls are in flight.
        let run = probe(
            &[
                "attach",
                "--func",
                "main.recurse",
                "--returns",
                "--stack",
                "32",
                "--max-bytes",
                "1024",
                "--cpu-budget",
                "200",
                "--format",
                "json",
                "--",
                &bin,
                "-mode",
                "recurse",
                "-count",
                "6",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(
            run.stderr.contains("recurse ok"),
            "go{v}: the target checked its own results: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("exit status 0"),
            "go{v}: {}",
            run.stderr
        );
        let entries: Vec<&Value> = run.events.iter().filter(|e| e["kind"] == "entry").collect();
        let returns: Vec<&Value> = run
            .events
            .iter()
            .filter(|e| e["kind"] == "return")
            .collect();
        let expected: usize = (0..16).map(|g| 6 * (100 + g + 1)).sum();
        // Every call is seen once, and every event is shown or counted as
        // dropped (a burst this size can outrun the ring buffer).
        for (kind, shown) in [
            ("main.recurse:", entries.len()),
            ("main.recurse returns:", returns.len()),
        ] {
            let line = run
                .stderr
                .lines()
                .find(|l| l.trim_start().starts_with(kind))
                .unwrap();
            let num = |what: &str| -> usize {
                line.split(", ")
                    .find(|p| p.contains(what))
                    .unwrap()
                    .split_whitespace()
                    .rev()
                    .find_map(|w| w.parse().ok())
                    .unwrap()
            };
            let hits: usize = line
                .split_whitespace()
                .nth(kind.split(' ').count())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(hits, expected, "go{v}: {line}");
            assert_eq!(
                shown + num("dropped (ring buffer full)"),
                expected,
                "go{v}: {line}"
            );
        }
        for r in &returns {
            let got = r["returns"]["~r0"].as_i64().unwrap();
            assert!((0..=2 * 115).contains(&got), "{r}");
            assert!(r["duration_ns"].as_u64().is_some());
        }
        for e in entries.iter().take(200) {
            let st = e["stack"].as_array().unwrap();
            assert_eq!(st[0]["function"], "main.recurse");
            assert!(st.len() <= 32 && st.len() >= 2, "{e}");
            assert!(
                st.iter().all(|f| f["function"] != "?"),
                "every frame symbolized: {e}"
            );
        }
    }
}

#[test]
fn condition_selects_exactly_the_matching_hits() {
    for v in go_versions() {
        let bin = calls(&v);
        for (cond, want) in [
            // Kernel-side terms (name == "odd") and a userspace-only term.
            (
                "n % 7 == 3 && name == \"odd\"",
                (0..2000).filter(|n| n % 7 == 3 && n % 2 == 1).count(),
            ),
            // Entirely in the kernel.
            ("n >= 1990 && name != \"odd\"", 5),
            // Entirely in userspace.
            ("len(name) == 4 || n * 2 == 10", 1001),
        ] {
            let run = probe(
                &[
                    "attach",
                    "--func",
                    "main.filter",
                    "--cond",
                    cond,
                    "--format",
                    "json",
                    "--",
                    &bin,
                    "-mode",
                    "filter",
                    "-count",
                    "2000",
                ],
                T,
            );
            assert!(run.status.success(), "go{v}: {}", run.stderr);
            assert!(run.stderr.contains("filter calls 2000"));
            assert_eq!(run.events.len(), want, "go{v}: {cond}");
        }
        let run = probe(
            &[
                "attach",
                "--func",
                "main.filter",
                "--cond",
                "n > 3 && nmae == \"odd\"",
                "--",
                &bin,
                "-mode",
                "filter",
            ],
            T,
        );
        assert!(!run.status.success());
        assert!(
            run.stderr.contains("column 10")
                && run.stderr.contains("no argument or local named \"nmae\""),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("attached"),
            "nothing attached: {}",
            run.stderr
        );
    }
}

#[test]
fn rate_limit_captures_about_the_rate_and_counts_the_rest() {
    let v = go_versions().pop().unwrap();
    let bin = calls(&v);
    // ~10 000 calls a second for ~3 seconds.
    let run = probe(
        &[
            "attach",
            "--func",
            "main.hot",
            "--rate",
            "100/s",
            "--cpu-budget",
            "200",
            "--format",
            "json",
            "--",
            &bin,
            "-mode",
            "rate",
            "-count",
            "30000",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    let shown = run.events.len();
    // One second's burst, then 100 a second.
    assert!(
        (150..=600).contains(&shown),
        "{shown} events captured:\n{}",
        run.stderr
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("main.hot:"))
        .unwrap();
    let hits: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let limited: usize = line
        .split(", ")
        .find(|p| p.contains("dropped by --rate"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(hits, 30000, "{line}");
    assert_eq!(shown + limited, hits, "nothing lost silently: {line}");
}

#[test]
fn line_in_a_loop_shows_each_iterations_locals() {
    for v in go_versions() {
        let bin = calls(&v);
        let spec = format!(
            "calls/main.go:{}",
            source_line("calls/main.go", "s += sq(i)")
        );
        let run = probe(
            &[
                "attach",
                "--line",
                &spec,
                "--capture",
                "args,locals",
                "--format",
                "json",
                "--max-hits",
                "10",
                "--",
                &bin,
                "-mode",
                "loop",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert_eq!(run.events.len(), 10);
        for (k, e) in run.events.iter().enumerate() {
            let i = (k % 5) as i64;
            let l = &e["locals"];
            assert_eq!(l["i"], i, "go{v}: iteration {k}: {e}");
            assert_eq!(l["s"], (0..i).map(|x| x * x).sum::<i64>(), "go{v}: {e}");
            assert_eq!(e["args"]["n"], 5);
        }
    }
}

#[test]
fn inlined_function_is_traced_through_its_copies() {
    for v in go_versions() {
        let bin = calls(&v);
        let run = probe(
            &[
                "attach",
                "--func",
                "main.bump",
                "--format",
                "json",
                "--",
                &bin,
                "-mode",
                "inline",
                "-count",
                "20",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        // bump has no out-of-line copy: both call sites in useBump are probed.
        let mut by_line: std::collections::BTreeMap<u64, Vec<&Value>> = Default::default();
        for e in &run.events {
            assert_eq!(e["function"], "main.bump");
            assert_eq!(e["inlined"]["caller"], "main.useBump", "{e}");
            assert!(
                e["file"]
                    .as_str()
                    .unwrap()
                    .ends_with("testdata/calls/main.go"),
                "{e}"
            );
            by_line
                .entry(e["inlined"]["line"].as_u64().unwrap())
                .or_default()
                .push(e);
        }
        let calls = [
            source_line("calls/main.go", "a := bump(n)"),
            source_line("calls/main.go", "b := bump(2 * n)"),
        ];
        assert_eq!(by_line.keys().copied().collect::<Vec<_>>(), calls, "go{v}");
        for (line, evs) in &by_line {
            assert_eq!(evs.len(), 20, "go{v}: line {line}: one hit per call");
        }
        // Where DWARF locates the argument, it is right (bump(n) at line 69).
        for (n, e) in by_line[&calls[0]].iter().enumerate() {
            let by = &e["args"]["by"];
            assert!(
                by == &json!(n) || by.get("@unavailable").is_some(),
                "go{v}: {e}"
            );
        }
    }
}

#[test]
fn address_breakpoints_fire_at_the_pc_with_or_without_dwarf() {
    for v in go_versions() {
        let store = testdata(&v, "store");
        let store = store.to_str().unwrap();
        let by_sym = probe(
            &[
                "attach",
                "--addr",
                "main.(*Store).Put+0x4",
                "--format",
                "json",
                "--max-hits",
                "2",
                "--",
                store,
                "-interval",
                "5ms",
            ],
            T,
        );
        assert!(by_sym.status.success(), "go{v}: {}", by_sym.stderr);
        let e = &by_sym.events[0];
        assert_eq!(e["kind"], "addr");
        assert_eq!(e["function"], "main.(*Store).Put");
        let pc = e["pc"].as_str().unwrap().to_owned();
        // The same PC given as a number is the same breakpoint.
        let by_pc = probe(
            &[
                "attach",
                "--addr",
                &pc,
                "--format",
                "json",
                "--max-hits",
                "2",
                "--",
                store,
                "-interval",
                "5ms",
            ],
            T,
        );
        assert!(by_pc.status.success(), "go{v}: {}", by_pc.stderr);
        assert_eq!(by_pc.events[0]["pc"], pc.as_str());
        assert_eq!(
            by_pc.events[1]["args"]["key"], "k1",
            "go{v}: DWARF variables at the PC: {}",
            by_pc.events[1]
        );
        // Without DWARF: the symbol table still resolves it; raw registers.
        let nodwarf = testdata(&v, "store-nodwarf");
        let raw = probe(
            &[
                "attach",
                "--addr",
                "main.(*Store).Put+0x4",
                "--format",
                "json",
                "--max-hits",
                "3",
                "--",
                nodwarf.to_str().unwrap(),
                "-interval",
                "5ms",
            ],
            T,
        );
        assert!(raw.status.success(), "go{v}: {}", raw.stderr);
        for (n, e) in raw.events.iter().enumerate() {
            assert_eq!(e["pc"], pc.as_str(), "go{v}: same code in both builds");
            let reg = |r: &str| {
                u64::from_str_radix(e["regs"][r].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap()
            };
            // The register ABI: key's length in RCX, ttl (n seconds) in R9.
            assert_eq!(reg("rcx"), format!("k{n}").len() as u64, "go{v}: {e}");
            assert_eq!(reg("r9"), n as u64 * 1_000_000_000, "go{v}: {e}");
        }
    }
}

#[test]
fn cpu_budget_suspends_probes_and_says_so() {
    let v = go_versions().pop().unwrap();
    let bin = calls(&v);
    let run = probe(
        &[
            "attach",
            "--func",
            "main.hot",
            "--cpu-budget",
            "0.01",
            "--format",
            "json",
            "--",
            &bin,
            "-mode",
            "rate",
            "-count",
            "20000",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("probes suspended") && run.stderr.contains("--cpu-budget of 0.01%"),
        "{}",
        run.stderr
    );
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("main.hot:"))
        .unwrap();
    let hits: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let suspended: usize = line
        .split(", ")
        .find(|p| p.contains("while suspended"))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(hits, 20000, "{line}");
    assert!(suspended > 0);
    assert_eq!(
        run.events.len() + suspended,
        hits,
        "nothing lost silently: {line}"
    );
    assert!(
        run.stderr.contains("rate calls 20000"),
        "the target ran to its end"
    );
}

#[test]
fn dry_run_explains_and_attaches_nothing() {
    let v = go_versions().pop().unwrap();
    let bin = calls(&v);
    let run = probe(
        &[
            "attach",
            "--binary",
            &bin,
            "--func",
            "main.filter",
            "--returns",
            "--cond",
            "n > 3 && name == \"odd\"",
            "--dry-run",
        ],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    for want in [
        "[entry] main.filter",
        "[return] main.filter",
        "arg n int: Reg(0)",
        "arg name string: Reg(3) + Reg(2)",
        "in the kernel: (n > 3) && (name == \"odd\")",
        "result ~r0 int",
    ] {
        assert!(
            run.stdout.contains(want),
            "{want:?} missing from:\n{}",
            run.stdout
        );
    }
    assert!(run.stderr.contains("nothing was attached"));
}

#[test]
fn panicking_frames_do_not_confuse_return_pairing() {
    for v in go_versions() {
        let bin = calls(&v);
        let run = probe(
            &[
                "attach",
                "--func",
                "main.mayPanic",
                "--returns",
                "--format",
                "json",
                "--",
                &bin,
                "-mode",
                "panics",
                "-count",
                "50",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(run.stderr.contains("exit status 0"), "{}", run.stderr);
        let mut pending: Option<i64> = None;
        let (mut entries, mut returns) = (0, 0);
        for e in &run.events {
            if e["kind"] == "entry" {
                entries += 1;
                pending = Some(e["args"]["n"].as_i64().unwrap());
            } else {
                returns += 1;
                let n = pending.take().expect("a return right after its entry");
                assert_ne!(n % 5, 0, "go{v}: a panicking call never returns: {e}");
                assert_eq!(e["returns"]["~r0"], n * 3, "go{v}: {e}");
                assert!(
                    e["duration_ns"].as_u64().unwrap() < 1_000_000_000,
                    "paired with its own entry: {e}"
                );
            }
        }
        assert_eq!((entries, returns), (50, 40), "go{v}");
    }
}

//! The kernel's lean path (`ProbeParams::lean`: string arguments in
//! registers, no condition, rate, returns or `--stack`) writes the events
//! the general path (the capture-plan interpreter) writes for the same
//! probe: each case runs `hot` under both (`PROBE_NO_LEAN=1` forces the
//! general one) and compares the decoded events hit by hit.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use probe_integration::{finish, go_versions, probe_bin, testdata};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const HITS: usize = 40;

/// `probe attach … --func main.work` on a launched `hot`, with the lean
/// path on or off: the events by `n`, and the dry run's "kernel path" line.
fn run(
    v: &str,
    lean: bool,
    probe_args: &[&str],
    hot_args: &[&str],
) -> (BTreeMap<i64, Value>, String) {
    let hot = testdata(v, "hot");
    let cmd = |extra: &[&str]| {
        let mut c = Command::new(probe_bin());
        c.args(["attach", "--format", "json", "--func", "main.work"])
            .args(["--stack-window", "256"])
            .args(probe_args)
            .args(extra)
            .arg("--")
            .arg(&hot)
            .args(["-mode", "rate", "-rate", "2000", "-duration", "20s"])
            .args(hot_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !lean {
            c.env("PROBE_NO_LEAN", "1");
        }
        c
    };
    let dry = cmd(&["--dry-run"]).output().expect("probe --dry-run");
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    let path = dry
        .lines()
        .find_map(|l| l.trim().strip_prefix("kernel path: "))
        .unwrap_or_else(|| panic!("no kernel path in the dry run: {dry}"))
        .to_owned();
    let hits = HITS.to_string();
    // (With --returns, --max-hits counts the returns too: fewer entries.)
    let run = finish(cmd(&["--max-hits", &hits]).spawn().expect("start probe"), T);
    assert!(run.status.success(), "go{v}: {}", run.stderr);
    assert!(
        run.stderr.contains(", 0 dropped"),
        "go{v}: every hit captured: {}",
        run.stderr
    );
    let events = run
        .events
        .into_iter()
        .filter(|ev| ev["kind"] == "entry")
        .map(|ev| (ev["args"]["n"].as_i64().expect("n"), ev))
        .collect();
    (events, path)
}

/// What both paths must agree on: everything but the hit's time, thread
/// and the raw stack bytes (the return address and spilled words repeat,
/// but the loop's counters in the caller's frame do not).
fn comparable(ev: &Value) -> Value {
    let mut ev = ev.clone();
    let o = ev.as_object_mut().unwrap();
    for k in ["time", "pid", "tid"] {
        o.remove(k);
    }
    let w = o["stack_window"]["bytes"].as_str().unwrap_or("").len();
    o.insert("stack_window".into(), Value::from(w));
    ev
}

/// Runs one case under both paths; returns the lean path's events.
fn both(v: &str, probe_args: &[&str], hot_args: &[&str]) -> BTreeMap<i64, Value> {
    let (lean, lean_path) = run(v, true, probe_args, hot_args);
    let (general, general_path) = run(v, false, probe_args, hot_args);
    assert!(
        lean_path.starts_with("lean"),
        "go{v} {probe_args:?}: {lean_path}"
    );
    assert!(
        general_path.starts_with("general (PROBE_NO_LEAN=1"),
        "go{v} {probe_args:?}: {general_path}"
    );
    // Both runs start the program afresh, so hit i is work(i, …) in each.
    assert_eq!(lean.len(), HITS, "go{v} {probe_args:?}: {lean:?}");
    assert_eq!(
        lean.keys().collect::<Vec<_>>(),
        general.keys().collect::<Vec<_>>(),
        "go{v} {probe_args:?}"
    );
    for (n, ev) in &lean {
        assert_eq!(
            comparable(ev),
            comparable(&general[n]),
            "go{v} {probe_args:?} {hot_args:?}: hit {n}, lean (left) and general (right) differ"
        );
    }
    lean
}

#[test]
fn lean_path_writes_the_general_paths_events() {
    for v in go_versions() {
        let v = v.as_str();
        // A literal (its bytes read from the binary) and a heap string.
        for hot_args in [&[][..], &["-heap-key"][..]] {
            for ev in both(v, &[], hot_args).values() {
                assert_eq!(ev["args"]["key"], "key", "go{v} {hot_args:?}: {ev}");
                assert!(ev["goid"].as_u64().unwrap() > 0, "go{v}: {ev}");
                assert_eq!(
                    ev["stack_window"]["bytes"].as_str().unwrap().len(),
                    512,
                    "go{v}: 256 bytes: {ev}"
                );
            }
        }
        // Limits: the string cut to 2 bytes; a byte budget the stack window
        // uses up, so the heap string's chunk is cut away.
        for ev in both(v, &["--max-string", "2"], &["-heap-key"]).values() {
            assert_ne!(ev["args"]["key"], "key", "go{v}: cut: {ev}");
        }
        for ev in both(v, &["--max-string", "2"], &[]).values() {
            assert_ne!(ev["args"]["key"], "key", "go{v}: cut literal: {ev}");
        }
        for ev in both(v, &["--max-bytes", "280"], &["-heap-key"]).values() {
            assert_ne!(ev["args"]["key"], "key", "go{v}: over budget: {ev}");
        }
    }
}

#[test]
fn probes_the_lean_path_cannot_serve_take_the_general_path() {
    let v = &go_versions()[0];
    for args in [
        &["--cond", "n >= 0"][..],
        &["--stack", "4"][..],
        &["--rate", "1000"][..],
        &["--returns"][..],
    ] {
        let (events, path) = run(v, true, args, &["-heap-key"]);
        assert!(
            path.starts_with("general (the capture plan"),
            "{args:?}: {path}"
        );
        assert!(!events.is_empty(), "go{v} {args:?}");
        for ev in events.values() {
            assert_eq!(ev["args"]["key"], "key", "go{v} {args:?}: {ev}");
        }
    }
}

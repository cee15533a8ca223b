//! Every Go kind decoded at hit time, against `testdata/values` built with
//! each Go release (1.21: classic maps; 1.24+: Swiss tables). Decoded
//! arguments of call N=1 are compared with golden files shared by every Go
//! version; `PROBE_UPDATE_GOLDEN=1 cargo xtask test` rewrites them.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use probe_integration::{go_versions, probe, testdata};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(90);

/// Replaces what differs between builds and runs (addresses).
fn normalize(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("0x") => *s = "0xADDR".into(),
        Value::Array(a) => a.iter_mut().for_each(normalize),
        Value::Object(o) => o.values_mut().for_each(normalize),
        _ => {}
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{name}.json"))
}

/// Runs `values` from its first call with every probe and returns, per
/// function, the events in call order.
fn run_values(v: &str, extra: &[&str], funcs: &[&str], hits: u32) -> BTreeMap<String, Vec<Value>> {
    let bin = testdata(v, "values");
    let mut args = vec!["attach", "--format", "json"];
    for f in funcs {
        args.extend(["--func", f]);
    }
    let hits = hits.to_string();
    args.extend(["--max-hits", &hits]);
    args.extend(extra);
    args.extend(["--", bin.to_str().unwrap(), "-interval", "2ms"]);
    let run = probe(&args, T);
    assert!(run.status.success(), "go{v}: {}", run.stderr);
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in run.events {
        by.entry(e["function"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    by
}

#[test]
fn every_kind_matches_golden_on_every_go_version() {
    let funcs = [
        "main.scalars",
        "main.composite",
        "main.ifaces",
        "main.misc",
        "main.Max",
    ];
    let update = std::env::var_os("PROBE_UPDATE_GOLDEN").is_some();
    for v in go_versions() {
        let by = run_values(&v, &[], &funcs, 24);
        for (func, events) in &by {
            // Call N=1: the second event of each function.
            let mut args = events
                .get(1)
                .unwrap_or_else(|| panic!("go{v}: fewer than 2 hits of {func}"))["args"]
                .clone();
            normalize(&mut args);
            let name = func.replace(['(', ')', '*', '[', ']'], "_");
            let path = golden(&name);
            let pretty = serde_json::to_string_pretty(&args).unwrap() + "\n";
            if update {
                std::fs::write(&path, &pretty).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                panic!("{} missing: run with PROBE_UPDATE_GOLDEN=1", path.display())
            });
            assert_eq!(
                pretty,
                want,
                "go{v}: {func} differs from {}",
                path.display()
            );
        }
        assert_eq!(
            by.len(),
            6,
            "go{v}: every function (and both Max instantiations) hit: {:?}",
            by.keys()
        );
    }
}

/// A Go ≤1.23 map caught while it grows still holds some of its entries in
/// `oldbuckets`: every one of them is shown, none twice. `growing` is
/// called with 45, 46, …, 60 entries; growth runs over a few of those calls.
#[test]
fn a_map_caught_while_growing_shows_every_entry() {
    for v in go_versions() {
        let by = run_values(&v, &[], &["main.growing"], 32);
        let hits = &by["main.growing"];
        assert_eq!(hits.len(), 32, "go{v}");
        for (i, ev) in hits.iter().enumerate() {
            let (n, size) = (i / 16, 45 + i % 16);
            let m = ev["args"]["m"]
                .as_object()
                .unwrap_or_else(|| panic!("go{v} hit {i}: {ev}"));
            let want: serde_json::Map<String, Value> =
                (0..size).map(|k| (k.to_string(), json!(k + n))).collect();
            assert_eq!(m, &want, "go{v} hit {i} (N={n}, {size} entries): {ev}");
        }
    }
}

#[test]
fn kinds_spelled_out() {
    // The golden files pin everything; this spells out what they must show,
    // so a wrong golden file cannot pass unnoticed.
    for v in go_versions() {
        let by = run_values(&v, &[], &["main.composite", "main.ifaces", "main.misc"], 9);
        let n = 1;
        let c = &by["main.composite"][n]["args"];
        assert_eq!(
            c["o"]["Base"],
            json!({"ID": 1, "Tag": "t1"}),
            "go{v}: embedded struct under its type name"
        );
        assert_eq!(
            c["o"]["Customer"],
            json!({"Name": "c1", "Address": {"City": "Paris", "Zip": 75001}})
        );
        assert_eq!(
            c["o"]["Items"][1],
            json!({"SKU": "s2", "Qty": 2, "Price": 2.25})
        );
        assert_eq!(c["o"]["Meta"], json!({"k": 1}), "go{v}: map");
        assert_eq!(c["o"]["Notes"], json!(["n1", ""]));
        assert_eq!(
            c["o"]["Timeout"],
            json!(1_000_000),
            "time.Duration in nanoseconds"
        );
        assert_eq!(c["m"], json!({"a": 1, "b": 2}), "go{v}: map[string]int");
        assert_eq!(
            c["mp"],
            json!({"1": {"X": 1, "Y": 1}}),
            "go{v}: map[int]*Point"
        );
        assert_eq!(
            (c["nilm"].clone(), c["nils"].clone(), c["nilp"].clone()),
            (json!(null), json!(null), json!(null))
        );
        assert_eq!(c["empty"], json!([]));
        assert_eq!(c["arr"], json!([1, -1, 7]));
        let i = &by["main.ifaces"][n]["args"];
        assert_eq!(i["e"], json!({"type": "int", "value": 1}));
        assert_eq!(
            i["s"],
            json!({"type": "main.Rect", "value": {"W": 1.0, "H": 2.0}}),
            "go{v}: value in an interface"
        );
        assert_eq!(
            i["sp"],
            json!({"type": "*main.Circle", "value": {"R": 1.0}}),
            "go{v}: pointer in an interface"
        );
        assert_eq!(
            i["err"],
            json!({"type": "*main.CodeErr", "value": {"Code": 1}})
        );
        assert_eq!(i["wrapped"]["type"], "*fmt.wrapError");
        assert_eq!(
            i["wrapped"]["value"]["err"],
            json!({"type": "*main.CodeErr", "value": {"Code": 1}}),
            "go{v}: wrapped error"
        );
        assert_eq!(
            (i["nilerr"].clone(), i["n"].clone()),
            (json!(null), json!(null))
        );
        let m = &by["main.misc"][n]["args"];
        assert_eq!(
            m["ch"],
            json!({"type": "chan int", "len": 1, "cap": 4}),
            "go{v}: channel"
        );
        assert_eq!(m["f"], json!("main.double"), "go{v}: func by name");
        assert_eq!(
            m["list"],
            json!({"Val": 1, "Next": {"Val": 2, "Next": {"Val": 3, "Next": null}}})
        );
        assert_eq!(m["ring"]["Next"]["Val"], 2);
        assert!(
            m["ring"]["Next"]["Next"]["@cycle"].is_string(),
            "go{v}: cycle detected: {}",
            m["ring"]
        );
        assert_eq!(m["words"], json!(["w1", "x1"]));
        assert_eq!(
            (m["nilch"].clone(), m["nilf"].clone()),
            (json!(null), json!(null))
        );
    }
}

#[test]
fn a_million_element_slice_stays_in_budget_and_says_how_long_it_is() {
    for v in go_versions() {
        let by = run_values(
            &v,
            &["--max-elems", "1000000", "--max-bytes", "4096"],
            &["main.big"],
            3,
        );
        for e in &by["main.big"] {
            let xs = &e["args"]["xs"];
            assert_eq!(xs["@len"], 1_000_000, "go{v}: {xs}");
            let items = xs["@truncated"].as_array().unwrap();
            assert!(
                !items.is_empty() && items.len() * 8 <= 4096,
                "go{v}: {} elements",
                items.len()
            );
            let n = e["args"]["n"].as_i64().unwrap();
            assert!(
                items.iter().all(|x| x.as_i64() == Some(n)),
                "go{v}: every captured element is N"
            );
        }
    }
}

#[test]
fn values_of_one_hit_are_taken_at_the_same_instant() {
    // The program mutates every field right after snapshot() returns; a
    // capture made later than the call would mix generations.
    for v in go_versions() {
        let by = run_values(&v, &["--max-elems", "64"], &["main.snapshot"], 40);
        let events = &by["main.snapshot"];
        assert_eq!(events.len(), 40);
        for e in events {
            let s = &e["args"]["s"];
            let g = s["Gen"].as_i64().unwrap();
            assert!(g >= 0, "go{v}: {s}");
            assert_eq!(s["Name"], format!("gen-{g}"), "go{v}");
            let vals = s["Vals"].as_array().unwrap();
            assert_eq!(vals.len(), 64);
            assert!(
                vals.iter().all(|x| x.as_i64() == Some(g)),
                "go{v}: mixed generations in {s}"
            );
        }
    }
}

/// A string literal lies in the binary's read-only data: the kernel leaves
/// it unread (the event has no chunk for it) and the decoder reads it from
/// the file; the same bytes on the heap (`hot -heap-key`) are read at each
/// hit. A PIE's segment is found at its load address.
#[test]
fn string_literals_come_from_the_binary_and_heap_strings_from_the_hit() {
    use std::process::{Command, Stdio};
    for v in go_versions() {
        for (name, heap) in [("hot", false), ("hot-pie", false), ("hot", true)] {
            let bin = testdata(&v, name);
            let mut cmd = Command::new(probe_integration::probe_bin());
            cmd.args(["attach", "--format", "json", "--func", "main.work"])
                .args(["--max-hits", "20", "--", bin.to_str().unwrap()])
                .args(["-mode", "rate", "-rate", "1000", "-duration", "60s"]);
            if heap {
                cmd.arg("-heap-key");
            }
            // Every event's memory chunks, as the kernel sent them, on stderr.
            cmd.env("PROBE_DEBUG_EVENTS", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let run = probe_integration::finish(cmd.spawn().unwrap(), T);
            let what = format!("go{v} {name} heap={heap}");
            assert!(run.status.success(), "{what}: {}", run.stderr);
            assert_eq!(run.events.len(), 20, "{what}: {}", run.stderr);
            for e in &run.events {
                assert_eq!(e["args"]["key"], json!("key"), "{what}: {e}");
                assert!(e["args"]["n"].is_i64(), "{what}: {e}");
            }
            let described: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| l.starts_with("event probe="))
                .collect();
            assert!(described.len() >= 20, "{what}: {}", run.stderr);
            // The string's 3 bytes are a chunk only when read at the hit.
            let read = described.iter().filter(|l| l.contains("+3/3")).count();
            let want = if heap { described.len() } else { 0 };
            assert_eq!(read, want, "{what}: {}", described.join("\n"));
        }
    }
}

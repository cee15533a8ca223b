//! `--line FILE:LINE` with `--capture args,locals`: locals live in the middle
//! of a function, arguments spilled to the stack, on every Go release.

use std::time::Duration;

use probe_integration::{go_versions, hit_number, probe, source_line, testdata};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[test]
fn line_probe_shows_args_and_locals() {
    for v in go_versions() {
        let bin = testdata(&v, "store");
        let line = source_line("store/main.go", "s.data[key] = val");
        let spec = format!("store/main.go:{line}");
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
                "5",
                "--",
                bin.to_str().unwrap(),
                "-interval",
                "2ms",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert_eq!(run.events.len(), 5);
        for (i, ev) in run.events.iter().enumerate() {
            let n = hit_number(ev);
            assert_eq!(n, i as u64, "go{v}: every call, from the first");
            assert_eq!(ev["kind"], "line");
            assert_eq!(ev["line"], line);
            assert_eq!(ev["function"], "main.(*Store).Put");
            assert!(ev["file"]
                .as_str()
                .unwrap()
                .ends_with("/testdata/store/main.go"));
            // Line 50 runs after `_, existed := s.data[key]` (line 49) and the
            // Lock: existed is a live local; the mutex is held.
            assert_eq!(ev["locals"]["existed"], json!(false), "go{v}: {ev}");
            let a = &ev["args"];
            assert_eq!(
                a["val"],
                json!([n % 256, (n + 1) % 256, (n + 2) % 256]),
                "go{v}: {ev}"
            );
            assert_eq!(a["s"]["puts"], n, "go{v}: {ev}");
        }
    }
}

#[test]
fn line_without_code_is_a_clear_error() {
    let v = go_versions().pop().unwrap();
    let bin = testdata(&v, "store");
    let run = probe(
        &[
            "attach",
            "--binary",
            bin.to_str().unwrap(),
            "--line",
            "store/main.go:2",
        ],
        T,
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("no code at line 2"), "{}", run.stderr);
    let run = probe(
        &[
            "attach",
            "--binary",
            bin.to_str().unwrap(),
            "--line",
            "main.go",
        ],
        T,
    );
    assert!(!run.status.success());
    assert!(run.stderr.contains("expected FILE:LINE"), "{}", run.stderr);
}

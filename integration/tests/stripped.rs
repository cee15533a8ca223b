//! Binaries without DWARF: `-ldflags=-w` (`-nodwarf`) and `-ldflags=-s -w`
//! (`-stripped`) probed by function name from `.gopclntab`, with argument
//! words as Go's tracebacks lay them out; and a binary whose DWARF was moved
//! to a separate debug-info file (objcopy), which must decode exactly like
//! the normal build. Every failure leaves nothing attached in the kernel.

use std::{path::PathBuf, process::Command, time::Duration};

use probe_integration::{
    go_versions, leftover_programs, probe, probe_programs, source_line, testdata,
};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a word: {v}"))
}

#[test]
fn func_on_binaries_without_dwarf_shows_argument_words() {
    let line = source_line("hot/main.go", "func work(");
    for v in go_versions() {
        for variant in ["hot-nodwarf", "hot-stripped"] {
            let bin = testdata(&v, variant);
            let run = probe(
                &[
                    "attach",
                    "--func",
                    "main.work",
                    "--format",
                    "json",
                    "--max-hits",
                    "3",
                    "--",
                    bin.to_str().unwrap(),
                    "-mode",
                    "rate",
                    "-rate",
                    "200",
                    "-duration",
                    "20s",
                ],
                T,
            );
            assert!(run.status.success(), "go{v} {variant}: {}", run.stderr);
            // One note at attach, not one per hit.
            assert_eq!(
                run.stderr.matches("has no DWARF").count(),
                1,
                "{}",
                run.stderr
            );
            assert_eq!(run.events.len(), 3, "go{v} {variant}: {}", run.stdout);
            for (n, e) in run.events.iter().enumerate() {
                let ctx = format!("go{v} {variant}: {e}");
                assert_eq!(e["function"], "main.work", "{ctx}");
                assert!(
                    e["file"].as_str().unwrap().ends_with("hot/main.go"),
                    "{ctx}"
                );
                assert_eq!(e["line"], line, "{ctx}");
                // work(calls, "key"): n = the call number; key = {ptr, len}.
                assert_eq!(u(&e["args"]["arg0"]), n as u64, "{ctx}");
                assert_eq!(u(&e["args"]["arg1"]["word1"]), 3, "{ctx}");
                assert_ne!(u(&e["args"]["arg1"]["word0"]), 0, "{ctx}");
                // The goroutine id from runtime.g's type descriptor: main's
                // goroutine is 1.
                assert_eq!(e["goid"], 1, "{ctx}");
                let missing = e["@missing"].as_str().unwrap_or_default();
                for needle in ["DWARF", "argument words", "float"] {
                    assert!(missing.contains(needle), "{ctx}: @missing lacks {needle:?}");
                }
            }
        }
    }
}

#[test]
fn stack_assigned_argument_words_on_stripped_binary() {
    // kinds(a int8, b int16, c int32, d int64, e uint8, f uint16, g uint32,
    // h uint64, i int, j uint, …): nine integer registers, so j is the first
    // stack-assigned argument, and the argument info stops after ten words.
    for v in go_versions() {
        let bin = testdata(&v, "store-stripped");
        let run = probe(
            &[
                "attach",
                "--func",
                "main.kinds",
                "--format",
                "json",
                "--max-hits",
                "3",
                "--",
                bin.to_str().unwrap(),
                "-interval",
                "5ms",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert_eq!(run.events.len(), 3, "go{v}: {}", run.stdout);
        let mut seen_nonzero = false;
        for e in &run.events {
            let a = &e["args"];
            let ctx = format!("go{v}: {e}");
            let n = u(&a["arg3"]) >> 33;
            seen_nonzero |= n > 0;
            assert_eq!(u(&a["arg0"]), n % 100, "{ctx}");
            assert_eq!(u(&a["arg1"]), n.wrapping_neg() & 0xffff, "{ctx}");
            assert_eq!(u(&a["arg2"]), n * 3, "{ctx}");
            assert_eq!(u(&a["arg4"]), n & 0xff, "{ctx}");
            assert_eq!(u(&a["arg5"]), n & 0xffff, "{ctx}");
            assert_eq!(u(&a["arg6"]), n * 5, "{ctx}");
            assert_eq!(u(&a["arg7"]), n << 40, "{ctx}");
            assert_eq!(u(&a["arg8"]), (n * 7).wrapping_neg(), "{ctx}");
            assert_eq!(u(&a["arg9"]), n * 11, "{ctx}: the stack-assigned word");
            assert!(a.get("arg10").is_none(), "{ctx}");
            assert!(
                e["@missing"]
                    .as_str()
                    .unwrap()
                    .contains("more arguments than"),
                "{ctx}"
            );
        }
        assert!(seen_nonzero, "go{v}: only n = 0 seen");
    }
}

#[test]
fn failures_on_stripped_binaries_are_clear_and_leave_nothing_attached() {
    for v in go_versions() {
        let bin = testdata(&v, "hot-stripped");
        let bin = bin.to_str().unwrap();
        let cases: [(&[&str], &[&str]); 3] = [
            (
                &["--func", "main.wrok"],
                &["no function \"main.wrok\"", "closest matches", "main.work"],
            ),
            (
                &["--func", "main.work", "--cond", "n > 3"],
                &["--cond needs DWARF", "-ldflags"],
            ),
            (&["--line", "hot/main.go:1"], &["no code at line 1"]),
        ];
        for (extra, needles) in cases {
            let before = probe_programs();
            let mut args = vec!["attach", "--format", "json"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--", bin, "-mode", "rate", "-duration", "20s"]);
            let run = probe(&args, T);
            assert!(!run.status.success(), "go{v} {extra:?}: {}", run.stdout);
            for n in needles {
                assert!(
                    run.stderr.contains(n),
                    "go{v} {extra:?}: no {n:?} in {}",
                    run.stderr
                );
            }
            assert!(run.events.is_empty());
            assert_eq!(
                leftover_programs(&before),
                Vec::<u32>::new(),
                "go{v} {extra:?}"
            );
        }
    }
}

#[test]
fn line_probe_on_stripped_binary() {
    let line = source_line("hot/main.go", "return inner(n) + len(key)");
    for v in go_versions() {
        let bin = testdata(&v, "hot-stripped");
        let spec = format!("hot/main.go:{line}");
        let run = probe(
            &[
                "attach",
                "--line",
                &spec,
                "--format",
                "json",
                "--max-hits",
                "2",
                "--",
                bin.to_str().unwrap(),
                "-mode",
                "rate",
                "-rate",
                "200",
                "-duration",
                "20s",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(!run.events.is_empty(), "go{v}");
        for e in &run.events {
            assert_eq!(e["kind"], "line", "{e}");
            assert_eq!(e["function"], "main.work", "{e}");
            assert_eq!(e["line"], line, "{e}");
            assert!(e["@missing"].is_string(), "{e}");
        }
    }
}

/// `hot` with its DWARF moved out by objcopy (as Debian's dh_strip does),
/// in a fresh directory: (stripped binary, debug file).
fn split_debug(v: &str, tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("probe-split-{tag}-{v}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".debug")).unwrap();
    let full = dir.join("hot");
    std::fs::copy(testdata(v, "hot"), &full).unwrap();
    let objcopy = |args: &[&str]| {
        let s = Command::new("objcopy")
            .current_dir(&dir)
            .args(args)
            .status()
            .expect("objcopy (binutils) is needed for this test");
        assert!(s.success(), "objcopy {args:?}");
    };
    objcopy(&["--only-keep-debug", "hot", ".debug/hot.debug"]);
    objcopy(&[
        "--strip-debug",
        "--add-gnu-debuglink=.debug/hot.debug",
        "hot",
        "hot-split",
    ]);
    (dir.join("hot-split"), dir.join(".debug/hot.debug"))
}

#[test]
fn separate_debug_file_decodes_like_the_normal_build() {
    for v in go_versions() {
        let run_on = |bin: &str, extra: &[&str]| {
            let mut args = vec![
                "attach",
                "--func",
                "main.work",
                "--format",
                "json",
                "--max-hits",
                "3",
            ];
            args.extend_from_slice(extra);
            args.extend_from_slice(&[
                "--",
                bin,
                "-mode",
                "rate",
                "-rate",
                "200",
                "-duration",
                "20s",
            ]);
            let run = probe(&args, T);
            assert!(run.status.success(), "go{v} {bin}: {}", run.stderr);
            run
        };
        let normal = run_on(testdata(&v, "hot").to_str().unwrap(), &[]);
        let (split, debug) = split_debug(&v, "link");
        // Found through .gnu_debuglink (the .debug/ subdirectory).
        let linked = run_on(split.to_str().unwrap(), &[]);
        assert!(
            linked.stderr.contains("separate debug-info file"),
            "{}",
            linked.stderr
        );
        // Given explicitly, from elsewhere.
        let elsewhere =
            std::env::temp_dir().join(format!("probe-dbg-{v}-{}.debug", std::process::id()));
        std::fs::copy(&debug, &elsewhere).unwrap();
        std::fs::remove_file(&debug).unwrap();
        let explicit = run_on(
            split.to_str().unwrap(),
            &["--debug-file", elsewhere.to_str().unwrap()],
        );
        for run in [&linked, &explicit] {
            assert_eq!(run.events.len(), normal.events.len());
            for (a, b) in normal.events.iter().zip(&run.events) {
                assert_eq!(a["args"], b["args"], "go{v}");
                assert_eq!(a["args"]["key"], "key", "go{v}");
                assert_eq!((&a["file"], &a["line"]), (&b["file"], &b["line"]), "go{v}");
                assert!(b["goid"].is_u64(), "go{v}: {b}");
                assert!(b.get("@missing").is_none(), "go{v}: {b}");
            }
        }
        // Without the debug file it falls back to .gopclntab, and says so.
        let fallback = run_on(split.to_str().unwrap(), &[]);
        assert!(
            fallback.events[0]["@missing"].is_string(),
            "{}",
            fallback.stdout
        );
        let _ = std::fs::remove_dir_all(split.parent().unwrap());
        let _ = std::fs::remove_file(elsewhere);
    }
}

#[test]
fn returns_and_stack_on_stripped_binary() {
    for v in go_versions() {
        let bin = testdata(&v, "hot-stripped");
        let run = probe(
            &[
                "attach",
                "--func",
                "main.work",
                "--returns",
                "--stack",
                "4",
                "--format",
                "json",
                "--max-hits",
                "4",
                "--",
                bin.to_str().unwrap(),
                "-mode",
                "rate",
                "-rate",
                "200",
                "-duration",
                "20s",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        let ret = run
            .events
            .iter()
            .find(|e| e["kind"] == "return")
            .unwrap_or_else(|| panic!("go{v}: no return event in {}", run.stdout));
        assert!(ret["duration_ns"].as_u64().is_some(), "{ret}");
        assert!(ret["@missing"].is_string(), "{ret}");
        for e in &run.events {
            // Frames symbolized from .gopclntab: work, called by main.
            let fns: Vec<&str> = e["stack"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["function"].as_str().unwrap())
                .collect();
            assert_eq!(fns.first(), Some(&"main.work"), "go{v}: {e}");
            assert_eq!(fns.get(1), Some(&"main.main"), "go{v}: {e}");
            assert!(
                e["stack"][0]["file"]
                    .as_str()
                    .unwrap()
                    .ends_with("hot/main.go"),
                "{e}"
            );
        }
    }
}

#[test]
fn float_argument_is_unavailable_not_misplaced() {
    // scaled(x float64, n int, tag string): x in X0, which BPF cannot
    // read; n in RAX and tag in RBX, RCX, as the spill code says (a model
    // that took x for an integer would read n from RBX).
    for v in go_versions() {
        for variant in ["calls-nodwarf", "calls-stripped"] {
            let bin = testdata(&v, variant);
            let run = probe(
                &[
                    "attach",
                    "--func",
                    "main.scaled",
                    "--format",
                    "json",
                    "--max-hits",
                    "3",
                    "--",
                    bin.to_str().unwrap(),
                    "-mode",
                    "floats",
                    "-count",
                    "5000",
                ],
                T,
            );
            assert!(run.status.success(), "go{v} {variant}: {}", run.stderr);
            assert_eq!(run.events.len(), 3, "go{v} {variant}: {}", run.stdout);
            for (n, e) in run.events.iter().enumerate() {
                let a = &e["args"];
                let ctx = format!("go{v} {variant}: {e}");
                let why = a["arg0"]["@unavailable"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}"));
                assert!(why.contains("XMM0"), "{ctx}");
                assert_eq!(u(&a["arg1"]), n as u64, "{ctx}");
                assert_eq!(u(&a["arg2"]["word1"]), 3, "{ctx}");
                assert!(e["@missing"].as_str().unwrap().contains("spills"), "{ctx}");
            }
        }
    }
}

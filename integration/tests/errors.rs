//! Day-one errors: each is a clear message and a non-zero exit.

use std::{process::Command, time::Duration};

use probe_integration::{
    go_versions, leftover_programs, probe, probe_bin, probe_programs, testdata, Target,
};

const T: Duration = Duration::from_secs(60);

/// Runs probe, expecting it to fail with every one of `needles` in its
/// message, to print no event, and to leave nothing in the kernel (checked
/// there: no program of its own left loaded once it has exited).
fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let before = probe_programs();
    let run = probe(args, T);
    let left = leftover_programs(&before);
    assert!(
        left.is_empty(),
        "{args:?} left BPF programs {left:?} loaded"
    );
    assert!(
        !run.status.success(),
        "expected failure for {args:?}; stdout {}",
        run.stdout
    );
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "{args:?}: stderr lacks {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(run.events.is_empty());
    run.stderr
}

#[test]
fn unknown_function_lists_closest_matches() {
    let v = go_versions().pop().unwrap();
    let target = Target::store(&v, &["-interval", "50ms"]);
    let err = fails_with(
        &[
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--func",
            "main.Store.Put",
        ],
        &[
            "no function \"main.Store.Put\"",
            "closest matches",
            "main.(*Store).Put",
        ],
    );
    assert!(err.contains("probe: error:"), "{err}");
}

#[test]
fn not_an_elf_file() {
    let dir = std::env::temp_dir().join(format!("probe-notelf-{}", std::process::id()));
    std::fs::write(&dir, "#!/bin/sh\necho hi\n").unwrap();
    fails_with(
        &[
            "attach",
            "--binary",
            dir.to_str().unwrap(),
            "--func",
            "main.main",
        ],
        &["is not an ELF executable"],
    );
    std::fs::remove_file(dir).unwrap();
}

#[test]
fn not_a_go_binary() {
    fails_with(
        &["attach", "--binary", "/bin/true", "--func", "main.main"],
        &["is not a Go binary", ".gopclntab"],
    );
}

#[test]
fn go_binary_without_dwarf_refuses_conditions() {
    // Function probes work from .gopclntab (see stripped.rs); a condition
    // needs parameter names and types, which only DWARF has.
    for v in go_versions() {
        let bin = testdata(&v, "store-nodwarf");
        fails_with(
            &[
                "attach",
                "--binary",
                bin.to_str().unwrap(),
                "--func",
                "main.(*Store).Put",
                "--cond",
                "key == \"k1\"",
            ],
            &["--cond needs DWARF", &format!("go{v}"), "-ldflags"],
        );
    }
}

#[test]
fn no_such_pid() {
    // Above the kernel's PID_MAX_LIMIT (4194304): can never exist.
    fails_with(
        &["attach", "--pid", "4194305", "--func", "main.main"],
        &["no process with pid 4194305"],
    );
    // A pid that existed and is gone.
    let mut c = Command::new("/bin/true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    fails_with(
        &["attach", "--pid", &pid.to_string(), "--func", "main.main"],
        &[&format!("no process with pid {pid}")],
    );
}

#[test]
fn missing_privilege_is_named() {
    let v = go_versions().pop().unwrap();
    let bin = testdata(&v, "store");
    // Drop to `nobody` with no capabilities, as an unprivileged user would run it.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(probe_bin())
        .args([
            "attach",
            "--binary",
            bin.to_str().unwrap(),
            "--func",
            "main.(*Store).Put",
        ])
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not enough privilege") && stderr.contains("lacks CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
    // With CAP_BPF alone, the one still missing is named.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+bpf",
            "--ambient-caps=+bpf",
        ])
        .arg(probe_bin())
        .args([
            "attach",
            "--binary",
            bin.to_str().unwrap(),
            "--func",
            "main.(*Store).Put",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lacks CAP_PERFMON") && !stderr.contains("CAP_BPF and"),
        "{stderr}"
    );
}

#[test]
fn verifier_rejection_is_explained() {
    let err = fails_with(
        &["selftest", "verifier"],
        &[
            "verifier rejected program selftest_verifier_reject",
            "invalid mem access",
            "verifier log",
        ],
    );
    assert!(
        err.contains("dereferenced a value the verifier cannot prove is a valid pointer"),
        "{err}"
    );
}

#[test]
fn no_target_given() {
    fails_with(&["attach", "--func", "main.main"], &["say what to trace"]);
}

#[test]
fn symbols_lists_probeable_functions() {
    let v = go_versions().remove(0);
    let run = probe(
        &["symbols", testdata(&v, "store").to_str().unwrap(), "Store)"],
        T,
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("main.(*Store).Put\t")
                && l.ends_with("testdata/store/main.go:45")),
        "{}",
        run.stdout
    );
}

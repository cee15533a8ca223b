//! What Probe asks of the kernel: every program variant it can generate
//! loads on the running kernel (this test runs natively and in every VM of
//! `cargo xtask vm-test`), `probe doctor` reports the kernel truthfully, and
//! the walk's fallback without `bpf_loop` captures the same values.

use probe_integration::*;
use std::process::Command;

#[test]
fn every_program_variant_loads_on_this_kernel() {
    let out = Command::new(probe_bin())
        .args(["selftest", "programs"])
        .output()
        .expect("run probe selftest programs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The program every probe runs, in both walks where the kernel has
    // bpf_loop (the fallback at least), and the program that must fail.
    let accepted = |variant: &str| {
        stdout.lines().any(|l| {
            l.starts_with("probe_entry ") && l.contains(variant) && l.contains(" accepted")
        })
    };
    assert!(accepted("ForEachElem walk, 1 rings"), "{stdout}");
    assert!(accepted("ForEachElem walk, 16 rings"), "{stdout}");
    let has_loop = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| kernel_at_least(&r, 5, 17))
        .unwrap_or(true);
    if has_loop {
        assert!(accepted("BpfLoop walk"), "{stdout}");
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("selftest_verifier_reject")
                && l.contains("rejected, as it must be")),
        "{stdout}"
    );
    assert!(!stdout.contains("REJECTED"), "{stdout}");
}

fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut p = release.trim().split(['.', '-']);
    let a: u32 = p.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let b: u32 = p.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (a, b) >= (major, minor)
}

#[test]
fn doctor_reports_this_kernel_and_its_features() {
    let out = Command::new(probe_bin())
        .arg("doctor")
        .output()
        .expect("run probe doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(stdout.contains(release.trim()), "{stdout}");
    // The tests run as root on kernels Probe supports.
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Probe can run here"), "{stdout}");
    for f in [
        "BPF ring buffer maps",
        "BPF cookies on uprobes",
        "bpf_loop helper",
        "privileges",
        "uprobes",
        "perf events",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(f))
            .unwrap_or_else(|| panic!("no {f} line: {stdout}"));
        assert!(line.starts_with("ok"), "{line}\n{stdout}");
    }
}

/// Without privileges, `probe doctor` says so, with the fix, and fails.
#[test]
fn doctor_without_privileges_says_what_to_do() {
    // `setpriv` (util-linux) drops to nobody with no capabilities.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(probe_bin())
        .arg("doctor")
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  privileges"), "{stdout}");
    assert!(stdout.contains("fix: run as root"), "{stdout}");
    assert!(
        stdout.contains("not checked: no privilege to load BPF"),
        "{stdout}"
    );
    assert!(stdout.contains("cannot run here"), "{stdout}");
}

/// `main.(*Store).Put` decoded the same way with the walk's fallback
/// (`bpf_for_each_map_elem`) as with `bpf_loop`: receiver, string, []byte
/// and Duration.
#[test]
fn fallback_walk_decodes_put_like_bpf_loop() {
    for v in go_versions() {
        let store = testdata(&v, "store");
        let mut events = vec![];
        for forced in ["0", "1"] {
            let out = Command::new(probe_bin())
                .args(["attach", "--func", "main.(*Store).Put", "--format", "json"])
                .args(["--max-hits", "3", "--"])
                .arg(&store)
                .args(["-interval", "10ms"])
                .env("PROBE_FORCE_NO_BPF_LOOP", forced)
                .output()
                .expect("run probe attach");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                stdout.lines().count() >= 3,
                "go{v} forced={forced}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ev: serde_json::Value =
                serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
            events.push(ev["args"].clone());
        }
        assert_eq!(events[0], events[1], "go{v}: bpf_loop vs for-each walk");
        // The first call's arguments (see testdata/store).
        let a = &events[0];
        assert_eq!(a["key"], "k0", "go{v}: {a}");
        assert_eq!(a["val"], serde_json::json!([0, 1, 2]), "go{v}: {a}");
        assert_eq!(a["ttl"], 0, "go{v}: {a}");
        assert_eq!(a["s"]["name"], "main-store", "go{v}: {a}");
        assert_eq!(a["s"]["shard"], 7, "go{v}: {a}");
    }
}

//! `probe selftest floor`: the benchmarks' floor programs attach to a real
//! Go binary and run at its hits; the hand-written minimal capture, the
//! bench's lower bound for the per-hit goal's data, really captures it, and
//! delivered through the event rings it reaches the reader, every hit.

use probe_integration::*;
use std::{
    process::{Command, Stdio},
    time::Duration,
};

/// Attaches `probe selftest floor --work WORK` after `main.work`'s stack
/// check in `hot`, runs `hot` paced for a second, then ends the selftest
/// with SIGTERM (as the bench does) and returns its stderr and the calls
/// `hot` made.
fn floor_run(version: &str, work: &str) -> (String, u64) {
    // A floor program fires in every process running `hot`: one at a time,
    // or one test's run would count the other's hits.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let hot = testdata(version, "hot");
    let child = Command::new(probe_bin())
        .args([
            "selftest",
            "floor",
            hot.to_str().unwrap(),
            "main.work+0x6",
            "1h",
            "--work",
            work,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe selftest floor");
    let pid = child.id() as i32;
    // Attaching takes well under this; the floor prints when it is on.
    std::thread::sleep(Duration::from_secs(3));
    let out = Command::new(&hot)
        .args(["-mode", "rate", "-rate", "2000", "-duration", "1s"])
        .output()
        .expect("run hot");
    let said = String::from_utf8_lossy(&out.stdout);
    let calls = said
        .split("calls ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("hot did not finish: {said}"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let run = finish(child, Duration::from_secs(30));
    assert!(run.status.success(), "{work}: {}", run.stderr);
    (run.stderr, calls)
}

#[test]
fn floor_programs_attach_and_the_minimal_capture_reads_the_goal_data() {
    let versions = go_versions();
    // The pieces do not depend on the Go version (the bench uses one).
    for (work, says) in [
        ("empty", "empty program attached"),
        ("clock", "clock-read program attached"),
        ("read", "one-read program attached"),
    ] {
        let (err, _) = floor_run(&versions[0], work);
        assert!(err.contains(says), "{work}: {err}");
    }
    // The goal's two reads alone still find the goroutine id in g's head.
    let (err, _) = floor_run(&versions[0], "reads");
    assert!(err.contains("goal-reads program attached"), "{err}");
    assert!(
        err.contains("last reads: goroutine 1, stack window of 256 bytes"),
        "{err}"
    );
    // The minimal capture reads registers by Go's ABI and g by its layout:
    // every version.
    for v in versions {
        let (err, _) = floor_run(&v, "minimal");
        assert!(
            err.contains("minimal-capture program attached"),
            "Go {v}: {err}"
        );
        // hot's paced mode calls work(calls, "key"): the string's bytes were
        // read from the target's memory, and g's head holds the caller's
        // goroutine id (paced mode calls from main's goroutine, id 1).
        let line = err
            .lines()
            .find(|l| l.contains("last minimal capture:"))
            .unwrap_or_else(|| panic!("Go {v}: no capture shown: {err}"));
        assert!(line.contains(r#"key="key" (3 bytes)"#), "Go {v}: {line}");
        // The number after `after`, up to `end`.
        let number = |after: &str, end: char| -> i64 {
            line.split(after)
                .nth(1)
                .and_then(|r| r.split(end).next())
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("Go {v}: no number after {after:?}: {line}"))
        };
        assert_eq!(number("goroutine ", ','), 1, "Go {v}: {line}");
        let n = number("n=", ' ');
        assert!(n > 0, "Go {v}: {line}");
    }
}

#[test]
fn the_minimal_capture_delivered_reaches_the_reader_at_every_hit() {
    for v in go_versions() {
        let (err, calls) = floor_run(&v, "delivered");
        assert!(
            err.contains("minimal-delivered program attached"),
            "Go {v}: {err}"
        );
        // Paced at 2000 calls a second, far below what the ring holds
        // between two drains: every hit is an event the reader read.
        assert!(calls >= 1000, "Go {v}: {calls} calls");
        assert!(
            err.contains(&format!("probe: {calls} events delivered; the last: ")),
            "Go {v}: {calls} calls: {err}"
        );
        // The last event's values, decoded from its header and chunks:
        // hot's last call work(calls-1, "key") from main's goroutine; the
        // event holds the header, the 256-byte window and the string (its 3
        // bytes padded to 8), each chunk behind its header.
        let want = format!(
            "the last: n={} key=\"key\", goroutine 1, {} bytes",
            calls - 1,
            std::mem::size_of::<probe_common::EventHeader>()
                + std::mem::size_of::<probe_common::Chunk>()
                + 256
                + std::mem::size_of::<probe_common::Chunk>()
                + 8
        );
        assert!(err.contains(&want), "Go {v}: want {want:?} in {err}");
    }
}

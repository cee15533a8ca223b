//! Helpers for Probe's end-to-end tests: they run the real `probe` binary
//! (as root) against Go programs from `testdata/` built with real Go
//! toolchains. `cargo xtask test` sets `PROBE_BIN`, `PROBE_TESTDATA` and
//! `PROBE_GO_VERSIONS`; without them the defaults under `target/` are used.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `probe` binary under test.
pub fn probe_bin() -> PathBuf {
    let p = std::env::var_os("PROBE_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/debug/probe"));
    assert!(p.exists(), "{} missing: run the tests with `cargo xtask test`", p.display());
    p
}

/// Go versions the testdata was built with.
pub fn go_versions() -> Vec<String> {
    std::env::var("PROBE_GO_VERSIONS")
        .unwrap_or_else(|_| "1.21.13,1.27.3".into())
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// A testdata program built with Go `version`.
pub fn testdata(version: &str, program: &str) -> PathBuf {
    let base = std::env::var_os("PROBE_TESTDATA").map(PathBuf::from).unwrap_or_else(|| root().join("target/testdata"));
    let p = base.join(format!("go{version}/{program}"));
    assert!(p.exists(), "{} missing: run `cargo xtask setup`", p.display());
    p
}

/// A running Go target whose "tick N unix-nanos" lines are collected.
pub struct Target {
    pub child: Child,
    pub ticks: Arc<Mutex<Vec<(u64, i128)>>>,
}

impl Target {
    /// Starts `testdata/store` built with Go `version`, waiting for its first tick.
    pub fn store(version: &str, args: &[&str]) -> Self {
        Self::spawn(&testdata(version, "store"), args)
    }

    /// Starts a `store` program at `exe` (e.g. a private copy), waiting for its first tick.
    pub fn spawn(exe: &std::path::Path, args: &[&str]) -> Self {
        // A freshly copied executable can be briefly "busy": a child another
        // test thread forks meanwhile inherits the copy's write descriptor
        // until its own exec.
        let start = Instant::now();
        let mut child = loop {
            match Command::new(exe).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && start.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("start store"),
            }
        };
        let ticks = Arc::new(Mutex::new(vec![]));
        let out = child.stdout.take().unwrap();
        let t = ticks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut it = line.split_whitespace();
                if let (Some("tick"), Some(n), Some(ts)) = (it.next(), it.next(), it.next()) {
                    t.lock().unwrap().push((n.parse().unwrap(), ts.parse().unwrap()));
                }
            }
        });
        let me = Self { child, ticks };
        me.wait_ticks(1, Duration::from_secs(20));
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until at least `n` ticks were printed.
    pub fn wait_ticks(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        while self.ticks.lock().unwrap().len() < n {
            assert!(start.elapsed() < timeout, "target printed fewer than {n} ticks in {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished `probe` run printed.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `probe ARGS` to completion (killing it after `timeout`).
pub fn probe(args: &[&str], timeout: Duration) -> Run {
    let child = Command::new(probe_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe");
    finish(child, timeout)
}

/// Waits for a started `probe` and collects its output.
pub fn finish(child: Child, timeout: Duration) -> Run {
    let pid = child.id() as i32;
    let done = Arc::new(Mutex::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if *d.lock().unwrap() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let Output { status, stdout, stderr } = child.wait_with_output().expect("wait probe");
    *done.lock().unwrap() = true;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let events = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Run { status, events, stdout, stderr }
}

/// The counter N of a `store` hit, from its key `k<N>` or name `name-<N>`.
pub fn hit_number(ev: &Value) -> u64 {
    let args = &ev["args"];
    if let Some(k) = args["key"].as_str() {
        return k.trim_start_matches('k').parse().unwrap();
    }
    if let Some(n) = args["name"].as_str() {
        return n.trim_start_matches("name-").parse().unwrap();
    }
    panic!("no counter in {ev}");
}

/// The 1-based line of `testdata/<file>` that contains `needle`, so tests do
/// not break when the program is edited.
pub fn source_line(file: &str, needle: &str) -> u64 {
    let src = std::fs::read_to_string(root().join("testdata").join(file)).unwrap();
    src.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not in {file}")) as u64 + 1
}

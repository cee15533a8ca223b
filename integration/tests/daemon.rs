//! `probe daemon` end to end: a real daemon and the real CLI over a unix
//! socket in a temporary directory, real uprobes on a private copy of the
//! Go `store` program (a copy, so `--binary` probes see only this test's
//! processes). What is attached is checked against the kernel: the bpf
//! links the daemon holds (`/proc/<daemon>/fdinfo/*` with `event_type:
//! uprobe`), not only the daemon's own list.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use probe_integration::{finish, go_versions, probe_bin, testdata, Collector, Run, Target};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const PUT: &str = "main.(*Store).Put";

/// A test's private directory, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("probe-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// A private copy of `store` built with the newest Go of the run.
    fn store_copy(&self) -> PathBuf {
        let v = go_versions().last().unwrap().clone();
        let dst = self.0.join("store");
        std::fs::copy(testdata(&v, "store"), &dst).unwrap();
        dst
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `probe daemon` whose stderr is collected.
struct Daemon {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
    /// Environment of client commands (e.g. their TLS files).
    env: Vec<(String, PathBuf)>,
}

impl Daemon {
    /// A daemon on a unix socket in `dir`, its state in `dir/state`.
    fn start(dir: &Path) -> Self {
        let addr = format!("unix:{}", dir.join("probe.sock").display());
        Self::start_with(dir, &["--listen", &addr])
    }

    /// A daemon with these extra arguments; its address is read from its log.
    fn start_with(dir: &Path, args: &[&str]) -> Self {
        Self::start_env(dir, args, &[])
    }

    /// A daemon with these extra arguments and environment variables.
    fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(probe_bin())
            .arg("daemon")
            .args(args)
            .envs(env.iter().copied())
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start probe daemon");
        let log = Arc::new(Mutex::new(String::new()));
        let (err, l) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut d = Daemon {
            child,
            addr: String::new(),
            log,
            env: vec![],
        };
        d.wait("the daemon to listen", Duration::from_secs(20), || {
            d.log().contains("listening on")
        });
        let log = d.log();
        let at = log.split("listening on ").nth(1).unwrap();
        d.addr = at.split_whitespace().next().unwrap().to_owned();
        d
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `probe ARGS` as a client of this daemon, stdout piped.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(probe_bin());
        c.args(args)
            .env("PROBE_DAEMON", &self.addr)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::null()).stdout(Stdio::piped());
        c
    }

    /// Runs a client command against this daemon.
    fn cli(&self, args: &[&str]) -> Run {
        finish(
            self.command(args)
                .stderr(Stdio::piped())
                .spawn()
                .expect("start probe"),
            T,
        )
    }

    /// `probe bp ls --json`.
    fn breakpoints(&self) -> Vec<Value> {
        let r = self.cli(&["bp", "ls", "--json"]);
        assert!(r.status.success(), "bp ls: {}", r.stderr);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn sessions(&self) -> Vec<Value> {
        let r = self.cli(&["sessions", "--json"]);
        assert!(r.status.success(), "sessions: {}", r.stderr);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `probe history` of one breakpoint.
    fn history(&self, bp: &str, limit: u32) -> Vec<Value> {
        let r = self.cli(&["history", "--bp", bp, "--limit", &limit.to_string()]);
        assert!(r.status.success(), "history: {}", r.stderr);
        r.events
    }

    /// The uprobes this daemon has attached, as the kernel reports them:
    /// (file, offset) of every bpf link of event type uprobe it holds.
    fn uprobes(&self) -> Vec<(String, String)> {
        kernel_uprobes(self.pid())
    }

    /// Polls `cond` every 50 ms until it holds, failing after `timeout`.
    fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\n--- daemon log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM detaches everything.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
    }
}

/// Every uprobe bpf link process `pid` holds, from the kernel's fdinfo.
fn kernel_uprobes(pid: u32) -> Vec<(String, String)> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
        };
        if field("event_type:").as_deref() == Some("uprobe") {
            out.push((
                field("name:").unwrap_or_default(),
                field("offset:").unwrap_or_default(),
            ));
        }
    }
    out
}

/// The counter N of a Put hit: `s.puts` (its `key` is redacted).
fn n_of(ev: &Value) -> u64 {
    ev["args"]["s"]["puts"]
        .as_u64()
        .unwrap_or_else(|| panic!("no s.puts: {ev}"))
}

/// One of this test's Put hits, checked against what the program passed.
fn check_put(ev: &Value, pids: &[u32]) {
    assert_eq!(ev["probe"], PUT, "{ev}");
    assert_eq!(ev["kind"], "entry");
    assert!(
        pids.contains(&(ev["pid"].as_u64().unwrap() as u32)),
        "a hit from another process: {ev}"
    );
    // "key" is a secret-like name: redacted by default, in events and history alike.
    assert_eq!(
        ev["args"]["key"],
        serde_json::json!({"@redacted": "key"}),
        "{ev}"
    );
    let n = n_of(ev);
    assert_eq!(
        ev["args"]["val"],
        serde_json::json!([n % 256, (n + 1) % 256, (n + 2) % 256]),
        "{ev}"
    );
    assert_eq!(ev["args"]["s"]["name"], "main-store", "{ev}");
}

/// A `probe watch` client whose stdout lines and stderr are collected.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    fn start(d: &Daemon, args: &[&str]) -> Self {
        let args: Vec<&str> = ["watch"].iter().chain(args).copied().collect();
        let mut child = d
            .command(&args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start probe watch");
        let lines = Arc::new(Mutex::new(vec![]));
        let (out, l) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err, e) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("probe watch: {line}");
                let mut e = e.lock().unwrap();
                e.push_str(&line);
                e.push('\n');
            }
        });
        Watch {
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_streams_hits_and_a_sigkilled_client_is_detached_after_its_ttl() {
    let dir = Dir::new("watch");
    let exe = dir.store_copy();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let d = Daemon::start(&dir.0);
    assert!(d.uprobes().is_empty());
    let ttl = Duration::from_secs(4);
    let mut w = Watch::start(
        &d,
        &[
            "--binary",
            exe.to_str().unwrap(),
            "--func",
            PUT,
            "--ttl",
            "4s",
        ],
    );
    d.wait("hits through probe watch", T, || w.events().len() >= 5);
    for ev in w.events() {
        check_put(&ev, &[target.pid()]);
    }
    // Consecutive calls, in order, none lost on the way.
    let ns: Vec<u64> = w.events().iter().map(n_of).collect();
    assert!(ns.windows(2).all(|p| p[1] == p[0] + 1), "{ns:?}");
    let probes = d.uprobes();
    assert_eq!(probes.len(), 1, "one uprobe in the kernel: {probes:?}");
    assert_eq!(probes[0].0, exe.to_str().unwrap());
    let s = d.sessions();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["connected"], true);
    assert_eq!(s[0]["ttl_ms"], 4000);
    assert_eq!(s[0]["breakpoints"].as_array().unwrap().len(), 1);

    // The client dies without a word: the breakpoint outlives it by the TTL
    // (it might reconnect), then the kernel has no uprobe of it left.
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    let killed = Instant::now();
    d.wait("the session to be seen as disconnected", T, || {
        d.sessions()
            .first()
            .is_some_and(|s| s["connected"] == false)
    });
    if killed.elapsed() < ttl - Duration::from_millis(1500) {
        assert_eq!(d.uprobes().len(), 1, "detached before the TTL\n{}", d.log());
    }
    d.wait(
        "the uprobe to be detached after the TTL",
        ttl + Duration::from_secs(10),
        || d.uprobes().is_empty(),
    );
    assert!(
        killed.elapsed() >= ttl - Duration::from_millis(300),
        "detached after {:?}, before the TTL of {ttl:?}",
        killed.elapsed()
    );
    assert!(d.breakpoints().is_empty());
    assert!(d.sessions().is_empty());
    assert!(d.log().contains("expired"), "{}", d.log());
    // The target never noticed.
    let before = target.ticks.lock().unwrap().len();
    target.wait_ticks(before + 3, Duration::from_secs(10));
}

#[test]
fn sigterm_stops_the_daemon_promptly_even_with_a_session_open() {
    let dir = Dir::new("sigterm");
    let exe = dir.store_copy();
    let _target = Target::spawn(&exe, &["-interval", "20ms"]);
    let mut d = Daemon::start(&dir.0);
    let mut w = Watch::start(&d, &["--binary", exe.to_str().unwrap(), "--func", PUT]);
    d.wait("hits", T, || !w.events().is_empty());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "the daemon is still running 8 s after SIGTERM\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(d.log().contains("bp-1: detached"), "{}", d.log());
    // The client is told, and exits.
    let s = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "probe watch outlived its daemon"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!s.success());
}

#[test]
fn a_client_that_does_not_read_loses_events_counted_not_daemon_memory() {
    let dir = Dir::new("slow");
    let exe = dir.store_copy();
    let _target = Target::spawn(&exe, &["-interval", "1ms"]);
    let d = Daemon::start(&dir.0);
    // Its stdout is a pipe nobody reads: the client stops reading its
    // stream, the connection's flow control stops the daemon's sends, and
    // the session's bounded queue overflows.
    let args = [
        "watch",
        "--binary",
        exe.to_str().unwrap(),
        "--func",
        PUT,
        "--ttl",
        "60s",
    ];
    let mut w = d.command(&args).stderr(Stdio::null()).spawn().unwrap();
    d.wait("events dropped for the slow session", T, || {
        d.sessions()
            .first()
            .is_some_and(|s| s["dropped"].as_u64() > Some(0))
    });
    // The breakpoint itself is unaffected: it keeps collecting into the history.
    let hits = d.breakpoints()[0]["hits"].as_u64().unwrap();
    d.wait("more hits", T, || {
        d.breakpoints()[0]["hits"].as_u64().unwrap() > hits + 100
    });
    let rss_kib = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = rss_kib(d.pid());
    d.wait("more dropped events", T, || {
        d.sessions()[0]["dropped"].as_u64().unwrap() > 2000
    });
    let after = rss_kib(d.pid());
    assert!(
        after < before + 64 * 1024,
        "the daemon grew from {before} KiB to {after} KiB while the client did not read"
    );
    let _ = w.kill();
    let _ = w.wait();
}

#[test]
fn a_clean_watch_exit_detaches_at_once_and_max_hits_stops_it() {
    let dir = Dir::new("clean");
    let exe = dir.store_copy();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let d = Daemon::start(&dir.0);
    let pid = target.pid().to_string();
    let r = d.cli(&[
        "watch",
        "--pid",
        &pid,
        "--func",
        PUT,
        "--max-hits",
        "3",
        "--cond",
        "key != \"k1\"",
    ]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(r.events.len(), 3, "{}", r.stdout);
    for ev in &r.events {
        check_put(ev, &[target.pid()]);
    }
    // Removed on the way out, not after the 30 s default TTL.
    d.wait(
        "the breakpoint to be removed",
        Duration::from_secs(5),
        || d.uprobes().is_empty() && d.breakpoints().is_empty(),
    );
}

#[test]
fn a_sigkilled_daemon_restarts_with_the_same_breakpoints_and_its_history() {
    let dir = Dir::new("restart");
    let exe = dir.store_copy();
    let exe_s = exe.to_str().unwrap();
    let first = Target::spawn(&exe, &["-interval", "20ms"]);
    let mut d = Daemon::start(&dir.0);

    let ok = d.cli(&["bp", "add", "--binary", exe_s, "--func", PUT]);
    assert!(ok.status.success(), "{}\n{}", ok.stdout, ok.stderr);
    assert!(ok.stdout.starts_with("bp-1\tattached"), "{}", ok.stdout);
    // A breakpoint that cannot be resolved reports why, as its own status…
    let bad = d.cli(&["bp", "add", "--binary", exe_s, "--func", "main.NoSuchFunc"]);
    assert!(!bad.status.success());
    assert!(
        bad.stdout.contains("bp-2\terror") && bad.stdout.contains("unknown_function"),
        "{}",
        bad.stdout
    );
    // …and never stops the others: bp-1 keeps collecting.
    d.wait("hits of bp-1 in the history", T, || {
        d.history("bp-1", 1000).len() >= 5
    });
    let bps = d.breakpoints();
    assert_eq!(bps.len(), 2, "{bps:?}");
    assert_eq!(
        (bps[0]["id"].as_str(), bps[0]["state"].as_str()),
        (Some("bp-1"), Some("attached"))
    );
    assert_eq!(
        (
            bps[1]["id"].as_str(),
            bps[1]["state"].as_str(),
            bps[1]["error_kind"].as_str()
        ),
        (Some("bp-2"), Some("error"), Some("unknown_function"))
    );
    assert!(bps[1]["error"]
        .as_str()
        .unwrap()
        .contains("main.NoSuchFunc"));
    let probes = d.uprobes();
    assert_eq!(probes.len(), 1, "{probes:?}");
    let before: Vec<Value> = d.history("bp-1", 1000);
    for ev in &before {
        check_put(ev, &[first.pid()]);
        assert_eq!(ev["bp"], "bp-1");
    }

    // SIGKILL: no chance to clean up. The kernel drops the links with the process.
    d.kill9();
    // A process of the binary started while no daemon runs is traced after the restart.
    let second = Target::spawn(&exe, &["-interval", "20ms"]);
    let restarted_at = Instant::now();
    let d = Daemon::start(&dir.0);
    // Both are resolved again, each on its own; bp-2 fails the same way.
    d.wait("bp-1 attached again and bp-2 failed again", T, || {
        let b = d.breakpoints();
        b.iter()
            .any(|b| b["id"] == "bp-1" && b["state"] == "attached")
            && b.iter()
                .any(|b| b["id"] == "bp-2" && b["state"] != "pending")
    });
    let after = d.uprobes();
    assert_eq!(
        after, probes,
        "the same uprobe, in the kernel, after the restart"
    );
    let bps = d.breakpoints();
    assert_eq!(bps.len(), 2, "{bps:?}");
    assert_eq!(
        bps[1]["state"], "error",
        "bp-2 is retried and fails the same way: {bps:?}"
    );
    // New hits arrive, from both processes, and the old ones are still there.
    d.wait("hits from both processes after the restart", T, || {
        let h = d.history("bp-1", 1000);
        let pids: Vec<u64> = h
            .iter()
            .skip(before.len())
            .filter_map(|e| e["pid"].as_u64())
            .collect();
        pids.contains(&(first.pid() as u64)) && pids.contains(&(second.pid() as u64))
    });
    let h = d.history("bp-1", 1000);
    for ev in &h {
        check_put(ev, &[first.pid(), second.pid()]);
    }
    let old_times: Vec<&str> = before.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(
        old_times.iter().all(|t| h.iter().any(|e| e["time"] == *t)),
        "hits from before the kill are kept"
    );
    assert!(restarted_at.elapsed() < T);
    // `--limit` returns the most recent hits, oldest first.
    let last3 = d.history("bp-1", 3);
    assert_eq!(last3.len(), 3);
    assert!(last3
        .windows(2)
        .all(|w| w[0]["time"].as_str() <= w[1]["time"].as_str()));

    // Removing detaches it in the kernel, and it stays removed.
    let rm = d.cli(&["bp", "rm", "bp-1"]);
    assert!(rm.status.success(), "{}", rm.stderr);
    d.wait("bp-1 detached", Duration::from_secs(5), || {
        d.uprobes().is_empty()
    });
    let rm_again = d.cli(&["bp", "rm", "bp-1"]);
    assert!(
        !rm_again.status.success() && rm_again.stderr.contains("no breakpoint bp-1"),
        "{}",
        rm_again.stderr
    );
    drop(d);
    let d = Daemon::start(&dir.0);
    let ids: Vec<Value> = d.breakpoints().iter().map(|b| b["id"].clone()).collect();
    assert_eq!(ids, vec![Value::from("bp-2")]);
    // Ids are never reused.
    let next = d.cli(&[
        "bp",
        "add",
        "--pid",
        &first.pid().to_string(),
        "--func",
        PUT,
    ]);
    assert!(next.stdout.starts_with("bp-3\t"), "{}", next.stdout);
}

#[test]
fn a_breakpoint_with_an_expiry_is_detached_when_it_expires() {
    let dir = Dir::new("expiry");
    let exe = dir.store_copy();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let d = Daemon::start(&dir.0);
    let pid = target.pid().to_string();
    // The expiry counts from the request (not from the answer, which waits for the attach).
    let added = Instant::now();
    let r = d.cli(&["bp", "add", "--pid", &pid, "--func", PUT, "--expires", "3s"]);
    assert!(r.status.success(), "{}", r.stderr);
    assert_eq!(d.uprobes().len(), 1);
    let bps = d.breakpoints();
    assert!(bps[0]["expires_at_ms"].as_u64().unwrap() > 0);
    d.wait("the breakpoint to expire", Duration::from_secs(15), || {
        d.uprobes().is_empty()
    });
    assert!(
        added.elapsed() >= Duration::from_millis(2950),
        "expired early: {:?}",
        added.elapsed()
    );
    assert!(d.breakpoints().is_empty());
    // Its hits stay in the history.
    assert!(!d.history("bp-1", 10).is_empty());
}

#[test]
fn a_breakpoint_on_a_process_that_exits_is_reported_detached() {
    let dir = Dir::new("exit");
    let exe = dir.store_copy();
    let mut target = Target::spawn(&exe, &["-interval", "20ms"]);
    let d = Daemon::start(&dir.0);
    let pid = target.pid().to_string();
    assert!(d
        .cli(&["bp", "add", "--pid", &pid, "--func", PUT])
        .status
        .success());
    target.child.kill().unwrap();
    target.child.wait().unwrap();
    d.wait("the breakpoint to be detached", T, || {
        d.breakpoints()
            .first()
            .is_some_and(|b| b["state"] == "detached")
    });
    assert!(d.uprobes().is_empty());
    let b = &d.breakpoints()[0];
    assert!(b["error"].as_str().unwrap().contains("exited"), "{b}");
    // A pid that does not exist is an error with its kind.
    let r = d.cli(&["bp", "add", "--pid", &pid, "--func", PUT]);
    assert!(
        !r.status.success() && r.stdout.contains("no_such_process"),
        "{}",
        r.stdout
    );
}

#[test]
fn clients_say_clearly_when_no_daemon_listens() {
    let dir = Dir::new("nodaemon");
    let addr = format!("unix:{}", dir.0.join("none.sock").display());
    let r = probe_integration::probe(&["bp", "ls", "--daemon", &addr], T);
    assert!(!r.status.success());
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the probe daemon at {addr}: is `probe daemon` running?"
        )),
        "{}",
        r.stderr
    );
    let r = probe_integration::probe(&["watch", "--daemon", &addr, "--func", PUT], T);
    assert!(
        !r.status.success() && r.stderr.contains("--pid PID or --binary PATH"),
        "{}",
        r.stderr
    );
}

/// A CA, and PEM files of certificates it signed, in `dir`.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "probe test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            ca,
            dir: dir.to_owned(),
        }
    }

    /// Writes NAME.pem and NAME.key: a certificate with subject CN `cn` and these SANs.
    fn issue(&self, name: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// Client environment for `probe` as this certificate's holder.
    fn client_env(&self, cert: Option<(PathBuf, PathBuf)>) -> Vec<(String, PathBuf)> {
        let mut env = vec![("PROBE_TLS_CA".to_owned(), self.dir.join("ca.pem"))];
        if let Some((c, k)) = cert {
            env.push(("PROBE_TLS_CERT".to_owned(), c));
            env.push(("PROBE_TLS_KEY".to_owned(), k));
        }
        env
    }
}

#[test]
fn mtls_identities_are_held_to_the_policy_and_secrets_are_redacted() {
    let dir = Dir::new("mtls");
    let exe = dir.store_copy();
    let exe_s = exe.to_str().unwrap();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.issue("daemon", "probe daemon", &["localhost", "127.0.0.1"]);
    let alice = pki.issue("alice", "alice", &["alice.example"]);
    // Known to the policy by a SAN only: identities are CN, then SANs.
    let ops = pki.issue("ops", "someone", &["ops.example"]);
    let mallory = pki.issue("mallory", "mallory", &[]);
    let policy = dir.0.join("policy.json");
    let p = serde_json::json!({
        "identities": {
            "alice": { "binaries": [format!("{}/*", dir.0.display())], "locals": false, "max_bytes": 4096 },
            "ops.example": { "uids": [0] }
        },
        "redact": ["ttl"]
    });
    std::fs::write(&policy, p.to_string()).unwrap();
    let mut d = Daemon::start_with(
        &dir.0,
        &[
            "--listen",
            "tcp:127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            dir.0.join("ca.pem").to_str().unwrap(),
        ],
    );
    assert!(d.addr.starts_with("tcp:127.0.0.1:"), "{}", d.addr);
    assert!(d.log().contains("with mTLS"), "{}", d.log());

    d.env = pki.client_env(Some(alice.clone()));
    let ok = d.cli(&[
        "bp",
        "add",
        "--binary",
        exe_s,
        "--func",
        PUT,
        "--max-bytes",
        "4096",
    ]);
    assert!(
        ok.status.success(),
        "{}\n{}\n{}",
        ok.stdout,
        ok.stderr,
        d.log()
    );
    d.wait("alice's hits", T, || !d.history("bp-1", 10).is_empty());
    let ev = &d.history("bp-1", 1)[0];
    // The policy's own redact list: ttl is hidden, key is not.
    assert_eq!(
        ev["args"]["ttl"],
        serde_json::json!({"@redacted": "ttl"}),
        "{ev}"
    );
    assert_eq!(ev["args"]["key"], format!("k{}", n_of(ev)), "{ev}");
    assert_eq!(d.breakpoints()[0]["state"], "attached");
    // What alice's rule does not grant is refused, with why, before anything is attached.
    let r = d.cli(&[
        "bp",
        "add",
        "--binary",
        exe_s,
        "--func",
        PUT,
        "--capture",
        "args,locals",
        "--max-bytes",
        "4096",
    ]);
    assert!(
        !r.status.success() && r.stderr.contains("does not let alice capture locals"),
        "{}",
        r.stderr
    );
    let r = d.cli(&["bp", "add", "--binary", exe_s, "--func", PUT]);
    assert!(
        !r.status.success() && r.stderr.contains("more than 4096 bytes"),
        "{}",
        r.stderr
    );
    let other = testdata(go_versions().last().unwrap(), "store");
    let r = d.cli(&[
        "bp",
        "add",
        "--binary",
        other.to_str().unwrap(),
        "--func",
        PUT,
        "--max-bytes",
        "4096",
    ]);
    assert!(
        !r.status.success() && r.stderr.contains("does not let alice probe"),
        "{}",
        r.stderr
    );

    // ops (by its SAN) is limited to uid 0: a --binary is refused, a root pid is fine.
    d.env = pki.client_env(Some(ops));
    let r = d.cli(&["bp", "add", "--binary", exe_s, "--func", PUT]);
    assert!(
        !r.status.success() && r.stderr.contains("name a --pid"),
        "{}",
        r.stderr
    );
    let r = d.cli(&[
        "bp",
        "add",
        "--pid",
        &target.pid().to_string(),
        "--func",
        PUT,
    ]);
    assert!(r.status.success(), "{}", r.stderr);

    // An identity the policy does not name may do nothing, not even remove alice's breakpoint.
    d.env = pki.client_env(Some(mallory));
    let r = d.cli(&["bp", "add", "--binary", exe_s, "--func", PUT]);
    assert!(
        !r.status.success() && r.stderr.contains("the policy grants \"mallory\" nothing"),
        "{}",
        r.stderr
    );
    let r = d.cli(&["bp", "rm", "bp-1"]);
    assert!(
        !r.status.success() && r.stderr.contains("bp-1 belongs to \"alice\""),
        "{}",
        r.stderr
    );

    // No client certificate: no connection at all.
    d.env = pki.client_env(None);
    let r = d.cli(&["bp", "ls"]);
    assert!(!r.status.success(), "{}", r.stdout);
    // Nor plain TCP.
    d.env = vec![];
    let r = d.cli(&["bp", "ls"]);
    assert!(!r.status.success(), "{}", r.stdout);

    let bps = {
        d.env = pki.client_env(Some(alice));
        d.breakpoints()
    };
    let owners: Vec<&str> = bps.iter().map(|b| b["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, ["alice", "ops.example"]);
    assert_eq!(d.uprobes().len(), 2, "{}", d.log());
}

// ---------------------------------------------------------------------------
// Fleet mode: daemons sharing breakpoints through a real etcd server
// (Debian's `etcd-server`, installed by `cargo xtask test`), started here
// on free ports with a private data directory.
// ---------------------------------------------------------------------------

/// A real etcd server, killed on drop.
struct Etcd {
    child: Option<Child>,
    url: String,
    args: Vec<String>,
    log: PathBuf,
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn start(dir: &Path) -> Self {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join("etcd-data");
        let args = vec![
            "--name".into(),
            "default".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            url.clone(),
            "--advertise-client-urls".into(),
            url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("default={peer_url}"),
        ];
        let mut e = Etcd {
            child: None,
            url,
            args,
            log: dir.join("etcd.log"),
        };
        e.restart();
        e
    }

    /// Starts it (again, with the same data and ports) and waits until it is healthy.
    fn restart(&mut self) {
        let bin = std::env::var_os("PROBE_ETCD").unwrap_or_else(|| "etcd".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({bin:?}): {e}; `cargo xtask test` installs Debian's etcd-server")
            });
        self.child = Some(child);
        let start = Instant::now();
        while !self.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd not healthy after 30 s:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /health` answers `"health":"true"`.
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut body = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut body).is_ok()
            && body.contains("\"health\":\"true\"")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A copy of `store` under a name of its own, so that selecting by base
/// name sees only this test's processes.
fn store_named(dir: &Dir, name: &str) -> PathBuf {
    let v = go_versions().last().unwrap().clone();
    let dst = dir.0.join(name);
    std::fs::copy(testdata(&v, "store"), &dst).unwrap();
    dst
}

/// A fleet member: its own socket and state under `dir/<host>`.
fn fleet_daemon(dir: &Dir, etcd: &Etcd, prefix: &str, host: &str, extra: &[&str]) -> Daemon {
    let d = dir.0.join(host);
    std::fs::create_dir_all(&d).unwrap();
    let listen = format!("unix:{}", d.join("probe.sock").display());
    let mut args = vec![
        "--listen",
        &listen,
        "--etcd",
        &etcd.url,
        "--etcd-prefix",
        prefix,
        "--host-name",
        host,
    ];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_with(&d, &args);
    daemon.wait("the fleet watch", T, || {
        daemon.log().contains("watching as host")
    });
    daemon
}

impl Daemon {
    /// The fleet breakpoint `id` as `probe bp ls --json` shows it.
    fn fleet_bp(&self, id: &str) -> Option<Value> {
        self.breakpoints()
            .into_iter()
            .find(|b| b["id"] == id && b["fleet"] == true)
    }

    /// Host `host`'s status of fleet breakpoint `id`, as this daemon sees it.
    fn host_state(&self, id: &str, host: &str) -> Option<String> {
        let b = self.fleet_bp(id)?;
        b["hosts"]
            .as_array()?
            .iter()
            .find(|h| h["host"] == host)
            .and_then(|h| h["state"].as_str().map(str::to_owned))
    }
}

/// `probe bp add --fleet …` on `d`; returns the new id.
fn fleet_add(d: &Daemon, args: &[&str]) -> (String, Run) {
    let mut all = vec!["bp", "add", "--fleet"];
    all.extend_from_slice(args);
    let r = d.cli(&all);
    assert!(
        r.status.success(),
        "{}\n{}\n{}",
        r.stdout,
        r.stderr,
        d.log()
    );
    let id = r.stdout.split('\t').next().unwrap().to_owned();
    assert!(id.starts_with("fleet-"), "{}", r.stdout);
    (id, r)
}

#[test]
fn two_daemons_sharing_etcd_both_apply_a_breakpoint_added_once_and_both_remove_it() {
    let dir = Dir::new("fleet-both");
    let etcd = Etcd::start(&dir.0);
    let exe = store_named(&dir, "fleetboth");
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let a = fleet_daemon(&dir, &etcd, "/both/", "host-a", &["--label", "env=prod"]);
    let b = fleet_daemon(&dir, &etcd, "/both/", "host-b", &["--label", "env=dev"]);
    assert!(a.uprobes().is_empty() && b.uprobes().is_empty());

    // Added once, through host-a, selected by the executable's base name.
    let (id, r) = fleet_add(&a, &["--select-binary", "fleetboth", "--func", PUT]);
    assert!(r.stdout.contains("\tattached\t"), "{}", r.stdout);
    assert!(r.stderr.contains("stored in etcd"), "{}", r.stderr);

    // Both daemons attached it, as the kernel sees it: one uprobe each, on this file.
    for d in [&a, &b] {
        d.wait("the fleet breakpoint's uprobe", T, || {
            d.uprobes().len() == 1
        });
        assert_eq!(d.uprobes()[0].0, exe.to_str().unwrap(), "{}", d.log());
    }
    // Both see the hits (each daemon its own copy of every call).
    for d in [&a, &b] {
        d.wait("hits of the fleet breakpoint", T, || {
            d.history(&id, 100).len() >= 3
        });
        for ev in d.history(&id, 100) {
            check_put(&ev, &[target.pid()]);
            assert_eq!(ev["bp"], id.as_str());
        }
    }
    // Either daemon shows where it is applied (the other's status comes through etcd).
    for d in [&a, &b] {
        d.wait("both hosts attached in bp ls", T, || {
            d.host_state(&id, "host-a").as_deref() == Some("attached")
                && d.host_state(&id, "host-b").as_deref() == Some("attached")
        });
        let bp = d.fleet_bp(&id).unwrap();
        assert_eq!(bp["selector"]["binary"], "fleetboth", "{bp}");
        assert_eq!(bp["owner"], "local", "{bp}");
    }
    // Fleet breakpoints are etcd's, not the local store's.
    let ls = b.cli(&["bp", "ls"]);
    assert!(
        ls.stdout.contains("hosts: host-a=attached") && ls.stdout.contains("host-b=attached"),
        "{}",
        ls.stdout
    );

    // Removed once, through host-b: both detach, in the kernel.
    let rm = b.cli(&["bp", "rm", &id]);
    assert!(rm.status.success(), "{}", rm.stderr);
    for d in [&a, &b] {
        d.wait("the fleet breakpoint detached", T, || {
            d.uprobes().is_empty()
        });
        d.wait("the fleet breakpoint gone from bp ls", T, || {
            d.fleet_bp(&id).is_none()
        });
    }
    let again = a.cli(&["bp", "rm", &id]);
    assert!(
        !again.status.success() && again.stderr.contains(&format!("no breakpoint {id}")),
        "{}",
        again.stderr
    );

    // An expiring one: etcd deletes it (a lease), and both detach.
    let added = Instant::now();
    let (id2, _) = fleet_add(
        &b,
        &[
            "--select-binary",
            "fleetboth",
            "--func",
            PUT,
            "--expires",
            "4s",
        ],
    );
    assert_ne!(id2, id);
    for d in [&a, &b] {
        d.wait("the expiring breakpoint attached", T, || {
            d.uprobes().len() == 1
        });
    }
    for d in [&a, &b] {
        d.wait("the expired breakpoint detached", T, || {
            d.uprobes().is_empty()
        });
    }
    assert!(
        added.elapsed() >= Duration::from_millis(3500),
        "expired early: {:?}",
        added.elapsed()
    );
    assert!(a.fleet_bp(&id2).is_none() && b.fleet_bp(&id2).is_none());
    // The target never noticed.
    let before = target.ticks.lock().unwrap().len();
    target.wait_ticks(before + 3, Duration::from_secs(10));
}

#[test]
fn a_fleet_selector_applies_only_where_its_labels_match_and_each_policy_is_enforced() {
    let dir = Dir::new("fleet-labels");
    let etcd = Etcd::start(&dir.0);
    let exe = store_named(&dir, "fleetlabels");
    let prod = fleet_daemon(&dir, &etcd, "/labels/", "prod-1", &["--label", "env=prod"]);
    let dev = fleet_daemon(&dir, &etcd, "/labels/", "dev-1", &["--label", "env=dev"]);
    // Selected by its labels, but its policy forbids this executable.
    let policy = dir.0.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"identities": {"local": {"binaries": ["/nowhere/*"]}}}"#,
    )
    .unwrap();
    let strict = fleet_daemon(
        &dir,
        &etcd,
        "/labels/",
        "prod-strict",
        &["--label", "env=prod", "--policy", policy.to_str().unwrap()],
    );

    // Added through a daemon it does not apply to, before any process runs
    // the binary; selected by a path glob.
    let glob = format!("{}/*", dir.0.display());
    let (id, r) = fleet_add(
        &dev,
        &[
            "--select-binary",
            &glob,
            "--select-label",
            "env=prod",
            "--func",
            PUT,
        ],
    );
    assert!(r.stdout.contains("\tskipped\t"), "{}", r.stdout);
    prod.wait("prod-1 waiting for a process", T, || {
        prod.fleet_bp(&id).is_some_and(|b| b["state"] == "waiting")
    });

    // A process of the binary starts: the matching daemon attaches to it.
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    prod.wait("prod-1 attached", T, || prod.uprobes().len() == 1);
    prod.wait("hits on prod-1", T, || !prod.history(&id, 10).is_empty());
    check_put(&prod.history(&id, 1)[0], &[target.pid()]);

    // The policy of prod-strict refuses it: recorded as its error, published.
    strict.wait("prod-strict's refusal", T, || {
        strict.fleet_bp(&id).is_some_and(|b| b["state"] == "error")
    });
    let b = strict.fleet_bp(&id).unwrap();
    assert_eq!(b["error_kind"], "policy", "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("does not let local probe"),
        "{b}"
    );
    dev.wait("every host's state through etcd", T, || {
        dev.host_state(&id, "prod-1").as_deref() == Some("attached")
            && dev.host_state(&id, "prod-strict").as_deref() == Some("error")
            && dev.host_state(&id, "dev-1").as_deref() == Some("skipped")
    });
    let b = dev.fleet_bp(&id).unwrap();
    assert!(
        b["error"].as_str().unwrap().contains("lack env=prod"),
        "{b}"
    );
    // Nothing attached where it does not apply, in the kernel.
    assert!(dev.uprobes().is_empty(), "{}", dev.log());
    assert!(strict.uprobes().is_empty(), "{}", strict.log());
    assert_eq!(prod.uprobes().len(), 1);

    let rm = prod.cli(&["bp", "rm", &id]);
    assert!(rm.status.success(), "{}", rm.stderr);
    prod.wait("prod-1 detached", T, || prod.uprobes().is_empty());
}

#[test]
fn late_and_restarted_daemons_apply_what_etcd_holds_and_an_etcd_outage_detaches_nothing() {
    let dir = Dir::new("fleet-late");
    let mut etcd = Etcd::start(&dir.0);
    let exe = store_named(&dir, "fleetlate");
    let exe_s = exe.to_str().unwrap();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let a = fleet_daemon(&dir, &etcd, "/late/", "early", &[]);
    // An absolute --binary: that path on every host.
    let (id, _) = fleet_add(&a, &["--binary", exe_s, "--func", PUT]);
    a.wait("early attached", T, || a.uprobes().len() == 1);

    // A daemon that starts afterwards picks it up from etcd.
    let mut late = fleet_daemon(&dir, &etcd, "/late/", "late", &[]);
    late.wait("late attached", T, || late.uprobes().len() == 1);
    // Killed and started again, it applies it again (fleet breakpoints
    // live in etcd, not in its state directory).
    late.kill9();
    let late = {
        drop(late);
        fleet_daemon(&dir, &etcd, "/late/", "late", &[])
    };
    late.wait("late attached again after a restart", T, || {
        late.uprobes().len() == 1
    });
    late.wait("hits after the restart", T, || {
        !late.history(&id, 10).is_empty()
    });

    // etcd goes away: what is applied stays applied (in the kernel), and hits go on.
    etcd.stop();
    late.wait("the daemon to notice etcd is gone", T, || {
        late.log().contains("unreachable")
    });
    let hits = late.history(&id, 1000).len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.uprobes().len(), 1, "{}", a.log());
    assert_eq!(late.uprobes().len(), 1, "{}", late.log());
    late.wait("hits while etcd is down", T, || {
        late.history(&id, 1000).len() > hits
    });
    // `bp ls` still answers, from this daemon's own view.
    assert_eq!(
        late.fleet_bp(&id).map(|b| b["state"].clone()),
        Some(Value::from("attached"))
    );

    // etcd is back: the daemons reconnect by themselves, and a removal
    // through one reaches the other.
    etcd.restart();
    let rm = a.cli(&["bp", "rm", &id]);
    assert!(rm.status.success(), "{}\n{}", rm.stderr, a.log());
    late.wait("late detached after the removal", T, || {
        late.uprobes().is_empty()
    });
    a.wait("early detached", T, || a.uprobes().is_empty());
    drop(target);
}

// ---------------------------------------------------------------------------
// Capture policy (no strings), CPU budget, OTLP export, session resume.
// ---------------------------------------------------------------------------

/// The bpf link ids of the uprobes process `pid` holds: a link detached and
/// attached again gets a new id.
fn kernel_uprobe_links(pid: u32) -> Vec<u64> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(info) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
        };
        if field("event_type:").as_deref() == Some("uprobe") {
            out.push(field("link_id:").and_then(|v| v.parse().ok()).unwrap_or(0));
        }
    }
    out.sort();
    out
}

/// The memory chunks of every event the daemon described
/// (`PROBE_DEBUG_EVENTS`): (captured length, full length the read was
/// for) per chunk. Only string reads have a full length.
fn debug_chunks(log: &str) -> Vec<Vec<(u64, u64)>> {
    log.lines()
        .filter_map(|l| l.split("chunks=[").nth(1))
        .map(|c| {
            c.trim_end_matches(']')
                .split_whitespace()
                .filter_map(|ch| {
                    let (_, rest) = ch.split_once('+')?;
                    let (len, want) = rest.split_once('/')?;
                    Some((len.parse().ok()?, want.parse().ok()?))
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_policy_without_strings_keeps_their_contents_in_the_kernel() {
    let dir = Dir::new("nostrings");
    let exe = dir.store_copy();
    let exe_s = exe.to_str().unwrap();
    let _target = Target::spawn(&exe, &["-interval", "20ms"]);
    let pki = Pki::new(&dir.0);
    let (cert, key) = pki.issue("daemon", "probe daemon", &["localhost", "127.0.0.1"]);
    let alice = pki.issue("alice", "alice", &[]);
    let bob = pki.issue("bob", "bob", &[]);
    let policy = dir.0.join("policy.json");
    // No redaction here: what hides alice's strings must be the policy.
    let p = serde_json::json!({
        "identities": { "alice": { "strings": false }, "bob": {} },
        "redact": []
    });
    std::fs::write(&policy, p.to_string()).unwrap();
    let mut d = Daemon::start_env(
        &dir.0,
        &[
            "--listen",
            "tcp:127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            dir.0.join("ca.pem").to_str().unwrap(),
        ],
        // Every event's memory chunks, as the kernel sent them, in the log.
        &[("PROBE_DEBUG_EVENTS", "1")],
    );

    d.env = pki.client_env(Some(alice.clone()));
    // A condition on a string would let the kernel compare the bytes for alice.
    let r = d.cli(&[
        "bp",
        "add",
        "--binary",
        exe_s,
        "--func",
        PUT,
        "--cond",
        "key == \"k5\"",
    ]);
    // Refused when it is resolved against the binary (only then are the
    // types known), before anything is attached: an `invalid` breakpoint.
    assert!(
        !r.status.success() && r.stdout.contains("withholds strings"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(d.uprobes().is_empty());
    let bad = r.stdout.split_whitespace().next().unwrap().to_owned();
    assert!(d.cli(&["bp", "rm", &bad]).status.success());
    let r = d.cli(&[
        "bp",
        "add",
        "--binary",
        exe_s,
        "--func",
        PUT,
        "--cond",
        "len(key) > 1",
    ]);
    assert!(r.status.success(), "{}\n{}", r.stderr, d.log());
    let id_a = r.stdout.split_whitespace().next().unwrap().to_owned();
    assert!(
        r.stdout.contains("strings withheld (policy)"),
        "{}",
        r.stdout
    );
    d.wait("alice's hits", T, || d.history(&id_a, 10).len() >= 5);
    for ev in d.history(&id_a, 5) {
        let n = n_of(&ev);
        let len = format!("k{n}").len();
        assert_eq!(
            ev["args"]["key"],
            serde_json::json!({"@withheld": "strings", "@len": len}),
            "{ev}"
        );
        assert_eq!(
            ev["args"]["val"],
            serde_json::json!({"@withheld": "strings", "@len": 3}),
            "{ev}"
        );
        assert_eq!(
            ev["args"]["s"]["name"],
            serde_json::json!({"@withheld": "strings", "@len": 10}),
            "{ev}"
        );
        assert_eq!(ev["args"]["s"]["shard"], 7, "{ev}");
        assert_eq!(ev["args"]["ttl"], n * 1_000_000_000, "{ev}");
    }
    // In the kernel: so far only alice's breakpoint exists, and none of its
    // events carries a read of key ("k<N>", 2 to 5 bytes here), val (3
    // bytes) or s.name (10 bytes); the other reads (the Store, its map's
    // table) are 8 bytes or more, and never 10.
    let alice_events = debug_chunks(&d.log());
    assert!(alice_events.len() >= 5, "{}", d.log());
    let text_sized =
        |(len, want): (u64, u64)| (1..=7).contains(&want) || want == 10 || (1..=7).contains(&len);
    for ev in &alice_events {
        assert!(
            !ev.iter().any(|&c| text_sized(c)),
            "a string was read for alice: {ev:?}"
        );
    }
    let listed = d.breakpoints();
    assert_eq!(listed[0]["strings"], false, "{listed:?}");

    // bob, on the same process, sees the text.
    d.env = pki.client_env(Some(bob));
    let r = d.cli(&["bp", "add", "--binary", exe_s, "--func", PUT]);
    assert!(r.status.success(), "{}", r.stderr);
    let id_b = r.stdout.split_whitespace().next().unwrap().to_owned();
    assert!(!r.stdout.contains("withheld"), "{}", r.stdout);
    d.wait("bob's hits", T, || d.history(&id_b, 10).len() >= 3);
    for ev in d.history(&id_b, 3) {
        let n = n_of(&ev);
        assert_eq!(ev["args"]["key"], format!("k{n}"), "{ev}");
        assert_eq!(ev["args"]["s"]["name"], "main-store", "{ev}");
        assert_eq!(
            ev["args"]["val"],
            serde_json::json!([n % 256, (n + 1) % 256, (n + 2) % 256]),
            "{ev}"
        );
    }
    // The check above does see strings: bob's events read them (key `k<N>`
    // and val's 3 bytes; Store.name, the literal "main-store", lies in the
    // binary's read-only data and is read from the file, never at the hit).
    let all = debug_chunks(&d.log());
    let bobs = &all[alice_events.len()..];
    assert!(
        bobs.iter().any(|ev| ev
            .iter()
            .filter(|&&(len, want)| len == want && (2..=7).contains(&len))
            .count()
            >= 2),
        "bob's events read key and val in the kernel: {bobs:?}"
    );
    assert!(
        !bobs.iter().flatten().any(|&(_, want)| want == 10),
        "the literal Store.name was read at a hit: {bobs:?}"
    );
    // Alice's hits stay withheld meanwhile.
    let ev = &d.history(&id_a, 1)[0];
    assert_eq!(ev["args"]["key"]["@withheld"], "strings", "{ev}");
}

#[test]
fn a_breakpoint_over_its_cpu_budget_is_suspended_and_says_so() {
    let dir = Dir::new("budget");
    let v = go_versions().last().unwrap().clone();
    // 10 000 calls of main.hot a second, for as long as the test needs.
    let mut hot = Command::new(testdata(&v, "calls"))
        .args(["-mode", "rate", "-count", "100000000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let hot = Kill(&mut hot);
    let pid = hot.0.id().to_string();
    // A tiny budget: any real use of the CPU is over it.
    let d = Daemon::start_with(
        &dir.0,
        &[
            "--listen",
            &format!("unix:{}", dir.0.join("probe.sock").display()),
            "--cpu-budget",
            "0.01",
        ],
    );
    // A client cannot ask for more than the daemon allows.
    let w = Watch::start(
        &d,
        &["--pid", &pid, "--func", "main.hot", "--cpu-budget", "50"],
    );
    d.wait("the breakpoint to be suspended", T, || {
        d.breakpoints()
            .first()
            .is_some_and(|b| b["state"] == "suspended")
    });
    let b = &d.breakpoints()[0];
    assert_eq!(b["error_kind"], "cpu_budget", "{b}");
    let why = b["error"].as_str().unwrap();
    assert!(why.contains("CPU budget of 0.01%"), "{why}");
    assert!(d.log().contains("suspended"), "{}", d.log());
    // The watching client is told, and keeps its session.
    d.wait("probe watch to say it is suspended", T, || {
        w.stderr().contains("suspended (cpu_budget)")
    });
    let text = d.cli(&["bp", "ls"]);
    assert!(
        text.stdout.contains("suspended") && text.stdout.contains("suspended_hits="),
        "{}",
        text.stdout
    );
    // Suspended: still attached in the kernel, which counts the hits and
    // captures none of them.
    assert_eq!(d.uprobes().len(), 1, "{}", d.log());
    std::thread::sleep(Duration::from_millis(500)); // what was in the ring is drained
    let (h0, s0) = {
        let b = &d.breakpoints()[0];
        (
            b["hits"].as_u64().unwrap(),
            b["suspended_hits"].as_u64().unwrap(),
        )
    };
    d.wait("more hits counted while suspended", T, || {
        d.breakpoints()[0]["suspended_hits"].as_u64().unwrap() > s0 + 1000
    });
    assert_eq!(
        d.breakpoints()[0]["hits"].as_u64().unwrap(),
        h0,
        "captured while suspended"
    );
    d.wait("the client to get what was captured before", T, || {
        w.events().len() as u64 == h0
    });
    drop(hot);
}

#[test]
fn the_daemon_exports_every_breakpoints_hits_over_otlp_redacted() {
    let dir = Dir::new("otlp");
    let exe = dir.store_copy();
    let _target = Target::spawn(&exe, &["-interval", "20ms"]);
    let col = Collector::start(free_port(), free_port(), "daemon");
    // The OpenTelemetry environment variables, as `probe attach` honours them.
    let endpoint = format!("http://127.0.0.1:{}", col.grpc);
    let d = Daemon::start_env(
        &dir.0,
        &[
            "--listen",
            &format!("unix:{}", dir.0.join("probe.sock").display()),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "probe-fleet-test"),
        ],
    );
    assert!(
        d.log().contains("exporting every breakpoint's hits"),
        "{}",
        d.log()
    );
    let r = d.cli(&[
        "bp",
        "add",
        "--binary",
        exe.to_str().unwrap(),
        "--func",
        PUT,
    ]);
    assert!(r.status.success(), "{}", r.stderr);
    let w = Watch::start(
        &d,
        &[
            "--binary",
            exe.to_str().unwrap(),
            "--func",
            PUT,
            "--ttl",
            "10s",
        ],
    );
    d.wait("hits of the session", T, || w.events().len() >= 2);
    let sid = d.sessions()[0]["id"].as_str().unwrap().to_owned();
    let got = col.wait_for(&format!("-> probe.session.id: Str({sid})"));
    let got = if got.contains("-> probe.breakpoint.id: Str(bp-1)") {
        got
    } else {
        col.wait_for("-> probe.breakpoint.id: Str(bp-1)")
    };
    for want in [
        "EventName: probe.hit",
        "-> service.name: Str(probe-fleet-test)",
        "-> telemetry.sdk.name: Str(probe)",
        "-> probe.breakpoint.id: Str(bp-2)",
        "-> probe.owner: Str(local)",
        "-> code.function.name: Str(main.(*Store).Put)",
        &format!("-> process.executable.path: Str({})", exe.display()),
        "name:Str(main-store)",
        // Redacted as in every other hit the daemon hands out.
        "key:Map(@redacted:Str(key))",
    ] {
        assert!(
            got.contains(want),
            "collector output lacks {want:?}:\n{got}"
        );
    }
    assert!(
        !got.contains("key:Str(k"),
        "a secret left the daemon:\n{got}"
    );
}

#[test]
fn a_watch_resumed_within_its_ttl_keeps_its_uprobes_and_events_flow() {
    let dir = Dir::new("resume");
    let exe = dir.store_copy();
    let target = Target::spawn(&exe, &["-interval", "20ms"]);
    let d = Daemon::start(&dir.0);
    let args = [
        "--binary",
        exe.to_str().unwrap(),
        "--func",
        PUT,
        "--ttl",
        "20s",
    ];
    let mut w = Watch::start(&d, &args);
    d.wait("hits", T, || w.events().len() >= 3);
    let sid = d.sessions()[0]["id"].as_str().unwrap().to_owned();
    assert!(
        w.stderr().contains(&format!("--resume {sid}")),
        "{}",
        w.stderr()
    );
    let links = kernel_uprobe_links(d.pid());
    assert_eq!(links.len(), 1, "{links:?}");
    let last = w.events().iter().map(n_of).max().unwrap();

    // The client dies; another takes the session over within the TTL.
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    d.wait("the session to be seen as disconnected", T, || {
        d.sessions()[0]["connected"] == false
    });
    // Not another client's to take (nor a made-up one).
    let r = d.cli(&["watch", "--resume", "s-0-0"]);
    assert!(
        !r.status.success() && r.stderr.contains("no session s-0-0"),
        "{}",
        r.stderr
    );
    let r = d.cli(&["watch", "--resume", &sid, "--func", PUT]);
    assert!(
        !r.status.success() && r.stderr.contains("--resume"),
        "{}",
        r.stderr
    );

    let w2 = Watch::start(&d, &["--resume", &sid]);
    d.wait("hits through the resumed session", T, || {
        w2.events().len() >= 3
    });
    for ev in w2.events() {
        check_put(&ev, &[target.pid()]);
        assert!(n_of(&ev) > last, "an old hit replayed: {ev}");
    }
    assert!(w2.stderr().contains("resumed"), "{}", w2.stderr());
    assert!(w2.stderr().contains("bp-1 attached"), "{}", w2.stderr());
    // The same uprobe, never detached and attached again, and one breakpoint.
    assert_eq!(kernel_uprobe_links(d.pid()), links, "{}", d.log());
    assert_eq!(d.breakpoints().len(), 1);
    let s = &d.sessions()[0];
    assert_eq!(s["id"], sid.as_str());
    assert_eq!(s["connected"], true, "{s}");
    assert!(
        d.log().contains(&format!("session {sid} resumed")),
        "{}",
        d.log()
    );

    // Ctrl-C on the resumed client removes the session's breakpoint at once.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(w2.child.id() as i32, libc::SIGINT) };
    d.wait(
        "the breakpoint to be removed",
        Duration::from_secs(5),
        || d.uprobes().is_empty() && d.breakpoints().is_empty(),
    );
}

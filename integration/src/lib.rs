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
    let p = std::env::var_os("PROBE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/debug/probe"));
    assert!(
        p.exists(),
        "{} missing: run the tests with `cargo xtask test`",
        p.display()
    );
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
    let base = std::env::var_os("PROBE_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/testdata"));
    let p = base.join(format!("go{version}/{program}"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask setup`",
        p.display()
    );
    p
}

/// A private copy of a testdata program in a fresh directory (removed on
/// drop): for tests that delete or replace the file, or that must not see
/// other tests' processes of the same binary.
pub struct PrivateCopy {
    pub dir: PathBuf,
    pub bin: PathBuf,
}

impl PrivateCopy {
    pub fn new(version: &str, program: &str, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("probe-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join(program);
        std::fs::copy(testdata(version, program), &bin).unwrap();
        Self { dir, bin }
    }

    /// Starts the copy (or whatever is at its path now) with `args`, output discarded.
    pub fn start(&self, args: &[&str]) -> Child {
        spawn_fresh(Command::new(&self.bin).args(args).stdout(Stdio::null()))
    }
}

/// Spawns a program whose file this test process has just written.
///
/// Retries "text file busy": while `std::fs::copy` holds the new file open
/// for writing, a process another test thread forks at that moment
/// inherits the descriptor until it execs (close-on-exec closes it only
/// then), and exec of the file fails with ETXTBSY meanwhile.
pub fn spawn_fresh(cmd: &mut Command) -> Child {
    let start = Instant::now();
    loop {
        match cmd.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && start.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        }
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
        let mut child = spawn_fresh(
            Command::new(exe)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let ticks = Arc::new(Mutex::new(vec![]));
        let out = child.stdout.take().unwrap();
        let t = ticks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let mut it = line.split_whitespace();
                if let (Some("tick"), Some(n), Some(ts)) = (it.next(), it.next(), it.next()) {
                    t.lock()
                        .unwrap()
                        .push((n.parse().unwrap(), ts.parse().unwrap()));
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
            assert!(
                start.elapsed() < timeout,
                "target printed fewer than {n} ticks in {timeout:?}"
            );
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

impl Run {
    /// The processes the events came from.
    pub fn pids(&self) -> std::collections::BTreeSet<u64> {
        self.events
            .iter()
            .filter_map(|e| e["pid"].as_u64())
            .collect()
    }
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
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait probe");
    *done.lock().unwrap() = true;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let events = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    Run {
        status,
        events,
        stdout,
        stderr,
    }
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
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {file}")) as u64
        + 1
}

/// IDs of the BPF programs named `probe_entry` loaded in the kernel now,
/// enumerated with the bpf(2) syscall (`BPF_PROG_GET_NEXT_ID`,
/// `BPF_PROG_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD`).
pub fn probe_programs() -> std::collections::HashSet<u32> {
    const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let bpf = |cmd: libc::c_long, attr: &mut [u8; 128]| -> libc::c_long {
        // SAFETY: `attr` is a zero-padded union bpf_attr of the size passed.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
    };
    let mut out = std::collections::HashSet::new();
    let mut id = 0u32;
    loop {
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&id.to_le_bytes()); // start_id
        if bpf(BPF_PROG_GET_NEXT_ID, &mut attr) != 0 {
            break;
        }
        id = u32::from_le_bytes(attr[4..8].try_into().unwrap()); // next_id
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&id.to_le_bytes()); // prog_id
        let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr);
        if fd < 0 {
            continue; // unloaded meanwhile
        }
        let mut info = [0u8; 256];
        let mut attr = [0u8; 128];
        attr[..4].copy_from_slice(&(fd as u32).to_le_bytes()); // bpf_fd
        attr[4..8].copy_from_slice(&(info.len() as u32).to_le_bytes()); // info_len
        attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_le_bytes()); // info
        let ok = bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) == 0;
        // SAFETY: closing the fd we just got.
        unsafe { libc::close(fd as i32) };
        // struct bpf_prog_info: name[16] at byte 64.
        if ok && info[64..80].starts_with(b"probe_entry\0") {
            out.insert(id);
        }
    }
    out
}

/// Programs named `probe_entry` loaded now that were not in `before` and
/// that no running `probe` process (another test or session) holds: what a
/// finished `probe` run would have left behind. Waits up to 2 s for the
/// kernel to release programs of a process that just exited.
pub fn leftover_programs(before: &std::collections::HashSet<u32>) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let held = held_by_probe_processes();
        let left: Vec<u32> = probe_programs()
            .into_iter()
            .filter(|id| !before.contains(id) && !held.contains(id))
            .collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(2) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// BPF program ids referenced by fds of running processes named `probe`.
fn held_by_probe_processes() -> std::collections::HashSet<u32> {
    let mut out = std::collections::HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        if comm.trim() != "probe" {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            for l in info.lines() {
                if let Some(id) = l.strip_prefix("prog_id:") {
                    if let Ok(id) = id.trim().parse() {
                        out.insert(id);
                    }
                }
            }
        }
    }
    out
}

/// A TCP port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real OTLP collector (rotel, from PyPI; `cargo xtask setup` installs it
/// and sets `PROBE_ROTEL`): a running rotel collector printing what it receives into a file.
pub struct Collector {
    child: Child,
    out: PathBuf,
    pub grpc: u16,
    pub http: u16,
}

impl Collector {
    /// Starts rotel; retries while the ports are still held by a previous
    /// collector's connections (TIME_WAIT after a restart on the same ports).
    pub fn start(grpc: u16, http: u16, tag: &str) -> Self {
        for attempt in 0.. {
            match Self::try_start(grpc, http, tag) {
                Ok(c) => return c,
                Err(text) if text.contains("Address already in use") && attempt < 60 => {
                    std::thread::sleep(Duration::from_millis(500))
                }
                Err(text) => panic!("rotel did not start: {text}"),
            }
        }
        unreachable!()
    }

    fn try_start(grpc: u16, http: u16, tag: &str) -> Result<Self, String> {
        let bin = std::env::var_os("PROBE_ROTEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/tools/rotel/lib/python3.11/site-packages/rotel/rotel-agent")
            });
        assert!(
            bin.exists(),
            "{} missing: run `cargo xtask setup`",
            bin.display()
        );
        let out =
            std::env::temp_dir().join(format!("probe-rotel-{}-{tag}.log", std::process::id()));
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new(bin)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
            ])
            .args([
                "--exporter",
                "blackhole",
                "--debug-log",
                "logs",
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
            ])
            .args(["--debug-log-verbosity", "detailed"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start rotel");
        let mut c = Self {
            child,
            out,
            grpc,
            http,
        };
        let start = Instant::now();
        while !c.text().contains("Starting Rotel")
            || std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err()
        {
            if start.elapsed() > Duration::from_secs(20)
                || matches!(c.child.try_wait(), Ok(Some(_)))
            {
                return Err(c.text()); // dropping `c` kills it and removes its log
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// Waits until the collector has printed `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let t = self.text();
            if t.contains(needle) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "collector never got {needle:?}:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

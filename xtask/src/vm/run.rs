//! Running the VMs (QEMU, TCG), following their serial consoles, judging
//! each check against its kernel's plan, and the report.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{Kernel, Mode, Options, Plan, SELFTEST, TOO_OLD};
use crate::step;

/// One VM to run.
pub(super) struct Job<'a> {
    pub(super) kernel: &'a Kernel,
    pub(super) vmlinuz: PathBuf,
    pub(super) release: String,
    pub(super) mode: Mode,
}

/// What one check in a VM gave.
struct Outcome {
    label: String,
    rc: Option<i32>,
    output: String,
    passed: u32,
    failed: u32,
}

/// What one VM gave, judged against its kernel's plan.
pub(super) struct VmResult {
    kernel: &'static str,
    release: String,
    mode: &'static str,
    passed: u32,
    failed: u32,
    secs: f64,
    /// "ok", "FAILED", "timed out", "crashed".
    status: String,
    selftest: String,
    /// Failing checks: label, why, output.
    failures: Vec<(String, String, String)>,
    log: PathBuf,
}

pub(super) fn run_jobs(root: &Path, initrd: &Path, jobs: &[Job], opts: &Options) -> Vec<VmResult> {
    let logs = root.join("target/vm-logs");
    let _ = std::fs::create_dir_all(&logs);
    let next = Mutex::new(0usize);
    let results = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some(job) = jobs.get(i) else { break };
                let r = run_vm(job, initrd, &logs, opts);
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results
        .into_iter()
        .map(|(i, r)| {
            r.unwrap_or_else(|e| VmResult {
                kernel: jobs[i].kernel.label,
                release: jobs[i].release.clone(),
                mode: jobs[i].mode.name(),
                passed: 0,
                failed: 1,
                secs: 0.0,
                status: "FAILED".into(),
                selftest: "-".into(),
                failures: vec![("qemu".into(), format!("{e:#}"), String::new())],
                log: PathBuf::new(),
            })
        })
        .collect()
}

/// Boots one VM, echoing check results as they come, and judges its log.
fn run_vm(job: &Job, initrd: &Path, logs: &Path, opts: &Options) -> Result<VmResult> {
    let name = format!("{}-{}", job.kernel.label, job.mode.name());
    let log = logs.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    let plan = match job.kernel.plan {
        Plan::Core => "core",
        Plan::TooOld => "too-old",
    };
    // Variables the kernel does not know (with a `=`, no dot) reach /init's
    // environment. panic=-1 with -no-reboot turns a kernel panic into a
    // prompt QEMU exit instead of a timeout.
    let append = format!(
        "console=ttyS0 rdinit=/init quiet panic=-1 vm_plan={plan} vm_mode={}",
        job.mode.name()
    );
    step(&format!("VM {name}: booting {}", job.release));
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        // TCG only: nested KVM hangs on the machines this runs on. `max`
        // gives the guest RDRAND, so its random pool is ready at once.
        .args(["-accel", "tcg", "-cpu", "max", "-no-reboot", "-nic", "none"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(["-smp", &opts.cpus.to_string()])
        .arg("-kernel")
        .arg(&job.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let mut tail = Tail::new(&log);
    let timed_out = loop {
        tail.echo(&name);
        if child.try_wait()?.is_some() {
            break false;
        }
        if started.elapsed() > Duration::from_secs(opts.timeout) {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    tail.echo(&name);
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&std::fs::read(&log)?).replace('\r', "");
    Ok(judge(job, &text, timed_out, secs, log))
}

/// Prints the `@@VM end` lines of a growing log as they appear.
struct Tail {
    path: PathBuf,
    pos: u64,
    partial: String,
}

impl Tail {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            pos: 0,
            partial: String::new(),
        }
    }

    fn echo(&mut self, name: &str) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut buf = vec![];
        if f.seek(SeekFrom::Start(self.pos)).is_err() || f.read_to_end(&mut buf).is_err() {
            return;
        }
        self.pos += buf.len() as u64;
        self.partial
            .push_str(&String::from_utf8_lossy(&buf).replace('\r', ""));
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            if let Some(m) = parse_end(line.trim_end()) {
                // Neutral: whether an exit status is right depends on the
                // check (the too-old one must fail); the report judges.
                eprintln!(
                    "  VM {name}: {} exited {} after {:.0}s",
                    m.label, m.rc, m.secs
                );
            }
        }
    }
}

/// A `@@VM end LABEL rc=N t0=UPTIME t1=UPTIME` marker.
struct End {
    label: String,
    rc: i32,
    secs: f64,
}

fn parse_end(line: &str) -> Option<End> {
    let rest = line.split("@@VM end ").nth(1)?;
    let mut it = rest.split_whitespace();
    let label = it.next()?.to_owned();
    let (mut rc, mut t0, mut t1) = (None, 0.0, 0.0);
    for kv in it {
        match kv.split_once('=') {
            Some(("rc", v)) => rc = v.parse().ok(),
            Some(("t0", v)) => t0 = v.parse().unwrap_or(0.0),
            Some(("t1", v)) => t1 = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    Some(End {
        label,
        rc: rc?,
        secs: t1 - t0,
    })
}

/// Splits a serial log into checks (a check begun but never ended, cut by a
/// timeout or a crash, has no rc), plus whether /init finished.
fn parse_log(text: &str) -> (Vec<Outcome>, bool) {
    let mut out: Vec<Outcome> = vec![];
    let mut open: Option<Outcome> = None;
    let mut done = false;
    for line in text.lines() {
        if let Some(label) = line.split("@@VM begin ").nth(1) {
            open = Some(Outcome {
                label: label.trim().to_owned(),
                rc: None,
                output: String::new(),
                passed: 0,
                failed: 0,
            });
        } else if let Some(end) = parse_end(line) {
            if let Some(mut o) = open.take() {
                o.rc = Some(end.rc);
                (o.passed, o.failed) =
                    libtest_counts(&o.output).unwrap_or(if end.rc == 0 { (1, 0) } else { (0, 1) });
                out.push(o);
            }
        } else if line.contains("@@VM done") {
            done = true;
        } else if let Some(o) = open.as_mut() {
            o.output.push_str(line);
            o.output.push('\n');
        }
    }
    out.extend(open);
    (out, done)
}

/// libtest's "test result: ok. N passed; M failed; …" line.
fn libtest_counts(output: &str) -> Option<(u32, u32)> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))?;
    let num = |what: &str| -> Option<u32> {
        let before = line.split(&format!(" {what}")).next()?;
        before.rsplit(' ').next()?.parse().ok()
    };
    Some((num("passed")?, num("failed")?))
}

/// Judges a VM's checks against its kernel's plan.
fn judge(job: &Job, text: &str, timed_out: bool, secs: f64, log: PathBuf) -> VmResult {
    let (outcomes, done) = parse_log(text);
    let mut r = VmResult {
        kernel: job.kernel.label,
        release: job.release.clone(),
        mode: job.mode.name(),
        passed: 0,
        failed: 0,
        secs,
        status: "ok".into(),
        selftest: "-".into(),
        failures: vec![],
        log,
    };
    for o in &outcomes {
        let fail = |why: &str| Some(why.to_owned());
        let verdict = match (o.label.as_str(), o.rc) {
            (_, None) => fail("did not finish"),
            (SELFTEST, Some(rc)) => {
                // On a kernel Probe refuses, the selftest refuses it too
                // (as attach does): that is reported, not a failure.
                r.selftest = match (rc, job.kernel.plan) {
                    (0, _) => "pass",
                    (_, Plan::TooOld) => "refused",
                    (_, Plan::Core) => "FAIL",
                }
                .into();
                (rc != 0 && job.kernel.plan == Plan::Core).then(|| format!("exit {rc}"))
            }
            (TOO_OLD, Some(rc)) => {
                if rc == 0 {
                    fail("probe attached on a kernel it does not support (exit 0)")
                } else if !o.output.contains("kernel lacks") {
                    fail("the error does not say \"kernel lacks\"")
                } else if o.output.contains("verifier") {
                    fail("the error mentions the verifier")
                } else {
                    None
                }
            }
            (_, Some(rc)) if rc != 0 || o.failed > 0 => fail(&format!("exit {rc}")),
            // A core test that runs nothing was renamed; a whole binary with
            // filters may well have no match.
            (l, Some(_)) if o.passed == 0 && !l.ends_with("::*") => fail("ran no test (renamed?)"),
            _ => None,
        };
        match verdict {
            Some(why) => {
                r.failed += o.failed.max(1);
                r.failures.push((o.label.clone(), why, o.output.clone()));
            }
            None if o.label == SELFTEST && job.kernel.plan == Plan::TooOld => {}
            None if o.label.ends_with("::*") => r.passed += o.passed,
            None => r.passed += o.passed.max(1),
        }
    }
    if timed_out || !done {
        let (status, why) = if timed_out {
            ("timed out", format!("killed after {secs:.0}s"))
        } else {
            ("crashed", "the VM stopped before /init finished".to_owned())
        };
        r.status = status.into();
        // The console's last lines: where it hung or what the kernel said.
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        r.failures.push(("vm".into(), why, tail));
    } else if !r.failures.is_empty() {
        r.status = "FAILED".into();
    }
    r
}

/// Prints each failure (once per distinct error: a kernel that rejects
/// Probe's program fails every test the same way), the serial logs of the
/// failed VMs, then the table; fails if any expectation failed.
pub(super) fn report(results: &[VmResult]) -> Result<()> {
    let mut seen: Vec<(String, String)> = vec![];
    for r in results.iter().filter(|r| r.status != "ok") {
        for (label, why, output) in &r.failures {
            let here = format!("{} {} / {}: {label}", r.kernel, r.release, r.mode);
            let key = key_line(output);
            if let Some((_, first)) = key.as_ref().and_then(|k| seen.iter().find(|(s, _)| s == k)) {
                eprintln!("--- {here}: {why}: the same error as {first}");
                continue;
            }
            eprintln!("\n\x1b[1m--- {here}: {why}\x1b[0m\n{}", essential(output));
            if let Some(k) = key {
                seen.push((k, format!("{} / {}: {label}", r.kernel, r.mode)));
            }
        }
        if !r.log.as_os_str().is_empty() {
            eprintln!("serial log: {}", r.log.display());
        }
    }
    eprintln!(
        "\n{:<6} {:<24} {:<12} {:>6} {:>6} {:>6}  {:<9} status",
        "kernel", "release", "mode", "passed", "failed", "secs", "selftest"
    );
    for r in results {
        eprintln!(
            "{:<6} {:<24} {:<12} {:>6} {:>6} {:>6.0}  {:<9} {}",
            r.kernel, r.release, r.mode, r.passed, r.failed, r.secs, r.selftest, r.status
        );
    }
    let failed = results.iter().filter(|r| r.status != "ok").count();
    if failed > 0 {
        bail!("{failed} of {} VMs failed their checks", results.len());
    }
    Ok(())
}

/// The part of a check's output worth reading: libtest's report of the
/// failed test (from `---- NAME stdout ----` to the list of failures), or
/// the whole output; at most its last 60 lines (the log has the rest).
fn essential(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    let (from, to) = match lines
        .iter()
        .position(|l| l.starts_with("---- ") && l.ends_with(" ----"))
    {
        Some(s) => {
            let end = lines[s..].iter().position(|l| *l == "failures:");
            (s, end.map_or(lines.len(), |e| s + e))
        }
        None => (0, lines.len()),
    };
    let from = from.max(to.saturating_sub(60));
    lines[from..to].join("\n").trim_end().to_owned()
}

/// What a failure is known by: its first line that says `error:`, from
/// there on (without the test's own prefix, such as the Go version).
fn key_line(output: &str) -> Option<String> {
    output
        .lines()
        .find_map(|l| l.find("error:").map(|i| l[i..].to_owned()))
}

//! What to trace: a running process (`--pid`), every process of a binary
//! (`--binary`), or a command Probe launches (`-- CMD ARGS…`).
//!
//! A launched command is held between fork and exec until its probes are
//! attached (the uprobes' pid filter follows the process through exec), so
//! not even its first calls are missed.

use std::os::unix::fs::MetadataExt;
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use crate::error::Error;

/// The target as the user named it.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    Pid(u32),
    /// Several processes of one executable: probes attach to the file and
    /// the kernel filters by pid.
    Pids(Vec<u32>),
    Binary(PathBuf),
    Command(Vec<String>),
}

/// A resolved target.
pub struct Target {
    /// The file to read DWARF from and attach uprobes to.
    pub exe: PathBuf,
    /// A display name for the executable.
    pub display: PathBuf,
    /// The one process to trace, or `None` for all processes running `exe`
    /// (or those in `pids`).
    pub pid: Option<u32>,
    /// Several processes to trace, filtered by pid in the kernel.
    pub pids: Vec<u32>,
    /// For `--binary`: the path as given and the file's (device, inode)
    /// when resolved, to notice the file being replaced (a deploy).
    pub file: Option<(PathBuf, (u64, u64))>,
    /// A launched child waiting for [`Target::release`].
    pub child: Option<Launched>,
}

/// A child process held before `exec` until its probes are attached.
pub struct Launched {
    pub pid: u32,
    gate: Option<OwnedFd>,
    status: Option<i32>,
}

impl Launched {
    /// Reaps the child if it has exited; `true` once it has.
    fn reap(&mut self, block: bool) -> bool {
        if self.status.is_some() {
            return true;
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        let r = unsafe {
            libc::waitpid(
                self.pid as i32,
                &mut st,
                if block { 0 } else { libc::WNOHANG },
            )
        };
        if r == self.pid as i32 || r < 0 {
            self.status = Some(st);
            return true;
        }
        false
    }

    /// How a launched child ended, once it has: "status 0", "signal 9".
    pub fn exit_description(&self) -> Option<String> {
        let st = self.status?;
        Some(if libc::WIFEXITED(st) {
            format!("exit status {}", libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            format!("killed by signal {}", libc::WTERMSIG(st))
        } else {
            format!("wait status {st:#x}")
        })
    }

    /// The exit code a shell would report for the child (128 + signal when
    /// killed), once it has ended.
    pub fn exit_code(&self) -> Option<u8> {
        let st = self.status?;
        if libc::WIFEXITED(st) {
            Some(libc::WEXITSTATUS(st) as u8)
        } else if libc::WIFSIGNALED(st) {
            Some(128u8.wrapping_add(libc::WTERMSIG(st) as u8))
        } else {
            None
        }
    }

    /// Ends a child we launched (SIGTERM, then SIGKILL after a grace period)
    /// and reaps it. A child still held before exec is killed outright.
    pub fn stop(&mut self) {
        if self.reap(false) {
            return;
        }
        let sig = if self.gate.is_some() {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid as i32, sig) };
        for _ in 0..50 {
            if self.reap(false) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        self.reap(true);
    }
}

impl Target {
    /// Resolves the spec. For a command, forks it and holds it before exec.
    pub fn resolve(spec: &TargetSpec, child_stdout_to_stderr: bool) -> Result<Self, Error> {
        match spec {
            TargetSpec::Pid(pid) => {
                if !process_exists(*pid) {
                    return Err(Error::NoSuchPid { pid: *pid });
                }
                let exe = PathBuf::from(format!("/proc/{pid}/exe"));
                let display = std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone());
                Ok(Self {
                    exe,
                    display,
                    pid: Some(*pid),
                    pids: vec![],
                    file: None,
                    child: None,
                })
            }
            TargetSpec::Pids(pids) => {
                let mut first: Option<(u32, std::fs::Metadata)> = None;
                for &pid in pids {
                    if !process_exists(pid) {
                        return Err(Error::NoSuchPid { pid });
                    }
                    // stat follows /proc/PID/exe to the executable itself.
                    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).map_err(|source| {
                        Error::Io {
                            what: format!("cannot read the executable of pid {pid}"),
                            source,
                        }
                    })?;
                    match &first {
                        None => first = Some((pid, meta)),
                        Some((p0, m0)) if (m0.dev(), m0.ino()) != (meta.dev(), meta.ino()) => {
                            return Err(Error::Unsupported(format!(
                                "pids {p0} and {pid} run different executables: one `probe attach` traces processes of one binary (run one per binary)"
                            )))
                        }
                        Some(_) => {}
                    }
                }
                let p0 = pids
                    .first()
                    .copied()
                    .ok_or_else(|| Error::Unsupported("no pid given".into()))?;
                let exe = PathBuf::from(format!("/proc/{p0}/exe"));
                let display = std::fs::read_link(&exe).unwrap_or_else(|_| exe.clone());
                Ok(Self {
                    exe,
                    display,
                    pid: None,
                    pids: pids.clone(),
                    file: None,
                    child: None,
                })
            }
            TargetSpec::Binary(path) => {
                let exe = std::fs::canonicalize(path).map_err(|source| Error::Io {
                    what: format!("cannot open {}", path.display()),
                    source,
                })?;
                let file = file_id(path).map(|id| (path.clone(), id));
                Ok(Self {
                    display: exe.clone(),
                    exe,
                    pid: None,
                    pids: vec![],
                    file,
                    child: None,
                })
            }
            TargetSpec::Command(argv) => {
                let exe = find_program(&argv[0])?;
                let launched = launch_held(&exe, argv, child_stdout_to_stderr)?;
                Ok(Self {
                    display: exe.clone(),
                    exe,
                    pid: Some(launched.pid),
                    pids: vec![],
                    file: None,
                    child: Some(launched),
                })
            }
        }
    }

    /// Lets a launched command proceed to `exec`.
    pub fn release(&mut self) {
        if let Some(l) = self.child.as_mut() {
            if let Some(gate) = l.gate.take() {
                // SAFETY: writing one byte to a pipe we own.
                unsafe { libc::write(gate.as_raw_fd(), b"g".as_ptr().cast(), 1) };
            }
        }
    }

    /// For `--binary`: has another file taken the path since we attached?
    /// (Uprobes stay on the old inode, which new processes no longer run.)
    pub fn replaced(&self) -> bool {
        match &self.file {
            Some((path, id)) => file_id(path).is_some_and(|now| now != *id),
            None => false,
        }
    }

    /// Has the traced process gone away?
    pub fn exited(&mut self) -> bool {
        if let Some(l) = self.child.as_mut() {
            return l.reap(false);
        }
        match self.pid {
            Some(pid) => !process_exists(pid),
            None if !self.pids.is_empty() => !self.pids.iter().any(|&p| process_exists(p)),
            None => false,
        }
    }
}

/// (device, inode) of the file at `path` (following symlinks).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Processes whose executable is `exe` now, excluding `skip`: a scan of
/// `/proc` (a replaced binary's old processes show " (deleted)" and do not
/// match its path).
pub fn processes_running(exe: &Path, skip: &[u32]) -> Vec<u32> {
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if skip.contains(&pid) {
            continue;
        }
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// When process `pid` started (clock ticks after boot, field 22 of
/// /proc/PID/stat). With the pid it names one process, even once the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (which may hold spaces and parentheses) comes field 3.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// `kill(pid, 0)`: ESRCH means gone; EPERM means it exists but is not ours.
pub fn process_exists(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid as i32, 0) };
    if r == 0 {
        // A zombie still answers; treat it as gone.
        return !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn find_program(name: &str) -> Result<PathBuf, Error> {
    let not_found = || Error::Io {
        what: format!("cannot find program {name:?}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    if name.contains('/') {
        return std::fs::canonicalize(name).map_err(|source| Error::Io {
            what: format!("cannot find program {name:?}"),
            source,
        });
    }
    let path = std::env::var_os("PATH").ok_or_else(not_found)?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}

/// Forks a child that waits on a pipe before `exec`ing `exe`. (std's
/// `Command::spawn` cannot do this: it blocks until the child has exec'd.)
fn launch_held(exe: &Path, argv: &[String], stdout_to_stderr: bool) -> Result<Launched, Error> {
    use std::ffi::CString;
    let bad_arg = |a: &str| Error::Unsupported(format!("argument {a:?} contains a NUL byte"));
    let path = CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|_| bad_arg(&exe.display().to_string()))?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| bad_arg(a)))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    let mut fds = [0; 2];
    // SAFETY: plain pipe creation; both ends close on exec.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::Io {
            what: "cannot create a pipe".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fresh descriptors from pipe2.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: between fork and exec the child only makes async-signal-safe
    // calls (close, read, dup2, execv, _exit) on memory prepared before fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::Io {
            what: format!("cannot start {}", exe.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        unsafe {
            libc::close(write_end.as_raw_fd());
            let mut b = 0u8;
            let n = loop {
                let n = libc::read(read_end.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            if n != 1 {
                libc::_exit(127); // the tracer went away without releasing us
            }
            if stdout_to_stderr {
                libc::dup2(2, 1);
            }
            libc::execv(path.as_ptr(), ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    drop(read_end);
    Ok(Launched {
        pid: pid as u32,
        gate: Some(write_end),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_names_this_process() {
        let me = super::start_time(std::process::id()).expect("our own start time");
        assert!(me > 0);
        assert_eq!(super::start_time(std::process::id()), Some(me));
        assert_eq!(super::start_time(u32::MAX), None);
    }
}

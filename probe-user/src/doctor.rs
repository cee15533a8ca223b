//! `probe doctor`: can Probe run here, and if not, what to change. One
//! screen: the kernel, each BPF feature Probe uses (found by
//! [`crate::features`]), privileges, uprobe support and the sysctls and
//! security settings that decide whether a uprobe can be attached, each
//! with the fix for a problem.
//!
//! Owns the checks and their rendering; reads only `/proc`, `/sys` and the
//! process's own credentials, and loads nothing that stays in the kernel.

use std::fmt::Write as _;

use crate::features::{Feature, KernelFeatures, Need, Presence};

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Probe runs, with a limitation the detail names.
    Warn,
    /// Probe cannot run until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub topic: String,
    pub status: Status,
    pub detail: String,
    /// What to do, for a `Warn` or `Fail`.
    pub fix: Option<String>,
}

impl Check {
    fn new(topic: &str, status: Status, detail: impl Into<String>, fix: Option<String>) -> Self {
        Self {
            topic: topic.into(),
            status,
            detail: detail.into(),
            fix,
        }
    }
}

/// Runs every check on this machine.
pub fn run() -> Vec<Check> {
    let k = KernelFeatures::detect();
    let mut out = vec![Check::new(
        "kernel",
        Status::Ok,
        format!("Linux {}", k.release),
        None,
    )];
    out.push(privileges());
    out.extend(features(&k.found));
    out.push(uprobes());
    out.push(jit());
    out.push(paranoid());
    out.push(lockdown());
    if let Some(c) = memlock(&k.release) {
        out.push(c);
    }
    out
}

/// The report as text, and whether Probe can run (no `Fail`).
pub fn render(checks: &[Check]) -> (String, bool) {
    let width = checks.iter().map(|c| c.topic.len()).max().unwrap_or(0);
    let mut s = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(s, "{mark}  {:width$}  {}", c.topic, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(s, "      {:width$}  fix: {fix}", "");
        }
    }
    let ok = !checks.iter().any(|c| c.status == Status::Fail);
    s.push_str(if ok {
        "\nProbe can run here.\n"
    } else {
        "\nProbe cannot run here until the FAIL lines are fixed.\n"
    });
    (s, ok)
}

/// One line per feature; the features that could not be checked for want
/// of privilege are one line, not one repeated warning each.
fn features(found: &[(Feature, Presence)]) -> Vec<Check> {
    let unknown: Vec<&str> = found
        .iter()
        .filter(|(_, p)| matches!(p, Presence::Unknown(_)))
        .map(|(f, _)| f.name())
        .collect();
    let mut out: Vec<Check> = found
        .iter()
        .filter(|(_, p)| !matches!(p, Presence::Unknown(_)) || unknown.len() == 1)
        .map(|(f, p)| feature(*f, p))
        .collect();
    if unknown.len() > 1 {
        let why = found
            .iter()
            .find_map(|(_, p)| match p {
                Presence::Unknown(why) => Some(why.as_str()),
                _ => None,
            })
            .unwrap_or_default();
        out.insert(
            0,
            Check::new(
                "BPF features",
                Status::Warn,
                format!("{} not checked: {why}", unknown.join(", ")),
                Some("run `probe doctor` as root to check them".into()),
            ),
        );
    }
    out
}

fn feature(f: Feature, p: &Presence) -> Check {
    let topic = f.name();
    match (p, f.need()) {
        (Presence::Yes, _) => Check::new(topic, Status::Ok, "yes", None),
        (Presence::No, Need::Required) => Check::new(
            topic,
            Status::Fail,
            format!("missing (Linux {} brings it)", f.since()),
            Some(format!(
                "run Probe on Linux {} or later (Debian 12's 6.1 and Ubuntu 22.04's 5.15 qualify)",
                f.since()
            )),
        ),
        (Presence::No, Need::Fallback(how)) => Check::new(
            topic,
            Status::Warn,
            format!("missing (Linux {}): {how}", f.since()),
            Some(format!("Linux {} or later lifts the limit", f.since())),
        ),
        (Presence::No, Need::Optional(why)) => {
            Check::new(topic, Status::Ok, format!("missing: {why}"), None)
        }
        (Presence::Unknown(why), _) => Check::new(
            topic,
            Status::Warn,
            format!("not checked: {why}"),
            Some("run `probe doctor` as root to check".into()),
        ),
    }
}

/// Capabilities bits of `/proc/self/status` (include/uapi/linux/capability.h).
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn privileges() -> Check {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let bpf = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    let detail = format!(
        "euid {euid}; CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {}, CAP_SYS_PTRACE {}",
        yes_no(has(CAP_BPF)),
        yes_no(has(CAP_PERFMON)),
        yes_no(has(CAP_SYS_ADMIN)),
        yes_no(has(CAP_SYS_PTRACE))
    );
    if bpf && has(CAP_SYS_PTRACE) {
        Check::new("privileges", Status::Ok, detail, None)
    } else {
        Check::new(
            "privileges",
            Status::Fail,
            detail,
            Some(
                "run as root (sudo probe …), or grant the binary \
                 cap_bpf,cap_perfmon,cap_sys_ptrace (setcap cap_bpf,cap_perfmon,cap_sys_ptrace+ep probe)"
                    .into(),
            ),
        )
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn uprobes() -> Check {
    match read_trim("/sys/bus/event_source/devices/uprobe/type") {
        Some(t) => Check::new(
            "uprobes",
            Status::Ok,
            format!("perf uprobe PMU (type {t})"),
            None,
        ),
        None => Check::new(
            "uprobes",
            Status::Fail,
            "no uprobe PMU in /sys/bus/event_source/devices",
            Some(
                "use a kernel built with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS (every major distribution's is)"
                    .into(),
            ),
        ),
    }
}

fn jit() -> Check {
    match read_trim("/proc/sys/net/core/bpf_jit_enable").as_deref() {
        Some("0") => Check::new(
            "BPF JIT",
            Status::Warn,
            "off: programs are interpreted, several times slower per hit",
            Some("sysctl -w net.core.bpf_jit_enable=1".into()),
        ),
        Some(v) => Check::new("BPF JIT", Status::Ok, format!("on ({v})"), None),
        None => Check::new(
            "BPF JIT",
            Status::Ok,
            "not reported (kernels built with BPF_JIT_ALWAYS_ON hide the switch)",
            None,
        ),
    }
}

fn paranoid() -> Check {
    let v = read_trim("/proc/sys/kernel/perf_event_paranoid");
    let caps = effective_caps();
    let privileged = caps & (1 << CAP_SYS_ADMIN) != 0 || caps & (1u64 << CAP_PERFMON) != 0;
    let detail = match &v {
        Some(v) => format!("kernel.perf_event_paranoid = {v}"),
        None => "kernel.perf_event_paranoid not readable".into(),
    };
    if privileged {
        Check::new(
            "perf events",
            Status::Ok,
            format!("{detail} (no limit with CAP_PERFMON or CAP_SYS_ADMIN)"),
            None,
        )
    } else {
        Check::new(
            "perf events",
            Status::Fail,
            format!("{detail}, and no CAP_PERFMON: uprobes cannot be opened"),
            Some("run as root, or grant cap_perfmon".into()),
        )
    }
}

fn lockdown() -> Check {
    let Some(v) = read_trim("/sys/kernel/security/lockdown") else {
        return Check::new(
            "lockdown",
            Status::Ok,
            "not reported (no LSM lockdown, or securityfs not mounted)",
            None,
        );
    };
    // The active mode is the bracketed one: "none [integrity] confidentiality".
    let active = v
        .split_whitespace()
        .find(|w| w.starts_with('['))
        .map(|w| w.trim_matches(['[', ']']).to_owned())
        .unwrap_or(v);
    match active.as_str() {
        "none" => Check::new("lockdown", Status::Ok, "none", None),
        mode => Check::new(
            "lockdown",
            Status::Warn,
            format!(
                "{mode}: Probe only reads user memory, which lockdown allows, but some kernels in this mode refuse BPF programs that read memory at all"
            ),
            Some(
                "if attaching fails with \"Operation not permitted\", boot with lockdown=none or disable Secure Boot's lockdown"
                    .into(),
            ),
        ),
    }
}

/// Before 5.11 the kernel charged BPF maps to RLIMIT_MEMLOCK.
fn memlock(release: &str) -> Option<Check> {
    let mut parts = release.split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    if (major, minor) >= (5, 11) {
        return None;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    let unlimited = lim.rlim_cur == libc::RLIM_INFINITY;
    Some(Check::new(
        "locked memory",
        if unlimited { Status::Ok } else { Status::Warn },
        format!(
            "this kernel charges BPF maps to RLIMIT_MEMLOCK ({})",
            if unlimited {
                "unlimited".into()
            } else {
                format!("{} KiB", lim.rlim_cur / 1024)
            }
        ),
        (!unlimited).then(|| "ulimit -l unlimited".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_required_feature_fails_with_the_release_that_brings_it() {
        let c = feature(Feature::AttachCookie, &Presence::No);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("5.15"), "{}", c.detail);
        assert!(c.fix.unwrap().contains("5.15"));
        let c = feature(Feature::BpfLoop, &Presence::No);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("bpf_for_each_map_elem"), "{}", c.detail);
    }

    #[test]
    fn report_shows_fixes_and_a_verdict() {
        let checks = vec![
            Check::new("kernel", Status::Ok, "Linux 5.10.0-32-amd64", None),
            feature(Feature::AttachCookie, &Presence::No),
        ];
        let (text, ok) = render(&checks);
        assert!(!ok);
        assert!(text.contains("FAIL  BPF cookies on uprobes"), "{text}");
        assert!(text.contains("fix: run Probe on Linux 5.15"), "{text}");
        assert!(text.contains("cannot run here"), "{text}");
        let (text, ok) = render(&checks[..1]);
        assert!(ok);
        assert!(text.contains("Probe can run here"), "{text}");
    }

    #[test]
    fn features_unchecked_for_want_of_privilege_are_one_line() {
        let why = Presence::Unknown("no privilege to load BPF (run as root)".into());
        let found = vec![
            (Feature::RingBuf, why.clone()),
            (Feature::BpfLoop, why),
            (Feature::Btf, Presence::Yes),
        ];
        let checks = features(&found);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].topic, "BPF features");
        assert!(checks[0]
            .detail
            .contains("BPF ring buffer maps, bpf_loop helper not checked"));
        assert_eq!(checks[1].status, Status::Ok);
    }

    #[test]
    fn memlock_matters_only_before_5_11() {
        assert!(memlock("6.1.0-47-amd64").is_none());
        assert!(memlock("5.11.0").is_none());
        assert!(memlock("5.10.0-32-amd64").is_some());
        assert!(memlock("garbage").is_none());
    }
}

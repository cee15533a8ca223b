//! Event rendering: the JSON-lines contract and the pretty terminal format,
//! plus the end-of-run summary.

use serde_json::{json, Map};

use crate::{resolve::ResolvedProbe, value::Value};

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (stable contract, see README).
    Json,
    /// Go-like text for people.
    Pretty,
}

/// A decoded hit.
pub struct Hit<'a> {
    pub probe: &'a ResolvedProbe,
    pub pid: u32,
    pub tid: u32,
    pub goid: Option<u64>,
    /// Wall-clock nanoseconds since the Unix epoch.
    pub time_ns: i128,
    pub args: Vec<(String, Value)>,
    /// Local variables, when captured (`--capture locals`).
    pub locals: Option<Vec<(String, Value)>>,
    /// For a return: the results, and the time since the paired entry.
    pub returns: Option<Vec<(String, Value)>>,
    pub duration_ns: Option<u64>,
    /// `--stack`: innermost first.
    pub stack: Option<Vec<Frame>>,
    /// Raw registers (address probes without DWARF), DWARF-numbered.
    pub regs: Option<[u64; probe_common::NUM_REGS]>,
}

/// Register names in DWARF x86-64 numbering.
pub const REG_NAMES: [&str; probe_common::NUM_REGS] =
    ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"];

/// One symbolized stack frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub pc: u64,
    pub function: String,
    pub file: String,
    pub line: u64,
}

impl Hit<'_> {
    /// One line of the JSON contract (version 1).
    pub fn to_json(&self) -> serde_json::Value {
        let obj = |vals: &[(String, Value)]| {
            let mut m = Map::new();
            for (k, v) in vals {
                m.insert(k.clone(), v.to_json());
            }
            serde_json::Value::Object(m)
        };
        let p = self.probe;
        let mut j = json!({
            "v": 1,
            "kind": p.kind,
            "probe": p.spec,
            "function": p.function.name,
            "file": p.file,
            "line": p.line,
            "pc": format!("{:#x}", p.pc),
            "pid": self.pid,
            "tid": self.tid,
            "goid": self.goid,
            "time": rfc3339_nanos(self.time_ns),
        });
        match &self.returns {
            Some(r) => {
                j["returns"] = obj(r);
                j["duration_ns"] = json!(self.duration_ns);
            }
            None => j["args"] = obj(&self.args),
        }
        if let Some(l) = &self.locals {
            j["locals"] = obj(l);
        }
        if let Some(r) = &self.regs {
            let mut m = Map::new();
            for (n, v) in REG_NAMES.iter().zip(r) {
                m.insert((*n).to_owned(), json!(format!("{v:#x}")));
            }
            j["regs"] = serde_json::Value::Object(m);
        }
        if let Some(c) = &p.inlined {
            j["inlined"] = json!({"caller": c.caller, "file": c.call_file, "line": c.call_line});
        }
        if let Some(st) = &self.stack {
            j["stack"] = st
                .iter()
                .map(|f| json!({"function": f.function, "file": f.file, "line": f.line, "pc": format!("{:#x}", f.pc)}))
                .collect();
        }
        j
    }

    pub fn pretty(&self) -> String {
        let (f, p) = (&self.probe.function, self.probe);
        let file = p.file.rsplit('/').next().unwrap_or(&p.file);
        let t = rfc3339_nanos(self.time_ns);
        let clock = t.get(11..26).unwrap_or(&t);
        let goid = self.goid.map(|g| g.to_string()).unwrap_or_else(|| "?".into());
        let what = match (&self.returns, &p.inlined) {
            (Some(_), _) => " returned".to_owned(),
            (None, Some(c)) => format!(" (inlined in {} at line {})", c.caller, c.call_line),
            _ => String::new(),
        };
        let took = match self.duration_ns {
            Some(d) => format!(" after {}", crate::value::go_duration(d as i64)),
            None => String::new(),
        };
        let mut s = format!("{clock} {}{what}{took} {file}:{} pid={} tid={} goroutine={goid}\n", f.name, p.line, self.pid, self.tid);
        for (k, v) in self.returns.as_ref().unwrap_or(&self.args) {
            s.push_str(&format!("    {k} = {}\n", v.pretty()));
        }
        if let Some(r) = &self.regs {
            let regs: Vec<String> = REG_NAMES.iter().zip(r).map(|(n, v)| format!("{n}={v:#x}")).collect();
            s.push_str(&format!("    {}\n", regs.join(" ")));
        }
        for (k, v) in self.locals.iter().flatten() {
            s.push_str(&format!("    {k} := {}\n", v.pretty()));
        }
        for fr in self.stack.iter().flatten() {
            let file = fr.file.rsplit('/').next().unwrap_or(&fr.file);
            s.push_str(&format!("      at {} {file}:{}\n", fr.function, fr.line));
        }
        s
    }
}

/// `2026-11-27T11:00:00.123456789Z`.
pub fn rfc3339_nanos(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(1_795_777_200_123_456_789), "2026-11-27T11:00:00.123456789Z");
        assert_eq!(rfc3339_nanos(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }
}

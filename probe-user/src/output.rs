//! Event rendering: the JSON-lines contract and the pretty terminal format,
//! plus the end-of-run summary.

use serde::{ser::SerializeMap, Serialize, Serializer};

use crate::{
    resolve::ResolvedProbe,
    value::{Fields, Value},
};

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
pub const REG_NAMES: [&str; probe_common::NUM_REGS] = [
    "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip",
];

/// One symbolized stack frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub pc: u64,
    pub function: String,
    pub file: String,
    pub line: u64,
}

impl Hit<'_> {
    /// One line of the JSON contract (version 1), as a tree.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Appends one line of the JSON contract and a newline to `out`,
    /// without building a tree first (the hot path of `--format json`).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail, and every key is a string.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }

    pub fn pretty(&self) -> String {
        let (f, p) = (&self.probe.function, self.probe);
        let file = p.file.rsplit('/').next().unwrap_or(&p.file);
        let t = rfc3339_nanos(self.time_ns);
        let clock = t.get(11..26).unwrap_or(&t);
        let goid = self
            .goid
            .map(|g| g.to_string())
            .unwrap_or_else(|| "?".into());
        let what = match (&self.returns, &p.inlined) {
            (Some(_), _) => " returned".to_owned(),
            (None, Some(c)) => format!(" (inlined in {} at line {})", c.caller, c.call_line),
            _ => String::new(),
        };
        let took = match self.duration_ns {
            Some(d) => format!(" after {}", crate::value::go_duration(d as i64)),
            None => String::new(),
        };
        let mut s = format!(
            "{clock} {}{what}{took} {file}:{} pid={} tid={} goroutine={goid}\n",
            f.name, p.line, self.pid, self.tid
        );
        for (k, v) in self.returns.as_ref().unwrap_or(&self.args) {
            s.push_str(&format!("    {k} = {}\n", v.pretty()));
        }
        if let Some(r) = &self.regs {
            let regs: Vec<String> = REG_NAMES
                .iter()
                .zip(r)
                .map(|(n, v)| format!("{n}={v:#x}"))
                .collect();
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

/// The JSON contract (version 1): see the README's "JSON events" section.
impl Serialize for Hit<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.probe;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("v", &1)?;
        m.serialize_entry("kind", p.kind)?;
        m.serialize_entry("probe", &p.spec)?;
        m.serialize_entry("function", &p.function.name)?;
        m.serialize_entry("file", &p.file)?;
        m.serialize_entry("line", &p.line)?;
        m.serialize_entry("pc", &format!("{:#x}", p.pc))?;
        m.serialize_entry("pid", &self.pid)?;
        m.serialize_entry("tid", &self.tid)?;
        m.serialize_entry("goid", &self.goid)?;
        m.serialize_entry("time", &rfc3339_nanos(self.time_ns))?;
        match &self.returns {
            Some(r) => {
                m.serialize_entry("returns", &Fields(r))?;
                m.serialize_entry("duration_ns", &self.duration_ns)?;
            }
            None => m.serialize_entry("args", &Fields(&self.args))?,
        }
        if let Some(l) = &self.locals {
            m.serialize_entry("locals", &Fields(l))?;
        }
        if let Some(r) = &self.regs {
            let regs: Vec<(String, Value)> = REG_NAMES
                .iter()
                .zip(r)
                .map(|(n, v)| ((*n).to_owned(), Value::Addr(*v)))
                .collect();
            m.serialize_entry("regs", &Fields(&regs))?;
        }
        if let Some(c) = &p.inlined {
            m.serialize_entry(
                "inlined",
                &Inlined {
                    caller: &c.caller,
                    file: &c.call_file,
                    line: c.call_line,
                },
            )?;
        }
        if let Some(st) = &self.stack {
            m.serialize_entry("stack", st)?;
        }
        if let Some(why) = &p.missing {
            m.serialize_entry("@missing", why)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Inlined<'a> {
    caller: &'a str,
    file: &'a str,
    line: u64,
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("function", &self.function)?;
        m.serialize_entry("file", &self.file)?;
        m.serialize_entry("line", &self.line)?;
        m.serialize_entry("pc", &format!("{:#x}", self.pc))?;
        m.end()
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
        assert_eq!(
            rfc3339_nanos(1_795_777_200_123_456_789),
            "2026-11-27T11:00:00.123456789Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}

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
    /// `--stack-window`: the stack pointer and the bytes captured from it.
    pub stack_window: Option<(u64, Vec<u8>)>,
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
    /// The entries after "time" (values, stack, duration, …) as a JSON
    /// object: what an export needs, without the per-probe head and the
    /// timestamp it carries elsewhere.
    pub fn tail_json(&self) -> serde_json::Value {
        serde_json::to_value(Tail(self)).unwrap_or(serde_json::Value::Null)
    }

    /// Appends one line of the JSON contract and a newline to `out`,
    /// without building a tree first (the hot path of `--format json`).
    /// `head` is [`json_head`] of the hit's probe: the entries that never
    /// change between its hits, serialized once (escaping the file path
    /// and names on every hit was the reader's largest single cost).
    /// The bytes are those of the `Serialize` impl.
    pub fn write_json_line(&self, head: &[u8], out: &mut Vec<u8>) {
        use std::io::Write;
        out.push(b'{');
        out.extend_from_slice(head);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "\"pid\":{},\"tid\":{},\"goid\":", self.pid, self.tid);
        match self.goid {
            Some(g) => {
                let _ = write!(out, "{g}");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"time\":\"");
        write_rfc3339_nanos(out, self.time_ns);
        out.push(b'"');
        // The rest as a map of its own, `{…}`, whose `{` becomes the comma
        // after "time" (it always has "args" or "returns").
        let at = out.len();
        let _ = serde_json::to_writer(&mut *out, &Tail(self));
        out[at] = b',';
        out.push(b'\n');
    }

    /// The entries after "time", in contract order.
    fn tail_entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        let p = self.probe;
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
        if let Some((sp, bytes)) = &self.stack_window {
            m.serialize_entry(
                "stack_window",
                &StackWindow {
                    sp: format!("{sp:#x}"),
                    bytes: hex(bytes),
                },
            )?;
        }
        if let Some(why) = &p.missing {
            m.serialize_entry("@missing", why)?;
        }
        Ok(())
    }

    pub fn pretty(&self) -> String {
        let mut s = self.headline();
        s.push('\n');
        self.pretty_values(&mut s);
        s
    }

    /// The first line of [`Hit::pretty`] (no newline): when, where, who.
    pub fn headline(&self) -> String {
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
        format!(
            "{clock} {}{what}{took} {file}:{} pid={} tid={} goroutine={goid}",
            f.name, p.line, self.pid, self.tid
        )
    }

    /// The lines of [`Hit::pretty`] after the first.
    fn pretty_values(&self, s: &mut String) {
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
        if let Some((sp, bytes)) = &self.stack_window {
            // As 8-byte little-endian words, four to a line: pointers and
            // return addresses read as they do in a debugger.
            s.push_str(&format!(
                "    stack at sp={sp:#x}, {} bytes:\n",
                bytes.len()
            ));
            for (i, row) in bytes.chunks(32).enumerate() {
                let words: Vec<String> = row
                    .chunks(8)
                    .map(|w| {
                        let mut b = [0u8; 8];
                        b[..w.len()].copy_from_slice(w);
                        format!("{:016x}", u64::from_le_bytes(b))
                    })
                    .collect();
                s.push_str(&format!("      +{:#05x}  {}\n", i * 32, words.join(" ")));
            }
        }
    }
}

/// `--stack-window` in the JSON contract: `{"sp": "0x…", "bytes": "hex"}`.
#[derive(Serialize)]
struct StackWindow {
    sp: String,
    bytes: String,
}

/// Lowercase hex, two digits per byte. By table: `write!` per byte cost
/// ~9 µs for a 256-byte window, more than the rest of the hit's output.
fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[(x >> 4) as usize]);
        s.push(DIGITS[(x & 15) as usize]);
    }
    // Only ASCII digits were pushed.
    String::from_utf8(s).unwrap_or_default()
}

/// The JSON contract (version 1): see the README's "JSON events" section.
impl Serialize for Hit<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        head_entries(self.probe, &mut m)?;
        m.serialize_entry("pid", &self.pid)?;
        m.serialize_entry("tid", &self.tid)?;
        m.serialize_entry("goid", &self.goid)?;
        m.serialize_entry("time", &rfc3339_nanos(self.time_ns))?;
        self.tail_entries(&mut m)?;
        m.end()
    }
}

/// The entries that depend only on the probe, in contract order.
fn head_entries<M: SerializeMap>(p: &ResolvedProbe, m: &mut M) -> Result<(), M::Error> {
    m.serialize_entry("v", &1)?;
    m.serialize_entry("kind", p.kind.as_str())?;
    m.serialize_entry("probe", &p.spec)?;
    m.serialize_entry("function", &p.function.name)?;
    m.serialize_entry("file", &p.file)?;
    m.serialize_entry("line", &p.line)?;
    m.serialize_entry("pc", &format!("{:#x}", p.pc))
}

/// A probe's [`head_entries`] as JSON without the braces, with the comma
/// that follows them: for [`Hit::write_json_line`].
pub fn json_head(p: &ResolvedProbe) -> Vec<u8> {
    struct Head<'a>(&'a ResolvedProbe);
    impl Serialize for Head<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            head_entries(self.0, &mut m)?;
            m.end()
        }
    }
    let mut v = serde_json::to_vec(&Head(p)).unwrap_or_else(|_| b"{}".to_vec());
    // `{…}` → `…,`
    v.remove(0);
    v.pop();
    v.push(b',');
    v
}

/// [`Hit::tail_entries`] as a map of their own.
struct Tail<'a, 'b>(&'a Hit<'b>);

impl Serialize for Tail<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        self.0.tail_entries(&mut m)?;
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
    let mut v = Vec::with_capacity(30);
    write_rfc3339_nanos(&mut v, ns);
    String::from_utf8(v).unwrap_or_default()
}

/// [`rfc3339_nanos`], appended to `out` digit by digit (no formatter: it
/// runs for every hit).
fn write_rfc3339_nanos(out: &mut Vec<u8>, ns: i128) {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let nanos = ns.rem_euclid(1_000_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    let digits = |out: &mut Vec<u8>, v: u64, n: u32| {
        for i in (0..n).rev() {
            out.push(b'0' + (v / 10u64.pow(i) % 10) as u8);
        }
    };
    if (0..=9999).contains(&y) {
        digits(out, y as u64, 4);
    } else {
        out.extend_from_slice(format!("{y:04}").as_bytes());
    }
    out.push(b'-');
    digits(out, m as u64, 2);
    out.push(b'-');
    digits(out, d as u64, 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, (sod % 3600) / 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, nanos, 9);
    out.push(b'Z');
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

    /// The hot path writes the same bytes as the `Serialize` impl, with
    /// and without the optional entries.
    #[test]
    fn json_line_fast_path_matches_serde() {
        let p = ResolvedProbe::for_tests("main.handler", "/src/a \"quoted\" path.go");
        let mut p2 = p.clone();
        p2.missing = Some("no DWARF".into());
        let f = |v: i64| vec![("n".to_owned(), Value::Int(v))];
        let mut hit = Hit {
            probe: &p,
            pid: 42,
            tid: 43,
            goid: Some(7),
            time_ns: 1_795_777_200_123_456_789,
            args: f(1),
            locals: None,
            returns: None,
            duration_ns: None,
            stack: None,
            regs: None,
            stack_window: None,
        };
        let check = |hit: &Hit| {
            let mut fast = vec![];
            hit.write_json_line(&json_head(hit.probe), &mut fast);
            let mut slow = serde_json::to_vec(hit).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(slow).unwrap()
            );
        };
        check(&hit);
        hit.goid = None;
        hit.locals = Some(f(2));
        hit.returns = Some(f(3));
        hit.duration_ns = Some(99);
        hit.regs = Some([5; probe_common::NUM_REGS]);
        hit.stack = Some(vec![Frame {
            pc: 0x1234,
            function: "main.main".into(),
            file: "/src/main.go".into(),
            line: 9,
        }]);
        hit.stack_window = Some((
            0x00c0_0003_4740,
            vec![0x68, 0x21, 0x61, 0, 0, 0, 0, 0, 0xff],
        ));
        check(&hit);
        hit.probe = &p2;
        check(&hit);
        let v = serde_json::to_value(&hit).unwrap();
        assert_eq!(v["stack_window"]["sp"], "0xc000034740");
        assert_eq!(v["stack_window"]["bytes"], "6821610000000000ff");
        // Pretty: little-endian words (a short last one padded).
        assert!(
            hit.pretty()
                .contains("+0x000  0000000000612168 00000000000000ff\n"),
            "{}",
            hit.pretty()
        );
    }

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

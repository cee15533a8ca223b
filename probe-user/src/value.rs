//! Decoded Go values and their two renderings: the stable JSON contract
//! (`--format json`, see README) and Go-like pretty text.

use serde::{ser::SerializeMap, Serialize, Serializer};
use serde_json::{Map, Value as Json};

/// A Go value as decoded from a hit. Never invented: what could not be read
/// is [`Value::Unavailable`], what was cut short says so.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// `time.Duration`: a number in JSON, `1.5s` in pretty output.
    Duration(i64),
    /// A string; `len` is the full length in bytes, `text` what was captured
    /// (invalid UTF-8 replaced), `truncated` when capture limits cut it.
    Str {
        text: String,
        len: u64,
        truncated: bool,
    },
    /// A nil pointer.
    Nil,
    /// A non-nil pointer and what it points to.
    Pointer(Box<Value>),
    Struct(Vec<(String, Value)>),
    /// An array or slice; `len` is the full length, `items` what was captured.
    List {
        items: Vec<Value>,
        len: u64,
    },
    /// Could not be read, and why.
    Unavailable(String),
    /// `complex64`/`complex128`: JSON `"(1+2i)"` as Go prints it.
    Complex(f64, f64),
    /// A map: `entries` captured, `len` its real length. JSON: an object
    /// keyed by the keys rendered as strings.
    Map {
        entries: Vec<(Value, Value)>,
        len: u64,
    },
    /// A non-nil interface: its dynamic type and value.
    Iface {
        type_name: String,
        value: Box<Value>,
    },
    /// A non-nil channel.
    Chan {
        type_name: String,
        len: u64,
        cap: u64,
    },
    /// A non-nil func: the function's name.
    Func(String),
    /// An `unsafe.Pointer`.
    Addr(u64),
    /// A pointer back to a value already being shown (a cycle).
    Cycle(u64),
    /// `time.Time`: its fields in JSON (the contract), `text` in pretty output.
    Time {
        fields: Box<Value>,
        text: String,
    },
    /// A string or byte slice whose contents a daemon policy withheld (the
    /// kernel never read them); `len` is its length in bytes.
    Withheld {
        len: u64,
    },
}

/// JSON key marking a value Probe could not read (Go identifiers never start with `@`).
pub const UNAVAILABLE_KEY: &str = "@unavailable";
/// JSON key marking a value cut short by capture limits; `@len` gives its full length.
pub const TRUNCATED_KEY: &str = "@truncated";
/// JSON key marking a pointer back to a value already shown (its address).
pub const CYCLE_KEY: &str = "@cycle";
/// JSON key marking contents withheld by policy: `{"@withheld": "strings", "@len": N}`.
pub const WITHHELD_KEY: &str = "@withheld";

impl Value {
    /// The JSON contract as a tree (see the README's "JSON events"
    /// section); [`Serialize`] writes the same JSON without building one.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    /// A map key as a JSON object key.
    pub fn key_string(&self) -> String {
        match self {
            // A key cut by --max-string must not pass for a shorter key.
            Value::Str {
                text,
                truncated: true,
                ..
            } => format!("{text}…"),
            Value::Str { text, .. } => text.clone(),
            Value::Pointer(v) => v.key_string(),
            other => other.pretty(),
        }
    }

    /// Go-like `%+v` text, with Go's own `time.Duration` format.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write_pretty(&mut s);
        s
    }

    fn write_pretty(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Bool(b) => write!(out, "{b}").unwrap(),
            Value::Int(i) => write!(out, "{i}").unwrap(),
            Value::Uint(u) => write!(out, "{u}").unwrap(),
            Value::Float(f) => out.push_str(&go_float(*f)),
            Value::Duration(d) => out.push_str(&go_duration(*d)),
            Value::Str {
                text,
                len,
                truncated,
            } => {
                write!(out, "{text:?}").unwrap();
                if *truncated {
                    write!(out, "…({len} bytes in all)").unwrap();
                }
            }
            Value::Nil => out.push_str("nil"),
            Value::Pointer(v) => {
                out.push('&');
                v.write_pretty(out);
            }
            Value::Struct(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    write!(out, "{k}:").unwrap();
                    v.write_pretty(out);
                }
                out.push('}');
            }
            Value::List { items, len } => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_pretty(out);
                }
                if (items.len() as u64) < *len {
                    write!(out, " …(+{} more)", len - items.len() as u64).unwrap();
                }
                out.push(']');
            }
            Value::Unavailable(why) => write!(out, "<unavailable: {why}>").unwrap(),
            Value::Complex(re, im) => out.push_str(&go_complex(*re, *im)),
            Value::Map { entries, len } => {
                out.push_str("map[");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    k.write_pretty(out);
                    out.push(':');
                    v.write_pretty(out);
                }
                if (entries.len() as u64) < *len {
                    write!(out, " …(+{} more)", len - entries.len() as u64).unwrap();
                }
                out.push(']');
            }
            Value::Iface { type_name, value } => {
                write!(out, "{type_name}(").unwrap();
                value.write_pretty(out);
                out.push(')');
            }
            Value::Chan {
                type_name,
                len,
                cap,
            } => write!(out, "({type_name} len={len} cap={cap})").unwrap(),
            Value::Func(name) => out.push_str(name),
            Value::Addr(a) => write!(out, "{a:#x}").unwrap(),
            Value::Cycle(a) => write!(out, "<cycle to {a:#x}>").unwrap(),
            Value::Time { text, .. } => out.push_str(text),
            Value::Withheld { len } => write!(out, "<withheld by policy: {len} bytes>").unwrap(),
        }
    }
}

/// `{marker: value, "@len": len}`: a value cut short by a capture limit.
fn truncated<S: Serializer, V: Serialize + ?Sized>(
    s: S,
    value: &V,
    len: u64,
) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry(TRUNCATED_KEY, value)?;
    m.serialize_entry("@len", &len)?;
    m.end()
}

/// A map's entries as a JSON object; keys that could not be read, or that
/// print alike, must not collide (the first one keeps its place).
struct Entries<'a>(&'a [(Value, Value)]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = Map::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            let key = match k {
                Value::Unavailable(_) => format!("{UNAVAILABLE_KEY}#{i}"),
                k => k.key_string(),
            };
            m.insert(key, v.to_json());
        }
        m.serialize(s)
    }
}

/// Fields or variables in order, as a JSON object.
pub struct Fields<'a>(pub &'a [(String, Value)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Uint(u) => s.serialize_u64(*u),
            Value::Duration(d) => s.serialize_i64(*d),
            Value::Float(f) if f.is_nan() => s.serialize_str("NaN"),
            Value::Float(f) if f.is_infinite() => {
                s.serialize_str(if *f > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str {
                text,
                len,
                truncated: true,
            } => truncated(s, text, *len),
            Value::Str { text, .. } => s.serialize_str(text),
            Value::Nil => s.serialize_unit(),
            Value::Pointer(v) => v.serialize(s),
            Value::Struct(fields) => Fields(fields).serialize(s),
            Value::List { items, len } if (items.len() as u64) < *len => truncated(s, items, *len),
            Value::List { items, .. } => items.serialize(s),
            Value::Unavailable(why) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(UNAVAILABLE_KEY, why)?;
                m.end()
            }
            Value::Complex(re, im) => s.serialize_str(&go_complex(*re, *im)),
            Value::Map { entries, len } if (entries.len() as u64) < *len => {
                truncated(s, &Entries(entries), *len)
            }
            Value::Map { entries, .. } => Entries(entries).serialize(s),
            Value::Iface { type_name, value } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", type_name)?;
                m.serialize_entry("value", value)?;
                m.end()
            }
            Value::Chan {
                type_name,
                len,
                cap,
            } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("type", type_name)?;
                m.serialize_entry("len", len)?;
                m.serialize_entry("cap", cap)?;
                m.end()
            }
            Value::Func(name) => s.serialize_str(name),
            Value::Addr(a) => s.serialize_str(&format!("{a:#x}")),
            Value::Cycle(a) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(CYCLE_KEY, &format!("{a:#x}"))?;
                m.end()
            }
            Value::Time { fields, .. } => fields.serialize(s),
            Value::Withheld { len } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry(WITHHELD_KEY, "strings")?;
                m.serialize_entry("@len", len)?;
                m.end()
            }
        }
    }
}

fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

/// Formats like Go's `%v` of a complex number: `(1+2i)`.
pub fn go_complex(re: f64, im: f64) -> String {
    let sign = if im >= 0.0 || im.is_nan() { "+" } else { "" };
    format!("({}{sign}{}i)", go_float(re), go_float(im))
}

/// Formats like Go's `time.Duration.String` (`1h2m3.5s`, `1.5ms`, `0s`).
pub fn go_duration(d: i64) -> String {
    if d == 0 {
        return "0s".into();
    }
    let neg = d < 0;
    let u = d.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rem = v % unit;
        if rem == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let s = format!("{rem:0digits$}");
        format!("{whole}.{}", s.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs_total = u / 1_000_000_000;
    let nanos = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s = secs_total % 60;
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!(
        "{}s",
        frac(s * 1_000_000_000 + nanos, 1_000_000_000)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(1_000_000_000), "1s");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(-2_000_000), "-2ms");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
    }

    #[test]
    fn json_markers() {
        let v = Value::Str {
            text: "ab".into(),
            len: 5,
            truncated: true,
        };
        assert_eq!(v.to_json(), json!({"@truncated": "ab", "@len": 5}));
        assert_eq!(Value::Float(f64::NAN).to_json(), json!("NaN"));
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_json(), json!("-Inf"));
        assert_eq!(
            Value::Unavailable("x".into()).to_json(),
            json!({"@unavailable": "x"})
        );
        let p = Value::Pointer(Box::new(Value::Struct(vec![("a".into(), Value::Int(1))])));
        assert_eq!(p.to_json(), json!({"a": 1}));
        assert_eq!(p.pretty(), "&{a:1}");
    }
}

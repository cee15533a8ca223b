//! The event decoder: a raw event from the ring buffer plus the probe's
//! [`ProbePlan`] become named Go [`Value`]s.
//!
//! Free of aya and tokio, and total: any bytes give a result, never a panic
//! (fuzzed by a property test). An event is registers plus chunks of target
//! memory; the decoder reads Go values out of them like a debugger reads a
//! core file. Memory that is not in any chunk was not captured: the value is
//! shown as unavailable with the limit that stopped it.

use std::collections::HashMap;

use probe_common::{
    desc, Chunk, EventHeader, EVENT_MAGIC, EV_BUDGET, EV_DEPTH, EV_STEPS, NUM_REGS,
};

use crate::{
    capture::{is_direct_iface, reg_unavailable, ProbePlan},
    dwarf::{DebugInfo, Kind, Piece, Place, TypeId},
    value::Value,
};

/// Most nested values decoded (guards against deep or hostile data).
const MAX_NESTING: usize = 64;
/// Most elements decoded from one inline array.
const MAX_INLINE: u64 = 4096;

/// A parsed event: header and memory chunks.
pub struct RawEvent<'a> {
    pub header: EventHeader,
    /// Return addresses recorded by `--stack` (the probed PC first).
    pub stack: Vec<u64>,
    /// Load bias of the executable (runtime address − linked address; 0
    /// unless PIE), applied to code and type addresses found in memory.
    pub bias: u64,
    /// The executable's read-only data segment (linked address, the file's
    /// bytes), where the kernel leaves pointer-free values unread (see
    /// `ProbeParams::rodata_start`): memory no chunk covers is read there.
    pub rodata: Option<(u64, &'a [u8])>,
    /// (address, captured bytes, full length), sorted by address.
    chunks: Vec<(u64, &'a [u8], u32)>,
}

impl<'a> RawEvent<'a> {
    /// Parses ring-buffer bytes; `None` when they are not a Probe event.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let hs = std::mem::size_of::<EventHeader>();
        if bytes.len() < hs {
            return None;
        }
        // SAFETY: EventHeader is plain old data and `bytes` is long enough.
        let header: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        if header.magic != EVENT_MAGIC {
            return None;
        }
        let data = &bytes[hs..];
        let data = &data[..(header.data_len as usize).min(data.len())];
        let nstack = (header.nstack as usize)
            .min(probe_common::MAX_FRAMES as usize)
            .min(data.len() / 8);
        let stack = (0..nstack)
            .map(|i| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().unwrap()))
            .collect();
        let mut chunks = vec![];
        let mut pos = nstack * 8;
        while pos + 16 <= data.len() {
            // SAFETY: Chunk is plain old data; 16 bytes are in bounds.
            let c: Chunk = unsafe { std::ptr::read_unaligned(data[pos..].as_ptr().cast()) };
            let start = pos + 16;
            let end = start.saturating_add(c.len as usize).min(data.len());
            chunks.push((c.addr, &data[start..end], c.want));
            pos = start.saturating_add((c.len as usize + 7) & !7);
        }
        chunks.sort_by_key(|c| c.0);
        Some(Self {
            header,
            stack,
            chunks,
            bias: 0,
            rodata: None,
        })
    }

    /// The captured bytes at `addr` (as many as were captured from there on)
    /// and the full length of the value the chunk was read for; in the
    /// read-only data segment, the file's bytes to the segment's end.
    pub fn memory_at(&self, addr: u64) -> Option<(&'a [u8], u32)> {
        let i = self.chunks.partition_point(|c| c.0 <= addr);
        for c in self.chunks[..i].iter().rev().take(32) {
            let off = addr.wrapping_sub(c.0);
            if off < c.1.len() as u64 {
                return Some((&c.1[off as usize..], c.2));
            }
        }
        let (start, bytes) = self.rodata?;
        let off = addr.wrapping_sub(self.bias).wrapping_sub(start);
        let b = bytes.get(usize::try_from(off).ok()?..)?;
        (!b.is_empty()).then(|| (b, u32::try_from(b.len()).unwrap_or(u32::MAX)))
    }

    /// Exactly `n` captured bytes at `addr`.
    pub fn read(&self, addr: u64, n: u64) -> Option<&'a [u8]> {
        let (b, _) = self.memory_at(addr)?;
        b.get(..usize::try_from(n).ok()?)
    }

    /// A one-line summary for debugging (`PROBE_DEBUG_EVENTS=1`).
    pub fn describe(&self) -> String {
        let h = &self.header;
        let chunks: Vec<String> = self
            .chunks
            .iter()
            .map(|c| format!("{:#x}+{}/{}", c.0, c.1.len(), c.2))
            .collect();
        format!(
            "event probe={} flags={:#x} data_len={} steps={} read_errors={} chunks=[{}]",
            h.probe_id,
            h.flags,
            h.data_len,
            h.steps,
            h.read_errors,
            chunks.join(" ")
        )
    }

    /// The stack pointer at the hit.
    pub fn sp(&self) -> u64 {
        self.header.regs[7]
    }

    /// Why memory that is not in the event is missing.
    pub fn missing(&self) -> String {
        let f = self.header.flags;
        let mut why = vec![];
        if f & EV_BUDGET != 0 {
            why.push("the event's byte budget (--max-bytes) ran out");
        }
        if f & EV_DEPTH != 0 {
            why.push("deeper than --max-depth");
        }
        if f & EV_STEPS != 0 {
            why.push("the kernel's walk limit was reached");
        }
        if why.is_empty() {
            if self.header.read_errors > 0 {
                return "not captured: the memory could not be read".into();
            }
            return "not captured".into();
        }
        format!("not captured: {}", why.join("; "))
    }
}

/// Decodes every parameter of `plan` from `ev`.
pub fn decode_args(
    d: &DebugInfo,
    rtypes: &HashMap<u64, TypeId>,
    plan: &ProbePlan,
    ev: &RawEvent,
) -> Vec<(String, Value)> {
    decode_vars(d, rtypes, plan, ev, false)
}

/// Decodes the parameters (`locals` false) or the local variables of `plan`.
pub fn decode_vars(
    d: &DebugInfo,
    rtypes: &HashMap<u64, TypeId>,
    plan: &ProbePlan,
    ev: &RawEvent,
    locals: bool,
) -> Vec<(String, Value)> {
    let dec = Decoder {
        d,
        rtypes,
        ev,
        withhold_strings: !plan.limits.strings,
        max_string: plan.limits.max_string as u64,
        max_elems: plan.limits.max_elems as u64,
    };
    plan.params
        .iter()
        .filter(|p| p.local == locals)
        .map(|p| {
            let size = d.underlying(p.ty).size;
            let v = match dec.direct(&p.pieces, size) {
                Ok(bytes) => dec.value(p.ty, &bytes, &mut vec![], 0),
                Err(why) => Value::Unavailable(why),
            };
            (p.name.clone(), v)
        })
        .collect()
}

/// The Go name of a type, as a person reads it (generic shape parameters
/// show their concrete type).
pub fn type_name(d: &DebugInfo, ty: TypeId) -> String {
    let t = d.ty(ty);
    if t.name.starts_with('.') || t.name.is_empty() {
        if let Kind::Named { target } = t.kind {
            return type_name(d, target);
        }
    }
    t.name.replace("go.shape.", "")
}

struct Decoder<'a> {
    d: &'a DebugInfo,
    rtypes: &'a HashMap<u64, TypeId>,
    ev: &'a RawEvent<'a>,
    /// The plan left string and byte-slice contents in the kernel (policy).
    withhold_strings: bool,
    /// The kernel's caps (`--max-string`, `--max-elems`), also applied to
    /// what the read-only data segment holds in full.
    max_string: u64,
    max_elems: u64,
}

fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    let o = usize::try_from(off).ok()?;
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn uint(b: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = b.len().min(8);
    buf[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(buf)
}

fn int(b: &[u8]) -> i64 {
    let n = b.len().min(8);
    let v = uint(b);
    if n == 0 || n == 8 {
        v as i64
    } else {
        let shift = 64 - 8 * n as u32;
        ((v << shift) as i64) >> shift
    }
}

fn float(b: &[u8]) -> f64 {
    match b.len() {
        4 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
        8 => f64::from_le_bytes(b.try_into().unwrap()),
        _ => f64::NAN,
    }
}

impl Decoder<'_> {
    /// Assembles a parameter's own bytes from registers and the stack.
    fn direct(&self, pieces: &[Piece], size: u64) -> Result<Vec<u8>, String> {
        if size > 1 << 20 {
            return Err("parameter too large to show".into());
        }
        let mut data = vec![0u8; size as usize];
        if pieces.is_empty() {
            return Err("optimized out at this PC".into());
        }
        let mut start = 0u64;
        for p in pieces {
            let n = p.size.unwrap_or(size.saturating_sub(start));
            let end = (start + n).min(size);
            if start >= end {
                break;
            }
            let dst = &mut data[start as usize..end as usize];
            match &p.place {
                Place::Reg(r) if (*r as usize) < NUM_REGS => {
                    let bytes = self.ev.header.regs[*r as usize].to_le_bytes();
                    let k = dst.len().min(8);
                    dst[..k].copy_from_slice(&bytes[..k]);
                }
                Place::Reg(r) => return Err(reg_unavailable(*r)),
                Place::Stack(off) => {
                    let addr = self.ev.sp().wrapping_add(*off as u64);
                    let src = self
                        .ev
                        .read(addr, dst.len() as u64)
                        .ok_or("stack slot outside the captured stack window")?;
                    dst.copy_from_slice(src);
                }
                Place::Unavailable(why) if why == "padding" => {}
                Place::Unavailable(why) => return Err(why.clone()),
            }
            start = end;
        }
        Ok(data)
    }

    fn value(&self, ty: TypeId, b: &[u8], path: &mut Vec<(u64, TypeId)>, nest: usize) -> Value {
        if nest > MAX_NESTING {
            return Value::Unavailable("nested too deeply to show".into());
        }
        let t = self.d.underlying(ty);
        let name = &self.d.ty(ty).name;
        let size = t.size as usize;
        let Some(b) = b.get(..size.min(b.len())) else {
            return Value::Unavailable("value cut short".into());
        };
        if b.len() < size {
            return Value::Unavailable(self.ev.missing());
        }
        match &t.kind {
            Kind::Bool => Value::Bool(b.first().is_some_and(|&x| x != 0)),
            Kind::Int if name == "time.Duration" => Value::Duration(int(b)),
            Kind::Int => Value::Int(int(b)),
            Kind::Uint => Value::Uint(uint(b)),
            Kind::Float => Value::Float(float(b)),
            Kind::Complex => {
                let h = size / 2;
                Value::Complex(float(&b[..h]), float(&b[h..]))
            }
            Kind::UnsafePointer => Value::Addr(uint(b)),
            Kind::String => {
                let (ptr, len) = (u64_at(b, 0).unwrap_or(0), u64_at(b, 8).unwrap_or(0));
                if len == 0 {
                    return Value::Str {
                        text: String::new(),
                        len: 0,
                        truncated: false,
                    };
                }
                if self.withhold_strings {
                    return Value::Withheld { len };
                }
                match self.ev.memory_at(ptr) {
                    Some((data, _)) => {
                        let n = (data.len() as u64).min(len).min(self.max_string) as usize;
                        Value::Str {
                            text: String::from_utf8_lossy(&data[..n]).into_owned(),
                            len,
                            truncated: (n as u64) < len,
                        }
                    }
                    None => Value::Unavailable(self.ev.missing()),
                }
            }
            Kind::Slice { elem } => {
                let (ptr, len) = (u64_at(b, 0).unwrap_or(0), u64_at(b, 8).unwrap_or(0));
                if ptr == 0 {
                    return Value::Nil;
                }
                if self.withhold_strings && crate::capture::is_byte(self.d, *elem) {
                    return Value::Withheld { len };
                }
                self.elements(*elem, ptr, len, path, nest)
            }
            Kind::Array { elem, count } => {
                let es = self.d.underlying(*elem).size;
                let n = (*count).min(MAX_INLINE);
                let items = (0..n)
                    .map(
                        |i| match b.get((i * es) as usize..((i + 1) * es) as usize) {
                            Some(eb) => self.value(*elem, eb, path, nest + 1),
                            None => Value::Unavailable("value cut short".into()),
                        },
                    )
                    .collect();
                Value::List { items, len: *count }
            }
            Kind::Pointer { pointee } => {
                let addr = uint(b);
                match pointee {
                    _ if addr == 0 => Value::Nil,
                    Some(p) => Value::Pointer(Box::new(self.at(*p, addr, path, nest))),
                    None => Value::Addr(addr),
                }
            }
            Kind::Struct { fields } => {
                let v = Value::Struct(
                    fields
                        .iter()
                        .map(|f| {
                            let fname = if f.embedded {
                                let tn = type_name(self.d, f.ty);
                                tn.trim_start_matches('*')
                                    .rsplit('.')
                                    .next()
                                    .unwrap_or(&tn)
                                    .to_owned()
                            } else {
                                f.name.clone()
                            };
                            let fb = b.get(f.offset as usize..).unwrap_or(&[]);
                            (fname, self.value(f.ty, fb, path, nest + 1))
                        })
                        .collect(),
                );
                if name == "time.Time" {
                    if let Some(text) = time_text(b, &v) {
                        return Value::Time {
                            fields: Box::new(v),
                            text,
                        };
                    }
                }
                v
            }
            Kind::Interface { empty } => self.iface(*empty, b, path, nest),
            Kind::Map { header } => {
                let addr = uint(b);
                if addr == 0 {
                    return Value::Nil;
                }
                self.map(*header, addr, path, nest)
            }
            Kind::Chan { .. } => {
                let addr = uint(b);
                if addr == 0 {
                    return Value::Nil;
                }
                match self.ev.read(addr, 16) {
                    Some(h) => Value::Chan {
                        type_name: type_name(self.d, ty),
                        len: u64_at(h, 0).unwrap_or(0),
                        cap: u64_at(h, 8).unwrap_or(0),
                    },
                    None => Value::Unavailable(self.ev.missing()),
                }
            }
            Kind::Func => {
                let addr = uint(b);
                if addr == 0 {
                    return Value::Nil;
                }
                match self.ev.read(addr, 8) {
                    Some(pc) => {
                        let pc = uint(pc).wrapping_sub(self.ev.bias);
                        match self.d.function_at(pc) {
                            Some(f) => Value::Func(f.name.clone()),
                            None => Value::Func(format!("func at {pc:#x}")),
                        }
                    }
                    None => Value::Unavailable(self.ev.missing()),
                }
            }
            Kind::Named { .. } | Kind::Pending | Kind::Other { .. } => Value::Unavailable(format!(
                "values of type {} are not decoded",
                type_name(self.d, ty)
            )),
        }
    }

    /// The value of type `ty` stored at `addr`, with cycle detection.
    fn at(&self, ty: TypeId, addr: u64, path: &mut Vec<(u64, TypeId)>, nest: usize) -> Value {
        if path.contains(&(addr, ty)) {
            return Value::Cycle(addr);
        }
        let size = self.d.underlying(ty).size;
        match self.ev.read(addr, size) {
            Some(b) => {
                path.push((addr, ty));
                let v = self.value(ty, b, path, nest + 1);
                path.pop();
                v
            }
            None => Value::Unavailable(self.ev.missing()),
        }
    }

    fn elements(
        &self,
        elem: TypeId,
        ptr: u64,
        len: u64,
        path: &mut Vec<(u64, TypeId)>,
        nest: usize,
    ) -> Value {
        if len == 0 {
            return Value::List {
                items: vec![],
                len: 0,
            };
        }
        let es = self.d.underlying(elem).size.max(1);
        match self.ev.memory_at(ptr) {
            Some((data, _)) => {
                let n = (data.len() as u64 / es).min(len).min(self.max_elems);
                let items = (0..n)
                    .map(|i| {
                        self.value(
                            elem,
                            &data[(i * es) as usize..((i + 1) * es) as usize],
                            path,
                            nest + 1,
                        )
                    })
                    .collect();
                Value::List { items, len }
            }
            None => Value::Unavailable(self.ev.missing()),
        }
    }

    fn iface(&self, empty: bool, b: &[u8], path: &mut Vec<(u64, TypeId)>, nest: usize) -> Value {
        let (w0, data) = (u64_at(b, 0).unwrap_or(0), u64_at(b, 8).unwrap_or(0));
        if w0 == 0 {
            return Value::Nil;
        }
        let rtype = if empty {
            Some(w0)
        } else {
            self.ev.read(w0.wrapping_add(8), 8).map(uint)
        };
        let Some(rtype) = rtype else {
            return Value::Unavailable(self.ev.missing());
        };
        let Some(&dyn_ty) = self.rtypes.get(&rtype.wrapping_sub(self.ev.bias)) else {
            return Value::Iface {
                type_name: format!("<runtime type {rtype:#x}>"),
                value: Box::new(Value::Unavailable(
                    "dynamic type not described in DWARF".into(),
                )),
            };
        };
        let value = if is_direct_iface(self.d, dyn_ty) {
            self.value(dyn_ty, &data.to_le_bytes(), path, nest + 1)
        } else {
            self.at(dyn_ty, data, path, nest)
        };
        Value::Iface {
            type_name: type_name(self.d, dyn_ty),
            value: Box::new(value),
        }
    }

    fn map(&self, header: TypeId, addr: u64, path: &mut Vec<(u64, TypeId)>, nest: usize) -> Value {
        let h = self.d.underlying(header);
        let Kind::Struct { fields } = &h.kind else {
            return Value::Unavailable("unknown map layout".into());
        };
        let Some(hb) = self.ev.read(addr, h.size) else {
            return Value::Unavailable(self.ev.missing());
        };
        let f = |n: &str| fields.iter().find(|x| x.name == n);
        let mut entries = vec![];
        let len;
        if let (Some(count), Some(buckets), Some(bf)) = (f("count"), f("buckets"), f("B")) {
            // hash<K,V> (Go ≤1.23).
            len = u64_at(hb, count.offset).unwrap_or(0);
            let b = hb.get(bf.offset as usize).copied().unwrap_or(0).min(30);
            let Kind::Pointer { pointee: Some(bt) } = self.d.underlying(buckets.ty).kind else {
                return Value::Unavailable("unknown map layout".into());
            };
            let bsize = self.d.underlying(bt).size;
            let mut arrays = vec![(u64_at(hb, buckets.offset).unwrap_or(0), 1u64 << b)];
            // Growing: buckets not evacuated yet still hold their entries in
            // `oldbuckets` (half as many, or as many on a same-size grow);
            // evacuated slots are marked below minTopHash and skipped, so
            // no entry is seen twice (runtime/map.go `evacuate`).
            if let (Some(old), Some(fl)) = (f("oldbuckets"), f("flags")) {
                let old = u64_at(hb, old.offset).unwrap_or(0);
                let flags = hb.get(fl.offset as usize).copied().unwrap_or(0);
                if old != 0 {
                    arrays.push((old, 1u64 << desc::old_buckets_log2(b, flags)));
                }
            }
            for (base, n) in arrays {
                for i in 0..n.min(1 << 16) {
                    let mut at = base.wrapping_add(i * bsize);
                    for _ in 0..64 {
                        if at == 0 || entries.len() as u64 >= len {
                            break;
                        }
                        let Some(bucket) = self.ev.read(at, bsize) else {
                            break;
                        };
                        at = self.bucket_entries(bt, bucket, &mut entries, path, nest);
                    }
                }
            }
        } else if let (Some(used), Some(dir), Some(dlen)) = (f("used"), f("dirPtr"), f("dirLen")) {
            // map<K,V>, Swiss tables (Go ≥1.24).
            len = u64_at(hb, used.offset).unwrap_or(0);
            let dir_ptr = u64_at(hb, dir.offset).unwrap_or(0);
            let dir_len = u64_at(hb, dlen.offset).unwrap_or(0);
            let Kind::Pointer {
                pointee: Some(table_ptr),
            } = self.d.underlying(dir.ty).kind
            else {
                return Value::Unavailable("unknown map layout".into());
            };
            let Some(group) = crate::capture::swiss_group(self.d, table_ptr) else {
                return Value::Unavailable("unknown map layout".into());
            };
            let gsize = self.d.underlying(group).size;
            if dir_len == 0 {
                if let Some(g) = self.ev.read(dir_ptr, gsize) {
                    self.group_entries(group, g, &mut entries, path, nest);
                }
            } else {
                let mut seen = vec![];
                for i in 0..dir_len.min(1 << 16) {
                    let Some(tp) = self.ev.read(dir_ptr.wrapping_add(i * 8), 8).map(uint) else {
                        break;
                    };
                    if tp == 0 || seen.contains(&tp) {
                        continue; // directory entries share tables
                    }
                    seen.push(tp);
                    self.table_entries(table_ptr, tp, group, &mut entries, path, nest);
                }
            }
        } else {
            return Value::Unavailable("unknown map layout".into());
        }
        Value::Map { entries, len }
    }

    /// Full slots of one `bucket<K,V>`; returns the overflow bucket's address.
    fn bucket_entries(
        &self,
        bt: TypeId,
        b: &[u8],
        out: &mut Vec<(Value, Value)>,
        path: &mut Vec<(u64, TypeId)>,
        nest: usize,
    ) -> u64 {
        let Kind::Struct { fields } = &self.d.underlying(bt).kind else {
            return 0;
        };
        let f = |n: &str| fields.iter().find(|x| x.name == n);
        let (Some(top), Some(keys), Some(vals)) =
            (f("tophash"), f("keys"), f("values").or_else(|| f("elems")))
        else {
            return 0;
        };
        let (Kind::Array { elem: kt, .. }, Kind::Array { elem: vt, .. }) = (
            &self.d.underlying(keys.ty).kind,
            &self.d.underlying(vals.ty).kind,
        ) else {
            return 0;
        };
        let (ks, vs) = (self.d.underlying(*kt).size, self.d.underlying(*vt).size);
        for j in 0..8u64 {
            // tophash values below minTopHash (5) mark empty or evacuated slots
            // (runtime/map.go).
            if b.get((top.offset + j) as usize).is_none_or(|&h| h < 5) {
                continue;
            }
            let kb = b.get((keys.offset + j * ks) as usize..).unwrap_or(&[]);
            let vb = b.get((vals.offset + j * vs) as usize..).unwrap_or(&[]);
            out.push((
                self.value(*kt, kb, path, nest + 1),
                self.value(*vt, vb, path, nest + 1),
            ));
        }
        f("overflow").and_then(|o| u64_at(b, o.offset)).unwrap_or(0)
    }

    fn table_entries(
        &self,
        table_ptr: TypeId,
        tp: u64,
        group: TypeId,
        out: &mut Vec<(Value, Value)>,
        path: &mut Vec<(u64, TypeId)>,
        nest: usize,
    ) {
        let Kind::Pointer {
            pointee: Some(table),
        } = self.d.underlying(table_ptr).kind
        else {
            return;
        };
        let t = self.d.underlying(table);
        let Kind::Struct { fields } = &t.kind else {
            return;
        };
        let Some(tb) = self.ev.read(tp, t.size) else {
            return;
        };
        let Some(groups) = fields.iter().find(|x| x.name == "groups") else {
            return;
        };
        let (data, mask) = (
            u64_at(tb, groups.offset).unwrap_or(0),
            u64_at(tb, groups.offset + 8).unwrap_or(0),
        );
        let gsize = self.d.underlying(group).size;
        for i in 0..(mask.saturating_add(1)).min(1 << 16) {
            match self.ev.read(data.wrapping_add(i * gsize), gsize) {
                Some(g) => self.group_entries(group, g, out, path, nest),
                None => break,
            }
        }
    }

    /// Full slots of one Swiss group: a control word (one byte per slot, high
    /// bit clear = full; internal/runtime/maps/group.go) then 8 slots.
    fn group_entries(
        &self,
        group: TypeId,
        g: &[u8],
        out: &mut Vec<(Value, Value)>,
        path: &mut Vec<(u64, TypeId)>,
        nest: usize,
    ) {
        let Kind::Struct { fields } = &self.d.underlying(group).kind else {
            return;
        };
        let (Some(ctrl), Some(slots)) = (
            fields.iter().find(|x| x.name == "ctrl"),
            fields.iter().find(|x| x.name == "slots"),
        ) else {
            return;
        };
        let Kind::Array { elem: st, count } = &self.d.underlying(slots.ty).kind else {
            return;
        };
        let Kind::Struct { fields: sf } = &self.d.underlying(*st).kind else {
            return;
        };
        let (Some(k), Some(e)) = (
            sf.iter().find(|x| x.name == "key"),
            sf.iter().find(|x| x.name == "elem"),
        ) else {
            return;
        };
        let ssize = self.d.underlying(*st).size;
        let ctrl = u64_at(g, ctrl.offset).unwrap_or(u64::MAX);
        for j in 0..(*count).min(8) {
            if (ctrl >> (8 * j)) & 0x80 != 0 {
                continue;
            }
            let sb = g.get((slots.offset + j * ssize) as usize..).unwrap_or(&[]);
            let kb = sb.get(k.offset as usize..).unwrap_or(&[]);
            let eb = sb.get(e.offset as usize..).unwrap_or(&[]);
            out.push((
                self.value(k.ty, kb, path, nest + 1),
                self.value(e.ty, eb, path, nest + 1),
            ));
        }
    }
}

/// `time.Time` as Go prints it (`2026-11-27 11:00:00.000005 +0000 UTC`),
/// from its `wall` and `ext` words (see time/time.go).
fn time_text(b: &[u8], v: &Value) -> Option<String> {
    const HAS_MONOTONIC: u64 = 1 << 63;
    const NSEC_MASK: u64 = (1 << 30) - 1;
    const WALL_TO_INTERNAL: i64 = 59_453_308_800;
    const UNIX_TO_INTERNAL: i64 = 62_135_596_800;
    let wall = u64_at(b, 0)?;
    let ext = u64_at(b, 8)? as i64;
    let sec = if wall & HAS_MONOTONIC != 0 {
        ((wall << 1) >> 31) as i64 + WALL_TO_INTERNAL
    } else {
        ext
    };
    let unix = sec.checked_sub(UNIX_TO_INTERNAL)?;
    let nsec = (wall & NSEC_MASK) as i128;
    let s = crate::output::rfc3339_nanos(unix as i128 * 1_000_000_000 + nsec);
    // "2026-11-27T11:00:00.000005000Z" → "2026-11-27 11:00:00.000005"
    let (date, rest) = s.split_once('T')?;
    let clock = rest.trim_end_matches('Z');
    let clock = clock.trim_end_matches('0').trim_end_matches('.');
    let loc_nil =
        matches!(v, Value::Struct(f) if f.iter().any(|(n, v)| n == "loc" && *v == Value::Nil));
    Some(if loc_nil {
        format!("{date} {clock} +0000 UTC")
    } else {
        format!("{date} {clock} UTC (in a time.Location)")
    })
}

//! The event decoder: a raw [`Event`] from the ring buffer plus the probe's
//! [`CapturePlan`] become named Go [`Value`]s.
//!
//! Free of aya and tokio. Bytes come from three places: the registers and
//! the stack window every event carries (a parameter's own words), and the
//! capture slots filled by the plan's ops (memory behind pointers).

use probe_common::{Event, NUM_REGS};

use crate::{
    dwarf::Place,
    plan::{reg_unavailable, CapturePlan, Node, Shape},
    value::Value,
};

/// Bytes with holes: where a hole is, the reason it could not be read.
struct Mem<'a> {
    data: std::borrow::Cow<'a, [u8]>,
    /// Bytes beyond `data` are missing for this reason.
    beyond: &'static str,
    holes: Vec<(u64, u64, String)>,
}

impl Mem<'_> {
    fn read(&self, off: u64, n: u64) -> Result<&[u8], String> {
        for (s, e, why) in &self.holes {
            if off < *e && off + n > *s {
                return Err(why.clone());
            }
        }
        let (o, n) = (off as usize, n as usize);
        self.data.get(o..o + n).ok_or_else(|| self.beyond.to_owned())
    }

    fn u64(&self, off: u64) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.read(off, 8)?.try_into().unwrap()))
    }
}

/// Decodes every parameter of `plan` from `ev`.
pub fn decode_args(plan: &CapturePlan, ev: &Event) -> Vec<(String, Value)> {
    let d = Decoder { ev };
    plan.params
        .iter()
        .map(|p| {
            let mem = d.direct(&p.pieces, p.size);
            (p.name.clone(), d.value(&p.node, &mem, 0))
        })
        .collect()
}

struct Decoder<'e> {
    ev: &'e Event,
}

impl Decoder<'_> {
    /// Assembles a parameter's own bytes from registers and the stack window.
    fn direct(&self, pieces: &[crate::dwarf::Piece], size: u64) -> Mem<'static> {
        let mut data = vec![0u8; size as usize];
        let mut holes = vec![];
        let mut start = 0u64;
        let stack = &self.ev.stack[..self.ev.header.stack_len as usize];
        for p in pieces {
            let n = p.size.unwrap_or(size - start.min(size));
            let end = (start + n).min(size);
            let dst = &mut data[start as usize..end as usize];
            match &p.place {
                Place::Reg(r) if (*r as usize) < NUM_REGS => {
                    let bytes = self.ev.header.regs[*r as usize].to_le_bytes();
                    let k = dst.len().min(8);
                    dst[..k].copy_from_slice(&bytes[..k]);
                }
                Place::Reg(r) => holes.push((start, end, reg_unavailable(*r))),
                Place::Stack(off) => {
                    let o = *off;
                    match (o >= 0).then(|| stack.get(o as usize..o as usize + dst.len())).flatten() {
                        Some(src) => dst.copy_from_slice(src),
                        None => holes.push((start, end, format!("stack slot rsp+{o} outside the captured stack window"))),
                    }
                }
                Place::Unavailable(why) => holes.push((start, end, why.clone())),
            }
            start = end;
        }
        Mem { data: data.into(), beyond: "optimized out at this PC", holes }
    }

    /// The captured bytes of op `slot`: `Ok((mem, full_len))`.
    fn slot(&self, slot: usize) -> Result<(Mem<'_>, u64), String> {
        let info = &self.ev.slots[slot];
        if info.got < 0 {
            return Err(format!("memory at {:#x} could not be read (errno {})", info.addr, -info.got));
        }
        let got = info.got as usize;
        Ok((
            Mem { data: (&self.ev.data[slot][..got]).into(), beyond: "not captured (capture limit)", holes: vec![] },
            info.want,
        ))
    }

    fn value(&self, node: &Node, mem: &Mem, off: u64) -> Value {
        match self.try_value(node, mem, off) {
            Ok(v) => v,
            Err(why) => Value::Unavailable(why),
        }
    }

    fn try_value(&self, node: &Node, mem: &Mem, off: u64) -> Result<Value, String> {
        Ok(match &node.shape {
            Shape::Bool => Value::Bool(mem.read(off, 1)?[0] != 0),
            Shape::Int { size } => Value::Int(sign_extend(mem.read(off, *size)?)),
            Shape::Duration => Value::Duration(sign_extend(mem.read(off, 8)?)),
            Shape::Uint { size } => Value::Uint(zero_extend(mem.read(off, *size)?)),
            Shape::Float { size: 4 } => {
                Value::Float(f32::from_le_bytes(mem.read(off, 4)?.try_into().unwrap()) as f64)
            }
            Shape::Float { .. } => Value::Float(f64::from_le_bytes(mem.read(off, 8)?.try_into().unwrap())),
            Shape::String { op } => {
                let len = mem.u64(off + 8)?;
                if len == 0 {
                    return Ok(Value::Str { text: String::new(), len: 0, truncated: false });
                }
                let (data, _) = self.slot(*op.as_ref().map_err(Clone::clone)?)?;
                let text = String::from_utf8_lossy(&data.data).into_owned();
                Value::Str { text, len, truncated: (data.data.len() as u64) < len }
            }
            Shape::Slice { elem, elem_size, op } => {
                let ptr = mem.u64(off)?;
                let len = mem.u64(off + 8)?;
                if ptr == 0 && len == 0 {
                    return Ok(Value::Nil);
                }
                if len == 0 {
                    return Ok(Value::List { items: vec![], len: 0 });
                }
                let (data, _) = self.slot(*op.as_ref().map_err(Clone::clone)?)?;
                let es = (*elem_size).max(1);
                let n = (data.data.len() as u64 / es).min(len);
                let items = (0..n).map(|i| self.value(elem, &data, i * es)).collect();
                Value::List { items, len }
            }
            Shape::Pointer { pointee, op } => {
                let ptr = mem.u64(off)?;
                if ptr == 0 {
                    return Ok(Value::Nil);
                }
                let slot = match op {
                    Ok(s) => *s,
                    Err(why) => return Ok(Value::Pointer(Box::new(Value::Unavailable(why.clone())))),
                };
                let v = match self.slot(slot) {
                    Ok((data, _)) => self.value(pointee, &data, 0),
                    Err(why) => Value::Unavailable(why),
                };
                Value::Pointer(Box::new(v))
            }
            Shape::Struct { fields } => Value::Struct(
                fields.iter().map(|(name, foff, n)| (name.clone(), self.value(n, mem, off + foff))).collect(),
            ),
            Shape::Array { elem, elem_size, count } => {
                let items = (0..*count).map(|i| self.value(elem, mem, off + i * elem_size)).collect();
                Value::List { items, len: *count }
            }
            Shape::Unavailable(why) => return Err(why.clone()),
        })
    }
}

fn zero_extend(b: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(buf)
}

fn sign_extend(b: &[u8]) -> i64 {
    let n = b.len().min(8);
    let v = zero_extend(b);
    if n == 8 {
        v as i64
    } else {
        let shift = 64 - 8 * n as u32;
        ((v << shift) as i64) >> shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends() {
        assert_eq!(sign_extend(&[0xff]), -1);
        assert_eq!(sign_extend(&[0xfe, 0xff]), -2);
        assert_eq!(sign_extend(&[5, 0, 0, 0]), 5);
        assert_eq!(zero_extend(&[0xff, 0xff]), 65535);
    }
}

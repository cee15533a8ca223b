//! The capture-plan compiler: from a resolved probe's parameters (DWARF types
//! and locations) to the [`CaptureOp`]s the kernel interprets at each hit, and
//! the [`Node`] tree the decoder walks to turn the captured bytes into values.
//!
//! Free of aya and tokio. The kernel side copies registers and a stack window
//! for every hit; ops add the memory behind pointers: a string's bytes, a
//! slice's backing array, a pointed-to struct (and, chained through earlier
//! slots, the strings and pointers inside it). Ops are a bounded budget
//! ([`MAX_OPS`]); whatever does not fit is decoded as unavailable, with the
//! reason, never guessed.

use probe_common::{CaptureOp, Source, MAX_OPS, SLOT_BYTES, SRC_CONST, SRC_REG, SRC_SLOT, SRC_STACK, STACK_BYTES};

use crate::dwarf::{DebugInfo, Kind, Param, Piece, Place, TypeId};

/// How deep pointers are followed.
pub const MAX_POINTER_DEPTH: usize = 3;

/// What the decoder does with the bytes at one spot.
#[derive(Clone, Debug)]
pub struct Node {
    /// The Go type name, for display.
    pub type_name: String,
    pub shape: Shape,
}

#[derive(Clone, Debug)]
pub enum Shape {
    Bool,
    Int { size: u64 },
    Uint { size: u64 },
    Float { size: u64 },
    Duration,
    /// Data pointer at +0, length at +8; bytes in the op's slot.
    String { op: Result<usize, String> },
    /// Data pointer at +0, length at +8; elements in the op's slot.
    Slice { elem: Box<Node>, elem_size: u64, op: Result<usize, String> },
    /// Address at +0; the pointee's bytes in the op's slot.
    Pointer { pointee: Box<Node>, op: Result<usize, String> },
    Struct { fields: Vec<(String, u64, Node)> },
    Array { elem: Box<Node>, elem_size: u64, count: u64 },
    Unavailable(String),
}

/// The decoding recipe of one parameter.
#[derive(Clone, Debug)]
pub struct ParamPlan {
    pub name: String,
    pub size: u64,
    /// Where the parameter's own bytes are at the probed PC.
    pub pieces: Vec<Piece>,
    pub node: Node,
}

/// Everything the kernel and the decoder need for one probe.
#[derive(Clone, Debug, Default)]
pub struct CapturePlan {
    pub ops: Vec<CaptureOp>,
    pub params: Vec<ParamPlan>,
    pub stack_bytes: u32,
}

/// Where the bytes being compiled live.
#[derive(Clone, Copy)]
enum Base<'a> {
    /// The parameter itself, at `offset` into its pieces.
    Direct(&'a [Piece], u64),
    /// In capture slot `slot`, at `offset`.
    Slot(usize, u64),
    /// Inside a slice or array element: readable, but ops cannot address it.
    Element,
}

impl Base<'_> {
    fn at(self, off: u64) -> Self {
        match self {
            Base::Direct(p, o) => Base::Direct(p, o + off),
            Base::Slot(s, o) => Base::Slot(s, o + off),
            Base::Element => Base::Element,
        }
    }
}

struct Compiler<'d> {
    dwarf: &'d DebugInfo,
    ops: Vec<CaptureOp>,
}

/// Compiles the plan for `params` (results are skipped: they are not set at entry).
pub fn compile(dwarf: &DebugInfo, params: &[Param]) -> CapturePlan {
    let mut c = Compiler { dwarf, ops: vec![] };
    let mut plans = vec![];
    for p in params.iter().filter(|p| !p.is_result) {
        let size = dwarf.ty(p.ty).size;
        let node = if p.pieces.is_empty() {
            Node {
                type_name: dwarf.ty(p.ty).name.clone(),
                shape: Shape::Unavailable("optimized out at this PC".into()),
            }
        } else {
            c.node(p.ty, Base::Direct(&p.pieces, 0), 0)
        };
        plans.push(ParamPlan { name: p.name.clone(), size, pieces: p.pieces.clone(), node });
    }
    CapturePlan { ops: c.ops, params: plans, stack_bytes: STACK_BYTES as u32 }
}

impl Compiler<'_> {
    fn node(&mut self, ty: TypeId, base: Base, depth: usize) -> Node {
        let type_name = self.dwarf.ty(ty).name.clone();
        let t = self.dwarf.underlying(ty);
        let shape = match &t.kind {
            Kind::Bool => Shape::Bool,
            Kind::Int if type_name == "time.Duration" => Shape::Duration,
            Kind::Int => Shape::Int { size: t.size },
            Kind::Uint => Shape::Uint { size: t.size },
            Kind::Float => Shape::Float { size: t.size },
            Kind::Complex => Shape::Unavailable("complex numbers are decoded in a later release".into()),
            Kind::String => Shape::String { op: self.op(base, 0, Some(8), 1) },
            Kind::Slice { elem } => {
                let elem_size = self.dwarf.ty(*elem).size;
                let op = self.op(base, 0, Some(8), elem_size.max(1) as u32);
                let elem = Box::new(self.node(*elem, Base::Element, depth + 1));
                Shape::Slice { elem, elem_size, op }
            }
            Kind::Pointer { pointee: Some(p) } if depth < MAX_POINTER_DEPTH => {
                let psize = self.dwarf.underlying(*p).size;
                let op = self.op(base, 0, None, psize.max(1) as u32);
                let pointee = match op {
                    Ok(slot) => self.node(*p, Base::Slot(slot, 0), depth + 1),
                    Err(ref e) => Node { type_name: self.dwarf.ty(*p).name.clone(), shape: Shape::Unavailable(e.clone()) },
                };
                Shape::Pointer { pointee: Box::new(pointee), op }
            }
            Kind::Pointer { .. } => Shape::Unavailable(format!("pointer depth limit ({MAX_POINTER_DEPTH}) reached")),
            Kind::Struct { fields } => {
                let fields = fields.clone();
                let mut out = vec![];
                for f in fields {
                    let name = if f.embedded {
                        // Go names an embedded field after its type, without package or `*`.
                        let tn = &self.dwarf.ty(f.ty).name;
                        tn.trim_start_matches('*').rsplit('.').next().unwrap_or(tn).to_owned()
                    } else {
                        f.name.clone()
                    };
                    out.push((name, f.offset, self.node(f.ty, base.at(f.offset), depth)));
                }
                Shape::Struct { fields: out }
            }
            Kind::Array { elem, count } => {
                let elem_size = self.dwarf.ty(*elem).size;
                let elem = Box::new(self.node(*elem, Base::Element, depth + 1));
                Shape::Array { elem, elem_size, count: *count }
            }
            Kind::Named { .. } | Kind::Pending => Shape::Unavailable("unresolved type".into()),
            Kind::Other { go_kind } => Shape::Unavailable(format!(
                "{} values are decoded in a later release",
                match *go_kind {
                    crate::dwarf::go_kind::MAP => "map",
                    crate::dwarf::go_kind::CHAN => "channel",
                    crate::dwarf::go_kind::INTERFACE => "interface",
                    crate::dwarf::go_kind::FUNC => "func",
                    crate::dwarf::go_kind::UNSAFE_POINTER => "unsafe.Pointer",
                    _ => "these",
                }
            )),
        };
        Node { type_name, shape }
    }

    /// Adds an op reading `count * elem_size` bytes at the address held in the
    /// word at `base + addr_off`; `count` is the word at `base + len_off`, or 1.
    fn op(&mut self, base: Base, addr_off: u64, len_off: Option<u64>, elem_size: u32) -> Result<usize, String> {
        let addr = self.source(base, addr_off)?;
        let len = match len_off {
            Some(o) => self.source(base, o)?,
            None => Source { kind: SRC_CONST, index: 0, _pad: [0; 2], offset: 1 },
        };
        if self.ops.len() >= MAX_OPS {
            return Err(format!("capture budget of {MAX_OPS} reads per hit used up"));
        }
        self.ops.push(CaptureOp { addr, len, elem_size, max_bytes: SLOT_BYTES as u32 });
        Ok(self.ops.len() - 1)
    }

    /// Where the kernel finds the 8-byte word at `base + off`.
    fn source(&self, base: Base, off: u64) -> Result<Source, String> {
        let src = |kind, index: u8, offset: i64| Source { kind, index, _pad: [0; 2], offset: offset as i32 };
        match base {
            Base::Element => Err("values inside slice and array elements are captured in a later release".into()),
            Base::Slot(slot, o) => {
                let at = o + off;
                if at + 8 > SLOT_BYTES as u64 {
                    Err(format!("beyond the {SLOT_BYTES}-byte capture slot"))
                } else {
                    Ok(src(SRC_SLOT, slot as u8, at as i64))
                }
            }
            Base::Direct(pieces, o) => {
                let at = o + off;
                match locate(pieces, at)? {
                    (Place::Reg(r), 0) if *r <= 16 => Ok(src(SRC_REG, *r as u8, 0)),
                    (Place::Stack(s), within) => Ok(src(SRC_STACK, 0, s + within as i64)),
                    (Place::Reg(r), _) if *r > 16 => Err(reg_unavailable(*r)),
                    (Place::Unavailable(why), _) => Err(why.clone()),
                    _ => Err("word split across registers".into()),
                }
            }
        }
    }
}

/// The piece holding byte `at` of a value, and the offset within that piece.
pub fn locate(pieces: &[Piece], at: u64) -> Result<(&Place, u64), String> {
    let mut start = 0;
    for p in pieces {
        match p.size {
            None => return Ok((&p.place, at - start)),
            Some(n) if at < start + n => return Ok((&p.place, at - start)),
            Some(n) => start += n,
        }
    }
    Err("optimized out at this PC".into())
}

/// Why a value in register `r` (DWARF number) cannot be shown.
pub fn reg_unavailable(r: u16) -> String {
    if (17..=32).contains(&r) {
        format!("in register XMM{}, which BPF programs cannot read at a uprobe", r - 17)
    } else {
        format!("in DWARF register {r}, which Probe does not record")
    }
}

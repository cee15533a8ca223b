//! The capture-plan compiler: from Go types (DWARF) to what the kernel walks.
//!
//! Free of aya and tokio. Two outputs:
//! - [`Tables`], per binary and shared by every probe: one [`TypeInfo`] per
//!   Go type the walk can reach (size, and the pointer-carrying words inside a
//!   value, nested structs and arrays flattened), plus the runtime type
//!   descriptors (`RTYPES`) that let the kernel follow an interface to its
//!   dynamic value;
//! - a [`ProbePlan`] per probe: the [`RootOp`]s that start the walk from the
//!   parameters' registers and stack slots, and what the decoder needs to
//!   name and type every parameter.
//!
//! Maps need their runtime layout: `hash<K,V>` buckets (Go ≤1.23) are an
//! array of `1 << B` buckets chained through `overflow`; Swiss tables (Go
//! ≥1.24) are a directory of tables of groups, or a single group for small
//! maps. Both layouts come from the binary's DWARF, never from a table of
//! offsets per release.

use std::collections::HashMap;

use probe_common::{
    desc, Desc, RootOp, Source, TypeInfo, MAX_DESCS, MAX_ROOTS, MAX_TYPES, SRC_REG, SRC_SP,
    SRC_STACK, TID_BYTES,
};

use crate::dwarf::{DebugInfo, Kind, Param, Piece, Place, TypeId};

/// Per-binary type tables for the kernel.
pub struct Tables {
    /// Indexed by kernel type id; entry 0 is plain bytes.
    pub types: Vec<TypeInfo>,
    by_dwarf: HashMap<TypeId, u32>,
    headers: HashMap<TypeId, u32>,
    plain: HashMap<u32, u32>,
    /// Runtime type descriptor address → kernel type id to read at an
    /// interface's data word.
    pub rtypes: Vec<(u64, u32)>,
    /// Types whose descriptors did not fit in [`MAX_DESCS`].
    pub overflowed: usize,
    /// Leave the contents of strings and byte slices out of every plan (a
    /// daemon policy's "no strings"): no descriptor or root leads the
    /// kernel to them, so those bytes are never read. Set before the first
    /// type is added ([`Limits::strings`]).
    pub withhold_strings: bool,
}

impl Default for Tables {
    fn default() -> Self {
        Self::new()
    }
}

impl Tables {
    pub fn new() -> Self {
        let bytes = TypeInfo {
            size: 1,
            ..Default::default()
        };
        Self {
            types: vec![bytes],
            by_dwarf: HashMap::new(),
            headers: HashMap::new(),
            plain: HashMap::new(),
            rtypes: vec![],
            overflowed: 0,
            withhold_strings: false,
        }
    }

    fn alloc(&mut self, size: u64) -> Option<u32> {
        if self.types.len() >= MAX_TYPES as usize {
            return None;
        }
        self.types.push(TypeInfo {
            size: size as u32,
            ..Default::default()
        });
        Some(self.types.len() as u32 - 1)
    }

    /// A type of `size` bytes with nothing to follow inside.
    pub fn plain(&mut self, size: u64) -> u32 {
        if let Some(&t) = self.plain.get(&(size as u32)) {
            return t;
        }
        let t = self.alloc(size).unwrap_or(TID_BYTES);
        self.plain.insert(size as u32, t);
        t
    }

    /// The kernel type id of DWARF type `ty`.
    pub fn tid(&mut self, d: &DebugInfo, ty: TypeId) -> u32 {
        let u = underlying_id(d, ty);
        if let Some(&t) = self.by_dwarf.get(&u) {
            return t;
        }
        let size = d.ty(u).size;
        let Some(t) = self.alloc(size) else {
            return TID_BYTES;
        };
        self.by_dwarf.insert(u, t);
        let mut descs = vec![];
        self.flatten(d, u, 0, &mut descs);
        self.set_descs(t, descs);
        t
    }

    fn set_descs(&mut self, t: u32, mut descs: Vec<Desc>) {
        if descs.len() > MAX_DESCS {
            self.overflowed += 1;
            descs.truncate(MAX_DESCS);
        }
        let info = &mut self.types[t as usize];
        info.n_descs = descs.len() as u32;
        for (i, dd) in descs.into_iter().enumerate() {
            info.descs[i] = dd;
        }
    }

    /// Appends the descriptors of the pointer-carrying words in a value of
    /// `ty` placed at `base`.
    fn flatten(&mut self, d: &DebugInfo, ty: TypeId, base: u64, out: &mut Vec<Desc>) {
        if out.len() > MAX_DESCS {
            return;
        }
        let t = d.underlying(ty).clone();
        let one = |kind, target, aux: u64| Desc {
            offset: base as u32,
            aux: aux as u32,
            target,
            target2: 0,
            kind,
            _pad: 0,
            repeat: 1,
            stride: 0,
        };
        match &t.kind {
            Kind::String if self.withhold_strings => {}
            Kind::String => out.push(one(desc::STRING, TID_BYTES, 0)),
            Kind::Slice { elem } if self.withhold_strings && is_byte(d, *elem) => {}
            Kind::Slice { elem } => {
                let e = self.tid(d, *elem);
                out.push(one(desc::SLICE, e, 0));
            }
            Kind::Pointer { pointee: Some(p) }
                if d.ty(*p).size > 0 || d.underlying(*p).size > 0 =>
            {
                let e = self.tid(d, *p);
                out.push(one(desc::PTR, e, 0));
            }
            Kind::Map { header } => {
                let h = self.header(d, *header);
                out.push(one(desc::PTR, h, 0));
            }
            Kind::Chan { header: Some(h) } => {
                let size = d.underlying(*h).size.min(16);
                let p = self.plain(size.max(16));
                out.push(one(desc::PTR, p, 0));
            }
            Kind::Func => {
                let p = self.plain(8);
                out.push(one(desc::PTR, p, 0));
            }
            Kind::Interface { empty } => {
                out.push(one(if *empty { desc::EFACE } else { desc::IFACE }, 0, 0));
            }
            Kind::Struct { fields } => {
                // A Swiss table's group reference: `data` points at
                // `lengthMask + 1` groups.
                if t.name.starts_with("groupReference<") {
                    if let (Some(data), Some(mask)) =
                        (field(fields, "data"), field(fields, "lengthMask"))
                    {
                        if let Kind::Pointer { pointee: Some(g) } = d.underlying(data.ty).kind {
                            let g = self.tid(d, g);
                            out.push(Desc {
                                aux: (base + mask.offset) as u32,
                                ..one(desc::ARRAY_MASK, g, 0)
                            });
                            out.last_mut().unwrap().offset = (base + data.offset) as u32;
                            return;
                        }
                    }
                }
                for f in fields {
                    self.flatten(d, f.ty, base + f.offset, out);
                }
            }
            Kind::Array { elem, count } => {
                let esize = d.underlying(*elem).size;
                let mut sub = vec![];
                self.flatten(d, *elem, 0, &mut sub);
                for s in sub {
                    if s.repeat == 1 && *count <= u16::MAX as u64 {
                        out.push(Desc {
                            offset: (base + s.offset as u64) as u32,
                            aux: (base + s.aux as u64) as u32,
                            repeat: *count as u16,
                            stride: esize as u32,
                            ..s
                        });
                    } else {
                        for i in 0..(*count).min(MAX_DESCS as u64 + 1) {
                            out.push(Desc {
                                offset: (base + i * esize + s.offset as u64) as u32,
                                aux: (base + i * esize + s.aux as u64) as u32,
                                ..s
                            });
                        }
                    }
                }
            }
            // No pointer to follow: the value's words are all in the
            // parent's bytes already.
            Kind::Bool
            | Kind::Int
            | Kind::Uint
            | Kind::Float
            | Kind::Complex
            | Kind::UnsafePointer
            // An unknown pointee (zero-sized, or `pointee: None`) or an
            // unreadable channel: nothing to read behind it.
            | Kind::Pointer { .. }
            | Kind::Chan { header: None }
            // Kinds Probe does not decode; a named type is resolved by
            // `underlying` before this match, and a pending one is
            // still being read.
            | Kind::Other { .. }
            | Kind::Named { .. }
            | Kind::Pending => {}
        }
    }

    /// The kernel type of a map header: how to reach its entries.
    fn header(&mut self, d: &DebugInfo, header: TypeId) -> u32 {
        if let Some(&t) = self.headers.get(&header) {
            return t;
        }
        let h = d.underlying(header).clone();
        let Some(t) = self.alloc(h.size) else {
            return TID_BYTES;
        };
        self.headers.insert(header, t);
        let Kind::Struct { fields } = &h.kind else {
            return t;
        };
        let mut descs = vec![];
        let base = Desc {
            offset: 0,
            aux: 0,
            target: 0,
            target2: 0,
            kind: 0,
            _pad: 0,
            repeat: 1,
            stride: 0,
        };
        if let (Some(buckets), Some(b)) = (field(fields, "buckets"), field(fields, "B")) {
            // hash<K,V>: buckets → 1 << B bucket<K,V> (overflow chains via
            // the bucket's own `overflow` pointer).
            if let Kind::Pointer { pointee: Some(bt) } = d.underlying(buckets.ty).kind {
                let bt = self.tid(d, bt);
                descs.push(Desc {
                    offset: buckets.offset as u32,
                    aux: b.offset as u32,
                    target: bt,
                    kind: desc::ARRAY_POW2,
                    ..base
                });
                // A growing map keeps the entries of buckets not evacuated
                // yet in `oldbuckets` (growth is incremental: each write
                // moves one or two buckets, runtime/map.go `growWork`).
                if let (Some(old), Some(flags)) =
                    (field(fields, "oldbuckets"), field(fields, "flags"))
                {
                    descs.push(Desc {
                        offset: old.offset as u32,
                        aux: b.offset as u32,
                        target: bt,
                        target2: flags.offset as u32,
                        kind: desc::OLD_BUCKETS,
                        ..base
                    });
                }
            }
        } else if let (Some(dir), Some(len)) = (field(fields, "dirPtr"), field(fields, "dirLen")) {
            // map<K,V> (Swiss): dirLen 0 → dirPtr is one group; else a
            // directory of dirLen *table<K,V>.
            if let Kind::Pointer {
                pointee: Some(table_ptr),
            } = d.underlying(dir.ty).kind
            {
                let group = swiss_group(d, table_ptr);
                let target2 = self.tid(d, table_ptr);
                let target = group.map(|g| self.tid(d, g)).unwrap_or(TID_BYTES);
                descs.push(Desc {
                    offset: dir.offset as u32,
                    aux: len.offset as u32,
                    target,
                    target2,
                    kind: desc::SWISS_DIR,
                    ..base
                });
            }
        }
        self.set_descs(t, descs);
        t
    }

    /// Registers every runtime type descriptor of the binary: `types_base`
    /// is the address of `runtime.types`.
    pub fn register_rtypes(&mut self, d: &mut DebugInfo, types_base: u64) -> HashMap<u64, TypeId> {
        let mut by_addr = HashMap::new();
        for (ty, off) in d.runtime_types() {
            // An offset from runtime.types (what Go emits), or already an
            // address inside the types section.
            let addr = if off >= types_base {
                off
            } else {
                types_base + off
            };
            by_addr.entry(addr).or_insert(ty);
            if self.types.len() >= MAX_TYPES as usize - 64 {
                continue; // keep room for the probes' own types
            }
            let target = if is_direct_iface(d, ty) {
                self.direct_target(d, ty)
            } else {
                Some(self.tid(d, ty))
            };
            if let Some(t) = target {
                if d.underlying(ty).size > 0 {
                    self.rtypes.push((addr, t));
                }
            }
        }
        by_addr
    }

    /// For a pointer-shaped type stored directly in an interface's data word:
    /// what to read at that word.
    fn direct_target(&mut self, d: &DebugInfo, ty: TypeId) -> Option<u32> {
        let t = d.underlying(ty).clone();
        match &t.kind {
            Kind::Pointer { pointee: Some(p) } => Some(self.tid(d, *p)),
            Kind::Map { header } => Some(self.header(d, *header)),
            Kind::Chan { .. } => Some(self.plain(16)),
            Kind::Func => Some(self.plain(8)),
            Kind::Struct { fields } if fields.len() == 1 => self.direct_target(d, fields[0].ty),
            Kind::Array { elem, count: 1 } => self.direct_target(d, *elem),
            _ => None,
        }
    }
}

/// Is `ty` a byte (`[]byte` holds text as often as `string` does)?
pub fn is_byte(d: &DebugInfo, ty: TypeId) -> bool {
    let t = d.underlying(ty);
    matches!(t.kind, Kind::Uint) && t.size == 1
}

/// Is `ty` stored directly in an interface's data word? (Go's
/// `isdirectiface`: pointer-shaped types, and structs/arrays of one of them.)
pub fn is_direct_iface(d: &DebugInfo, ty: TypeId) -> bool {
    match &d.underlying(ty).kind {
        Kind::Pointer { .. }
        | Kind::Map { .. }
        | Kind::Chan { .. }
        | Kind::Func
        | Kind::UnsafePointer => true,
        Kind::Struct { fields } => fields.len() == 1 && is_direct_iface(d, fields[0].ty),
        Kind::Array { elem, count: 1 } => is_direct_iface(d, *elem),
        _ => false,
    }
}

fn underlying_id(d: &DebugInfo, mut ty: TypeId) -> TypeId {
    for _ in 0..32 {
        match d.ty(ty).kind {
            Kind::Named { target } => ty = target,
            _ => break,
        }
    }
    ty
}

fn field<'a>(fields: &'a [crate::dwarf::Field], name: &str) -> Option<&'a crate::dwarf::Field> {
    fields.iter().find(|f| f.name == name)
}

/// From `*table<K,V>`, the group type: table.groups.data's pointee.
pub fn swiss_group(d: &DebugInfo, table_ptr: TypeId) -> Option<TypeId> {
    let Kind::Pointer {
        pointee: Some(table),
    } = d.underlying(table_ptr).kind
    else {
        return None;
    };
    let Kind::Struct { fields } = &d.underlying(table).kind else {
        return None;
    };
    let groups = field(fields, "groups")?;
    let Kind::Struct { fields } = &d.underlying(groups.ty).kind else {
        return None;
    };
    let data = field(fields, "data")?;
    match d.underlying(data.ty).kind {
        Kind::Pointer { pointee } => pointee,
        _ => None,
    }
}

/// Limits of one probe's capture (the `--max-*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: u32,
    pub max_string: u32,
    pub max_elems: u32,
    pub max_bytes: u32,
    /// Capture the contents of strings and byte slices (`false`: a daemon
    /// policy withholds them; their lengths are still shown).
    pub strings: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_string: 256,
            max_elems: 64,
            max_bytes: 8192,
            strings: true,
        }
    }
}

/// A parameter as the decoder sees it.
#[derive(Clone, Debug)]
pub struct ParamPlan {
    pub name: String,
    /// A local variable rather than a parameter.
    pub local: bool,
    pub ty: TypeId,
    /// Where its own bytes are at the probed PC.
    pub pieces: Vec<Piece>,
}

/// One probe's plan.
#[derive(Clone, Debug, Default)]
pub struct ProbePlan {
    pub roots: Vec<RootOp>,
    pub params: Vec<ParamPlan>,
    /// Pointer-carrying words left out because [`MAX_ROOTS`] was reached.
    pub dropped_roots: usize,
    /// Some variable's own bytes are read from the copied stack window
    /// (stack pieces of a value split across places); otherwise the window
    /// is not copied at all.
    pub needs_stack_window: bool,
    pub limits: Limits,
}

/// Compiles the plan for `params` (results are skipped: unset at entry;
/// compiler-internal parameters such as a generic's `.dict` are hidden).
pub fn compile(d: &DebugInfo, tables: &mut Tables, params: &[Param], limits: Limits) -> ProbePlan {
    compile_vars(d, tables, params, limits, false)
}

/// Compiles the plan for the results (`results`) or everything else.
pub fn compile_vars(
    d: &DebugInfo,
    tables: &mut Tables,
    params: &[Param],
    limits: Limits,
    results: bool,
) -> ProbePlan {
    let mut plan = ProbePlan {
        limits,
        ..Default::default()
    };
    for p in params
        .iter()
        .filter(|p| p.is_result == results && !p.name.starts_with('.'))
    {
        plan.params.push(ParamPlan {
            name: p.name.clone(),
            local: p.local,
            ty: p.ty,
            pieces: p.pieces.clone(),
        });
        // A variable wholly in one stack slot: read it where it lives (its
        // own bytes may lie beyond the stack window) and walk from there.
        if let [Piece {
            place: Place::Stack(off),
            size: None,
        }] = p.pieces.as_slice()
        {
            if plan.roots.len() >= MAX_ROOTS {
                plan.dropped_roots += 1;
                continue;
            }
            let at = Source {
                kind: SRC_SP,
                reg: 0,
                _pad: [0; 2],
                offset: *off as i32,
            };
            let target = tables.tid(d, p.ty);
            plan.roots.push(RootOp {
                w0: at,
                w1: Source::default(),
                target,
                kind: desc::PTR,
                _pad: [0; 3],
            });
            continue;
        }
        if p.pieces
            .iter()
            .any(|pc| matches!(pc.place, Place::Stack(_)))
        {
            plan.needs_stack_window = true;
        }
        let mut descs = vec![];
        tables.flatten(d, p.ty, 0, &mut descs);
        for dd in descs {
            for r in 0..dd.repeat.max(1) as u64 {
                let at = dd.offset as u64 + r * dd.stride as u64;
                let (Some(w0), w1) = (word(&p.pieces, at), word(&p.pieces, at + 8)) else {
                    continue;
                };
                if plan.roots.len() >= MAX_ROOTS {
                    plan.dropped_roots += 1;
                    continue;
                }
                plan.roots.push(RootOp {
                    w0,
                    w1: w1.unwrap_or_default(),
                    target: dd.target,
                    kind: dd.kind,
                    _pad: [0; 3],
                });
            }
        }
    }
    plan
}

/// Where the kernel finds the 8-byte word at byte `at` of a parameter.
pub(crate) fn word(pieces: &[Piece], at: u64) -> Option<Source> {
    let (place, within) = locate(pieces, at).ok()?;
    match place {
        Place::Reg(r) if *r <= 16 && within == 0 => Some(Source {
            kind: SRC_REG,
            reg: *r as u8,
            _pad: [0; 2],
            offset: 0,
        }),
        Place::Stack(s) => Some(Source {
            kind: SRC_STACK,
            reg: 0,
            _pad: [0; 2],
            offset: (s + within as i64) as i32,
        }),
        _ => None,
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
        format!(
            "in register XMM{}, which BPF programs cannot read at a uprobe",
            r - 17
        )
    } else {
        format!("in DWARF register {r}, which Probe does not record")
    }
}

//! DWARF reading for Go binaries: the function index, parameter locations at a
//! PC, Go types, and the runtime layouts (`runtime.g`) the kernel side needs.
//!
//! Free of aya and tokio so it unit-tests without root. One [`DebugInfo`] is
//! built per binary: a single pass indexes functions and named types by name;
//! types and parameters are parsed on demand and cached.
//!
//! Go-specific DWARF (see cmd/link/internal/ld/dwarf.go): types carry
//! `DW_AT_go_kind` (0x2900, a `reflect.Kind`), strings and slices are
//! structures of that kind, type references cross units (`DW_FORM_ref_addr`),
//! and under the register ABI (Go ≥1.17) parameters live in location lists
//! whose first range, at the function's entry, names registers by DWARF number.

use std::{collections::HashMap, path::Path, rc::Rc};

use gimli::{AttributeValue, DebugInfoOffset, Reader as _, UnitOffset};
use object::{Object, ObjectSection};

use crate::error::Error;

type R = gimli::EndianRcSlice<gimli::LittleEndian>;

/// A string attribute's text (`DW_AT_name` and the like), wherever the
/// unit keeps it (inline, `.debug_str`, `.debug_line_str`).
fn text(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    v: AttributeValue<R>,
) -> gimli::Result<String> {
    Ok(dwarf.attr_string(unit, v)?.to_string_lossy()?.into_owned())
}

const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
const DW_AT_GO_RUNTIME_TYPE: gimli::DwAt = gimli::DwAt(0x2904);

/// `reflect.Kind` values as Go's linker writes them in `DW_AT_go_kind`.
pub mod go_kind {
    pub const ARRAY: u64 = 17;
    pub const CHAN: u64 = 18;
    pub const FUNC: u64 = 19;
    pub const INTERFACE: u64 = 20;
    pub const MAP: u64 = 21;
    pub const PTR: u64 = 22;
    pub const SLICE: u64 = 23;
    pub const STRING: u64 = 24;
    pub const STRUCT: u64 = 25;
    pub const UNSAFE_POINTER: u64 = 26;
}

/// Index into [`DebugInfo`]'s type table.
pub type TypeId = usize;

/// A Go type as far as Probe decodes it.
#[derive(Clone, Debug)]
pub struct Type {
    /// The Go name (`int64`, `time.Duration`, `*main.Store`, `[]uint8`).
    pub name: String,
    pub size: u64,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    Complex,
    String,
    Slice {
        elem: TypeId,
    },
    Pointer {
        pointee: Option<TypeId>,
    },
    Struct {
        fields: Vec<Field>,
    },
    Array {
        elem: TypeId,
        count: u64,
    },
    /// A named type (`DW_TAG_typedef`), e.g. `time.Duration` → `int64`.
    Named {
        target: TypeId,
    },
    /// `interface{...}`: `empty` for `runtime.eface` (type, data), else
    /// `runtime.iface` (itab, data).
    Interface {
        empty: bool,
    },
    /// A map: one pointer to `header` (`hash<K,V>` up to Go 1.23, the Swiss
    /// table `map<K,V>` from Go 1.24).
    Map {
        header: TypeId,
    },
    /// A channel: one pointer to `header` (`hchan<T>`).
    Chan {
        header: Option<TypeId>,
    },
    /// A func value: one pointer to a closure whose first word is the code PC.
    Func,
    UnsafePointer,
    /// Anything else, by Go kind.
    Other {
        go_kind: u64,
    },
    /// Placeholder while a recursive type is being read.
    Pending,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub offset: u64,
    pub ty: TypeId,
    /// An embedded field (Go names it after its type).
    pub embedded: bool,
}

/// A function with code (`DW_TAG_subprogram` with `DW_AT_low_pc`).
#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    pub low_pc: u64,
    pub high_pc: u64,
    pub file: String,
    pub line: u64,
    unit: usize,
    offset: UnitOffset,
}

impl Function {
    /// A function known from `.gopclntab` alone (no DWARF), `low_pc..high_pc`.
    pub fn from_table(name: &str, low_pc: u64, high_pc: u64, file: &str, line: u64) -> Self {
        Self {
            high_pc,
            ..Self::synthetic(name, low_pc, file, line)
        }
    }

    /// A function record for code DWARF describes only as an inlined copy.
    pub fn synthetic(name: &str, pc: u64, file: &str, line: u64) -> Self {
        Self {
            name: name.to_owned(),
            low_pc: pc,
            high_pc: pc,
            file: file.to_owned(),
            line,
            unit: 0,
            offset: UnitOffset(0),
        }
    }
}

/// Rows (address, file id, line; line 0 ends a sequence) and file names.
type LineTable = (Vec<(u64, u32, u32)>, Vec<String>);

/// A copy of a function the compiler inlined into another
/// (`DW_TAG_inlined_subroutine`).
#[derive(Clone, Debug)]
pub struct InlinedCopy {
    /// The inlined function's name.
    pub name: String,
    /// First instruction of the copy.
    pub entry_pc: u64,
    /// The function it was inlined into, and where it is called from there.
    pub caller: String,
    pub call_file: String,
    pub call_line: u64,
    /// Address ranges of the copy's code.
    pub ranges: Vec<(u64, u64)>,
    unit: usize,
    offset: UnitOffset,
}

/// Where one piece of a value lives at a PC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// In a register, by DWARF number (0–16 integer, 17–32 XMM).
    Reg(u16),
    /// In memory at `rsp + offset` (stack-passed arguments, spills).
    Stack(i64),
    /// Nowhere Probe can read at this PC, and why.
    Unavailable(String),
}

/// One piece of a value's location: `size` bytes at `place`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub place: Place,
    /// Bytes; `None` when the location is a single piece for the whole value.
    pub size: Option<u64>,
}

/// A formal parameter of a function.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub ty: TypeId,
    /// Go results are formal parameters with `DW_AT_variable_parameter`.
    pub is_result: bool,
    /// A local variable (`DW_TAG_variable`), not a parameter.
    pub local: bool,
    /// Location at the queried PC; empty when the compiler dropped it there.
    pub pieces: Vec<Piece>,
}

/// Layout facts about the Go runtime needed by the kernel side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// Offset of `runtime.g.goid`.
    pub goid_offset: u64,
    /// Offset of `runtime.g.stack.hi`.
    pub stack_hi_offset: u64,
}

/// Parsed DWARF of one binary.
pub struct DebugInfo {
    dwarf: gimli::Dwarf<R>,
    /// `.debug_frame` (Go's call frame information), for the CFA at a PC.
    frame: gimli::DebugFrame<R>,
    units: Vec<gimli::Unit<R>>,
    /// Start offset of each unit in `.debug_info`, ascending.
    unit_starts: Vec<DebugInfoOffset>,
    functions: Vec<Function>,
    /// Inlined copies by the inlined function's name.
    inlined: HashMap<String, Vec<InlinedCopy>>,
    /// Abstract (inline-only) subprograms: their names by DIE.
    abstract_names: HashMap<DebugInfoOffset, String>,
    /// Indices of `functions` sorted by `low_pc`, for address lookups.
    by_addr: Vec<usize>,
    by_name: HashMap<String, usize>,
    type_names: HashMap<String, DebugInfoOffset>,
    /// `DW_AT_go_runtime_type` of type DIEs: offsets from `runtime.types`.
    runtime_types: Vec<(DebugInfoOffset, u64)>,
    types: Vec<Type>,
    type_cache: HashMap<DebugInfoOffset, TypeId>,
    /// Address → (file, line) rows of every line program, built on first use.
    lines: std::cell::OnceCell<LineTable>,
}

impl DebugInfo {
    /// Loads DWARF from an ELF file's bytes (compressed sections included:
    /// Go's linker zlib-compresses DWARF by default).
    pub fn load(data: &[u8], path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadDwarf {
            path: path.to_owned(),
            reason,
        };
        let file = object::File::parse(data).map_err(|e| bad(e.to_string()))?;
        let load = |id: gimli::SectionId| -> Result<R, gimli::Error> {
            let bytes: Rc<[u8]> = match file.section_by_name(id.name()) {
                Some(s) => match s.uncompressed_data() {
                    Ok(d) => Rc::from(&*d),
                    Err(_) => Rc::from(&[][..]),
                },
                None => Rc::from(&[][..]),
            };
            Ok(R::new(bytes, gimli::LittleEndian))
        };
        let dwarf = gimli::Dwarf::load(load).map_err(|e| bad(e.to_string()))?;
        let mut frame = gimli::DebugFrame::from(
            load(gimli::SectionId::DebugFrame).map_err(|e| bad(e.to_string()))?,
        );
        frame.set_address_size(8);
        let mut me = Self {
            dwarf,
            frame,
            units: vec![],
            unit_starts: vec![],
            functions: vec![],
            inlined: HashMap::new(),
            abstract_names: HashMap::new(),
            by_addr: vec![],
            by_name: HashMap::new(),
            type_names: HashMap::new(),
            runtime_types: vec![],
            types: vec![],
            type_cache: HashMap::new(),
            lines: std::cell::OnceCell::new(),
        };
        me.index().map_err(|e| bad(e.to_string()))?;
        me.index_inlined().map_err(|e| bad(e.to_string()))?;
        let mut by_addr: Vec<usize> = (0..me.functions.len()).collect();
        by_addr.sort_by_key(|&i| me.functions[i].low_pc);
        me.by_addr = by_addr;
        Ok(me)
    }

    fn index(&mut self) -> gimli::Result<()> {
        let mut headers = self.dwarf.units();
        while let Some(header) = headers.next()? {
            let start = header
                .offset()
                .as_debug_info_offset()
                .unwrap_or(DebugInfoOffset(0));
            let unit = self.dwarf.unit(header)?;
            let ui = self.units.len();
            let mut entries = unit.entries();
            let mut depth = 0isize;
            while let Some((delta, e)) = entries.next_dfs()? {
                depth += delta;
                if depth != 1 {
                    continue;
                }
                let tag = e.tag();
                if tag != gimli::DW_TAG_subprogram {
                    let rt = match e.attr_value(DW_AT_GO_RUNTIME_TYPE)? {
                        Some(AttributeValue::Addr(a)) => Some(a),
                        Some(v) => v.udata_value(),
                        None => None,
                    };
                    if let Some(rt) = rt {
                        if rt != 0 {
                            if let Some(off) = e.offset().to_debug_info_offset(&unit.header) {
                                self.runtime_types.push((off, rt));
                            }
                        }
                    }
                }
                let name = match e.attr_value(gimli::DW_AT_name)? {
                    Some(v) => text(&self.dwarf, &unit, v)?,
                    None => continue,
                };
                match tag {
                    gimli::DW_TAG_subprogram => {
                        let Some(AttributeValue::Addr(_) | AttributeValue::DebugAddrIndex(_)) =
                            e.attr_value(gimli::DW_AT_low_pc)?
                        else {
                            continue;
                        };
                        let low = match e.attr_value(gimli::DW_AT_low_pc)? {
                            Some(v) => self.dwarf.attr_address(&unit, v)?.unwrap_or(0),
                            None => 0,
                        };
                        let high = match e.attr_value(gimli::DW_AT_high_pc)? {
                            Some(AttributeValue::Udata(n)) => low + n,
                            Some(v) => self.dwarf.attr_address(&unit, v)?.unwrap_or(low),
                            None => low,
                        };
                        let line = e
                            .attr_value(gimli::DW_AT_decl_line)?
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        let file = match e.attr_value(gimli::DW_AT_decl_file)? {
                            Some(AttributeValue::FileIndex(i)) => file_name(&self.dwarf, &unit, i),
                            Some(v) => v
                                .udata_value()
                                .map(|i| file_name(&self.dwarf, &unit, i))
                                .unwrap_or_default(),
                            None => String::new(),
                        };
                        self.by_name
                            .entry(name.clone())
                            .or_insert(self.functions.len());
                        self.functions.push(Function {
                            name,
                            low_pc: low,
                            high_pc: high,
                            file,
                            line,
                            unit: ui,
                            offset: e.offset(),
                        });
                    }
                    gimli::DW_TAG_structure_type
                    | gimli::DW_TAG_typedef
                    | gimli::DW_TAG_base_type
                    | gimli::DW_TAG_pointer_type => {
                        if let Some(off) = e.offset().to_debug_info_offset(&unit.header) {
                            self.type_names.entry(name).or_insert(off);
                        }
                    }
                    _ => {}
                }
            }
            self.units.push(unit);
            self.unit_starts.push(start);
        }
        Ok(())
    }

    /// Second pass: abstract subprograms and their inlined copies.
    fn index_inlined(&mut self) -> gimli::Result<()> {
        let mut pending = vec![]; // (origin, copy without name)
        for (ui, unit) in self.units.iter().enumerate() {
            let mut entries = unit.entries();
            let mut depth = 0isize;
            let mut caller = String::new();
            while let Some((delta, e)) = entries.next_dfs()? {
                depth += delta;
                match e.tag() {
                    gimli::DW_TAG_subprogram if depth == 1 => {
                        let name = match e.attr_value(gimli::DW_AT_name)? {
                            Some(v) => text(&self.dwarf, unit, v)?,
                            None => String::new(),
                        };
                        if e.attr_value(gimli::DW_AT_inline)?.is_some() {
                            if let Some(off) = e.offset().to_debug_info_offset(&unit.header) {
                                self.abstract_names.insert(off, name.clone());
                            }
                        }
                        caller = name;
                    }
                    gimli::DW_TAG_inlined_subroutine => {
                        let origin = match e.attr_value(gimli::DW_AT_abstract_origin)? {
                            Some(AttributeValue::UnitRef(o)) => {
                                o.to_debug_info_offset(&unit.header)
                            }
                            Some(AttributeValue::DebugInfoRef(o)) => Some(o),
                            _ => None,
                        };
                        let Some(origin) = origin else { continue };
                        let mut entry_pc = None;
                        let mut ranges = self.dwarf.die_ranges(unit, e)?;
                        let mut rs = vec![];
                        while let Some(r) = ranges.next()? {
                            entry_pc = Some(entry_pc.map_or(r.begin, |p: u64| p.min(r.begin)));
                            rs.push((r.begin, r.end));
                        }
                        let Some(entry_pc) = entry_pc else { continue };
                        let call_line = e
                            .attr_value(gimli::DW_AT_call_line)?
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        let call_file = match e.attr_value(gimli::DW_AT_call_file)? {
                            Some(AttributeValue::FileIndex(i)) => file_name(&self.dwarf, unit, i),
                            Some(v) => v
                                .udata_value()
                                .map(|i| file_name(&self.dwarf, unit, i))
                                .unwrap_or_default(),
                            None => String::new(),
                        };
                        pending.push((
                            origin,
                            InlinedCopy {
                                name: String::new(),
                                entry_pc,
                                caller: caller.clone(),
                                call_file,
                                call_line,
                                ranges: rs,
                                unit: ui,
                                offset: e.offset(),
                            },
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (origin, mut copy) in pending {
            if let Some(name) = self.abstract_names.get(&origin) {
                copy.name = name.clone();
                self.inlined.entry(name.clone()).or_default().push(copy);
            }
        }
        Ok(())
    }

    /// The inlined copies whose code contains `pc`, innermost first.
    pub fn inline_chain(&self, pc: u64) -> Vec<&InlinedCopy> {
        let mut chain: Vec<(&InlinedCopy, u64)> = self
            .inlined
            .values()
            .flatten()
            .filter(|c| c.ranges.iter().any(|r| r.0 <= pc && pc < r.1))
            .map(|c| (c, c.ranges.iter().map(|r| r.1 - r.0).sum()))
            .collect();
        chain.sort_by_key(|c| c.1);
        chain.into_iter().map(|c| c.0).collect()
    }

    /// The inlined copies of function `name`.
    pub fn inlined_copies(&self, name: &str) -> &[InlinedCopy] {
        self.inlined.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Variables of an inlined copy at `pc` (names and types come from the
    /// abstract function through `DW_AT_abstract_origin`).
    pub fn inlined_variables(
        &mut self,
        copy: &InlinedCopy,
        pc: u64,
        cfa: i64,
        locals: bool,
    ) -> Result<Vec<Param>, gimli::Error> {
        let f = Function {
            name: copy.name.clone(),
            low_pc: copy.entry_pc,
            high_pc: copy.entry_pc,
            file: String::new(),
            line: 0,
            unit: copy.unit,
            offset: copy.offset,
        };
        self.variables(&f, pc, cfa, locals)
    }

    /// Every function with code, in DWARF order.
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// The function named exactly `name` (Go syntax: `main.(*Store).Put`).
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.by_name.get(name).map(|&i| &self.functions[i])
    }

    /// The shape instantiations of generic function `name`
    /// (`main.Max` → `main.Max[go.shape.int]`, `main.Max[go.shape.string]`).
    pub fn instantiations(&self, name: &str) -> Vec<&Function> {
        let prefix = format!("{name}[");
        self.functions
            .iter()
            .filter(|f| f.name.starts_with(&prefix) && f.name.ends_with(']'))
            .collect()
    }

    /// The function whose code contains `pc`.
    pub fn function_at(&self, pc: u64) -> Option<&Function> {
        let i = self
            .by_addr
            .partition_point(|&i| self.functions[i].low_pc <= pc);
        self.by_addr[..i]
            .iter()
            .rev()
            .take(4)
            .map(|&i| &self.functions[i])
            .find(|f| f.low_pc <= pc && pc < f.high_pc)
    }

    /// Every type DIE that has a Go runtime type descriptor, resolved, with
    /// the descriptor's offset from `runtime.types`.
    pub fn runtime_types(&mut self) -> Vec<(TypeId, u64)> {
        let list = self.runtime_types.clone();
        list.into_iter()
            .filter_map(|(off, rt)| self.type_at(off).ok().map(|t| (t, rt)))
            .collect()
    }

    pub fn ty(&self, id: TypeId) -> &Type {
        &self.types[id]
    }

    /// Follows named types to the type that says how the bytes look.
    pub fn underlying(&self, mut id: TypeId) -> &Type {
        for _ in 0..32 {
            match self.types[id].kind {
                Kind::Named { target } => id = target,
                _ => break,
            }
        }
        &self.types[id]
    }

    /// A pointer type to `elem` that DWARF does not describe (Go omits
    /// pointer types no variable uses, yet interfaces can hold them).
    pub fn add_pointer_type(&mut self, elem: TypeId) -> TypeId {
        let name = format!("*{}", self.types[elem].name);
        self.types.push(Type {
            name,
            size: 8,
            kind: Kind::Pointer {
                pointee: Some(elem),
            },
        });
        self.types.len() - 1
    }

    /// A type that no DWARF describes (the argument words of a binary
    /// without DWARF, see `resolve`).
    pub fn add_type(&mut self, t: Type) -> TypeId {
        self.types.push(t);
        self.types.len() - 1
    }

    /// A named type by its Go name (`runtime.g`).
    pub fn type_by_name(&mut self, name: &str) -> Option<TypeId> {
        let off = *self.type_names.get(name)?;
        self.type_at(off).ok()
    }

    /// Offsets in `runtime.g` that the kernel side reads.
    pub fn runtime_layout(&mut self) -> Option<RuntimeLayout> {
        let g = self.type_by_name("runtime.g")?;
        let fields = match &self.underlying(g).kind {
            Kind::Struct { fields } => fields.clone(),
            _ => return None,
        };
        let goid = fields.iter().find(|f| f.name == "goid")?.offset;
        let stack = fields.iter().find(|f| f.name == "stack")?;
        let hi = match &self.underlying(stack.ty).kind {
            Kind::Struct { fields } => fields.iter().find(|f| f.name == "hi")?.offset,
            _ => return None,
        };
        Some(RuntimeLayout {
            goid_offset: goid,
            stack_hi_offset: stack.offset + hi,
        })
    }

    /// The CFA at `pc` as an offset from RSP, from `.debug_frame` (Go keeps
    /// the CFA RSP-relative: `rsp + 8` at entry, `rsp + frame + 8` in the body).
    pub fn cfa_offset(&self, pc: u64) -> Option<i64> {
        use gimli::UnwindSection;
        let bases = gimli::BaseAddresses::default();
        let mut ctx = Box::new(gimli::UnwindContext::new());
        let row = self
            .frame
            .unwind_info_for_address(&bases, &mut ctx, pc, gimli::DebugFrame::cie_from_offset)
            .ok()?;
        match row.cfa() {
            gimli::CfaRule::RegisterAndOffset { register, offset } if register.0 == 7 => {
                Some(*offset)
            }
            _ => None,
        }
    }

    /// The parameters (inputs, then results) of `f` with their locations at
    /// `pc`, a function entry (the CFA is `rsp + 8`).
    pub fn params(&mut self, f: &Function, pc: u64) -> Result<Vec<Param>, gimli::Error> {
        self.variables(f, pc, 8, false)
    }

    /// Parameters, and with `locals` the local variables in scope at `pc`,
    /// with their locations there; `cfa` is the CFA's offset from RSP at `pc`.
    pub fn variables(
        &mut self,
        f: &Function,
        pc: u64,
        cfa: i64,
        locals: bool,
    ) -> Result<Vec<Param>, gimli::Error> {
        let unit_idx = f.unit;
        let mut raw = vec![];
        {
            let unit = &self.units[unit_idx];
            let mut tree = unit.entries_tree(Some(f.offset))?;
            let root = tree.root()?;
            self.collect_vars(unit, root, pc, cfa, locals, &mut raw)?;
        }
        let mut out = vec![];
        for (name, is_result, local, ty, pieces) in raw {
            let ty = match ty {
                Some(Some(off)) => self.type_at(off)?,
                _ => self.void_type(),
            };
            let _ = unit_idx;
            out.push(Param {
                name,
                ty,
                is_result,
                local,
                pieces,
            });
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn collect_vars(
        &self,
        unit: &gimli::Unit<R>,
        node: gimli::EntriesTreeNode<R>,
        pc: u64,
        cfa: i64,
        locals: bool,
        out: &mut Vec<(
            String,
            bool,
            bool,
            Option<Option<DebugInfoOffset>>,
            Vec<Piece>,
        )>,
    ) -> Result<(), gimli::Error> {
        let mut children = node.children();
        while let Some(child) = children.next()? {
            let e = child.entry();
            match e.tag() {
                gimli::DW_TAG_formal_parameter | gimli::DW_TAG_variable => {
                    let local = e.tag() == gimli::DW_TAG_variable;
                    if local && !locals {
                        continue;
                    }
                    // An inlined copy's variables name their abstract
                    // origin, which has the name and type.
                    let origin = self.origin_of(unit, e)?;
                    let name_attr = match e.attr_value(gimli::DW_AT_name)? {
                        Some(v) => Some((v, None)),
                        None => match &origin {
                            Some((ou, oe)) => {
                                oe.attr_value(gimli::DW_AT_name)?.map(|v| (v, Some(*ou)))
                            }
                            None => None,
                        },
                    };
                    let name = match name_attr {
                        Some((v, None)) => text(&self.dwarf, unit, v)?,
                        Some((v, Some(ou))) => text(&self.dwarf, &self.units[ou], v)?,
                        None => continue,
                    };
                    let ty = match e.attr_value(gimli::DW_AT_type)? {
                        Some(v) => Some(to_global(unit, v)),
                        None => match &origin {
                            Some((ou, oe)) => oe
                                .attr_value(gimli::DW_AT_type)?
                                .map(|v| to_global(&self.units[*ou], v)),
                            None => None,
                        },
                    };
                    let local = local
                        || origin
                            .as_ref()
                            .is_some_and(|(_, oe)| oe.tag() == gimli::DW_TAG_variable);
                    if local && !locals && e.tag() == gimli::DW_TAG_variable {
                        continue;
                    }
                    let is_result = !local
                        && (matches!(
                            e.attr_value(gimli::DW_AT_variable_parameter)?,
                            Some(AttributeValue::Flag(true))
                        ) || e
                            .attr_value(gimli::DW_AT_variable_parameter)?
                            .and_then(|v| v.udata_value())
                            == Some(1));
                    let pieces = match e.attr(gimli::DW_AT_location)? {
                        Some(attr) => location_at(&self.dwarf, unit, attr.value(), pc, cfa)?,
                        None => vec![],
                    };
                    // A local with no location here is not live at this PC.
                    if local && pieces.is_empty() {
                        continue;
                    }
                    out.push((name, is_result, local, ty, pieces));
                }
                gimli::DW_TAG_lexical_block if locals && self.block_contains(unit, e, pc)? => {
                    self.collect_vars(unit, child, pc, cfa, locals, out)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The DIE an entry's `DW_AT_abstract_origin` names, with its unit.
    fn origin_of(
        &self,
        unit: &gimli::Unit<R>,
        e: &gimli::DebuggingInformationEntry<R>,
    ) -> Result<Option<(usize, gimli::DebuggingInformationEntry<'_, '_, R>)>, gimli::Error> {
        let off = match e.attr_value(gimli::DW_AT_abstract_origin)? {
            Some(AttributeValue::UnitRef(o)) => o.to_debug_info_offset(&unit.header),
            Some(AttributeValue::DebugInfoRef(o)) => Some(o),
            _ => None,
        };
        let Some(off) = off else { return Ok(None) };
        let ui = self.unit_of(off);
        let u = &self.units[ui];
        let Some(uoff) = off.to_unit_offset(&u.header) else {
            return Ok(None);
        };
        Ok(Some((ui, u.entry(uoff)?)))
    }

    fn block_contains(
        &self,
        unit: &gimli::Unit<R>,
        e: &gimli::DebuggingInformationEntry<R>,
        pc: u64,
    ) -> Result<bool, gimli::Error> {
        let mut ranges = self.dwarf.die_ranges(unit, e)?;
        while let Some(r) = ranges.next()? {
            if r.begin <= pc && pc < r.end {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The source file and line of `pc` (the line-table row covering it).
    pub fn line_at(&self, pc: u64) -> Option<(&str, u64)> {
        let (rows, files) = self.lines.get_or_init(|| self.build_line_table());
        let i = rows.partition_point(|r| r.0 <= pc);
        let r = rows.get(i.checked_sub(1)?)?;
        if r.2 == 0 {
            return None;
        }
        Some((files.get(r.1 as usize)?.as_str(), r.2 as u64))
    }

    fn build_line_table(&self) -> LineTable {
        let mut rows = vec![];
        let mut files: Vec<String> = vec![];
        let mut ids: HashMap<String, u32> = HashMap::new();
        for unit in &self.units {
            let Some(lp) = unit.line_program.clone() else {
                continue;
            };
            let mut it = lp.rows();
            let mut cache: HashMap<u64, u32> = HashMap::new();
            while let Ok(Some((header, row))) = it.next_row() {
                if row.end_sequence() {
                    rows.push((row.address(), 0, 0));
                    continue;
                }
                let fi = row.file_index();
                let _ = header;
                let id = *cache.entry(fi).or_insert_with(|| {
                    let name = file_name(&self.dwarf, unit, fi);
                    *ids.entry(name.clone()).or_insert_with(|| {
                        files.push(name);
                        files.len() as u32 - 1
                    })
                });
                rows.push((
                    row.address(),
                    id,
                    row.line().map(|l| l.get() as u32).unwrap_or(0),
                ));
            }
        }
        rows.sort_by_key(|r| r.0);
        (rows, files)
    }

    /// Every `is_stmt` address where line `line` of a file whose path ends
    /// with `file` begins, with the function containing it.
    pub fn line_addresses(&self, file: &str, line: u64) -> Vec<(u64, String)> {
        let mut out = vec![];
        let suffix = file.trim_start_matches("./");
        for unit in &self.units {
            let Some(lp) = unit.line_program.clone() else {
                continue;
            };
            let mut rows = lp.rows();
            let mut prev: Option<(u64, u64)> = None; // (file index, line) of the previous row
            while let Ok(Some((header, row))) = rows.next_row() {
                if row.end_sequence() {
                    prev = None;
                    continue;
                }
                let cur = (row.file_index(), row.line().map(|l| l.get()).unwrap_or(0));
                let starts = prev != Some(cur);
                prev = Some(cur);
                if !starts || !row.is_stmt() || cur.1 != line {
                    continue;
                }
                let Some(fe) = header.file(row.file_index()) else {
                    continue;
                };
                let mut path = self
                    .dwarf
                    .attr_string(unit, fe.path_name())
                    .ok()
                    .and_then(|s| s.to_string_lossy().ok().map(|c| c.into_owned()))
                    .unwrap_or_default();
                if !path.starts_with('/') {
                    if let Some(d) = fe
                        .directory(header)
                        .and_then(|d| self.dwarf.attr_string(unit, d).ok())
                    {
                        if let Ok(d) = d.to_string_lossy() {
                            path = format!("{d}/{path}");
                        }
                    }
                }
                if path == suffix || path.ends_with(&format!("/{suffix}")) {
                    out.push((row.address(), path));
                }
            }
        }
        out.sort();
        out.dedup_by_key(|a| a.0);
        out
    }

    fn void_type(&mut self) -> TypeId {
        self.types.push(Type {
            name: "void".into(),
            size: 0,
            kind: Kind::Other { go_kind: 0 },
        });
        self.types.len() - 1
    }

    fn type_ref(&mut self, unit: usize, v: AttributeValue<R>) -> gimli::Result<TypeId> {
        let off = match v {
            AttributeValue::UnitRef(o) => o
                .to_debug_info_offset(&self.units[unit].header)
                .ok_or(gimli::Error::NoEntryAtGivenOffset)?,
            AttributeValue::DebugInfoRef(o) => o,
            _ => return Err(gimli::Error::UnsupportedAttributeForm),
        };
        self.type_at(off)
    }

    fn unit_of(&self, off: DebugInfoOffset) -> usize {
        match self.unit_starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// Reads (and caches) the type DIE at a global offset.
    fn type_at(&mut self, off: DebugInfoOffset) -> gimli::Result<TypeId> {
        if let Some(&id) = self.type_cache.get(&off) {
            return Ok(id);
        }
        let ui = self.unit_of(off);
        let id = self.types.len();
        self.types.push(Type {
            name: String::new(),
            size: 0,
            kind: Kind::Pending,
        });
        self.type_cache.insert(off, id);

        // Collect what we need from the DIE first (borrowing units), then
        // resolve referenced types (which needs &mut self).
        let (tag, name, size, go_kind, type_attr, members, count) = {
            let unit = &self.units[ui];
            let uoff = off
                .to_unit_offset(&unit.header)
                .ok_or(gimli::Error::NoEntryAtGivenOffset)?;
            let mut tree = unit.entries_tree(Some(uoff))?;
            let root = tree.root()?;
            let e = root.entry();
            let tag = e.tag();
            let name = match e.attr_value(gimli::DW_AT_name)? {
                Some(v) => text(&self.dwarf, unit, v)?,
                None => String::new(),
            };
            let size = e
                .attr_value(gimli::DW_AT_byte_size)?
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let go_kind = e
                .attr_value(DW_AT_GO_KIND)?
                .and_then(|v| v.udata_value())
                .unwrap_or(0);
            let encoding = e.attr_value(gimli::DW_AT_encoding)?;
            let type_attr = e.attr_value(gimli::DW_AT_type)?;
            let mut members = vec![];
            let mut count = None;
            let mut children = root.children();
            while let Some(child) = children.next()? {
                let c = child.entry();
                match c.tag() {
                    gimli::DW_TAG_member => {
                        let mname = match c.attr_value(gimli::DW_AT_name)? {
                            Some(v) => text(&self.dwarf, unit, v)?,
                            None => String::new(),
                        };
                        let moff = c
                            .attr_value(gimli::DW_AT_data_member_location)?
                            .and_then(|v| v.udata_value())
                            .unwrap_or(0);
                        let embedded = c
                            .attr_value(gimli::DwAt(0x2903))?
                            .map(|v| {
                                matches!(v, AttributeValue::Flag(true))
                                    || v.udata_value() == Some(1)
                            })
                            .unwrap_or(false);
                        members.push((mname, moff, c.attr_value(gimli::DW_AT_type)?, embedded));
                    }
                    gimli::DW_TAG_subrange_type => {
                        count = c
                            .attr_value(gimli::DW_AT_count)?
                            .and_then(|v| v.udata_value())
                            .or_else(|| {
                                c.attr_value(gimli::DW_AT_upper_bound)
                                    .ok()
                                    .flatten()
                                    .and_then(|v| v.udata_value())
                                    .map(|u| u + 1)
                            });
                    }
                    _ => {}
                }
            }
            let tag = match (tag, encoding) {
                (gimli::DW_TAG_base_type, Some(AttributeValue::Encoding(enc))) => (tag, Some(enc)),
                _ => (tag, None),
            };
            (tag, name, size, go_kind, type_attr, members, count)
        };

        let (tag, encoding) = tag;
        let mut size = size;
        let kind = match tag {
            gimli::DW_TAG_base_type => match encoding {
                Some(gimli::DW_ATE_boolean) => Kind::Bool,
                Some(gimli::DW_ATE_signed) | Some(gimli::DW_ATE_signed_char) => Kind::Int,
                Some(gimli::DW_ATE_unsigned) | Some(gimli::DW_ATE_unsigned_char) => {
                    if go_kind == go_kind::UNSAFE_POINTER {
                        Kind::UnsafePointer
                    } else {
                        Kind::Uint
                    }
                }
                Some(gimli::DW_ATE_float) => Kind::Float,
                Some(gimli::DW_ATE_complex_float) => Kind::Complex,
                _ => Kind::Other { go_kind },
            },
            gimli::DW_TAG_subroutine_type => {
                size = 8;
                Kind::Func
            }
            gimli::DW_TAG_pointer_type => {
                size = 8;
                if go_kind == go_kind::UNSAFE_POINTER {
                    Kind::UnsafePointer
                } else if go_kind == go_kind::FUNC {
                    Kind::Func
                } else {
                    let pointee = match type_attr {
                        Some(v) => Some(self.type_ref(ui, v)?),
                        None => None,
                    };
                    Kind::Pointer { pointee }
                }
            }
            gimli::DW_TAG_typedef => match type_attr {
                Some(v) => {
                    let target = self.type_ref(ui, v)?;
                    if size == 0 {
                        size = self.types[target].size;
                    }
                    Kind::Named { target }
                }
                None => Kind::Other { go_kind },
            },
            gimli::DW_TAG_array_type => {
                let elem = match type_attr {
                    Some(v) => self.type_ref(ui, v)?,
                    None => self.void_type(),
                };
                Kind::Array {
                    elem,
                    count: count.unwrap_or(0),
                }
            }
            gimli::DW_TAG_structure_type => {
                let mut fields = vec![];
                for (fname, foff, fty, embedded) in members {
                    let ty = match fty {
                        Some(v) => self.type_ref(ui, v)?,
                        None => self.void_type(),
                    };
                    fields.push(Field {
                        name: fname,
                        offset: foff,
                        ty,
                        embedded,
                    });
                }
                match go_kind {
                    go_kind::STRING => Kind::String,
                    go_kind::SLICE => {
                        let elem =
                            fields.iter().find(|f| f.name == "array").and_then(|f| {
                                match self.types[f.ty].kind {
                                    Kind::Pointer { pointee } => pointee,
                                    _ => None,
                                }
                            });
                        match elem {
                            Some(elem) => Kind::Slice { elem },
                            None => Kind::Other { go_kind },
                        }
                    }
                    go_kind::STRUCT | 0 => Kind::Struct { fields },
                    _ => Kind::Other { go_kind },
                }
            }
            _ => Kind::Other { go_kind },
        };
        // Go's typedefs for maps, chans, interfaces and funcs carry their
        // go_kind on the typedef itself; the target says the layout.
        let kind = match (&kind, go_kind) {
            (Kind::Named { target }, go_kind::MAP) => match self.types[*target].kind {
                Kind::Pointer { pointee: Some(h) } => Kind::Map { header: h },
                _ => Kind::Other { go_kind },
            },
            (Kind::Named { target }, go_kind::CHAN) => match self.types[*target].kind {
                Kind::Pointer { pointee } => Kind::Chan { header: pointee },
                _ => Kind::Other { go_kind },
            },
            (Kind::Named { target }, go_kind::INTERFACE) => {
                let t = &self.types[*target];
                let empty = t.name == "runtime.eface"
                    || matches!(&t.kind, Kind::Struct { fields } if fields.first().is_some_and(|f| f.name == "_type"));
                Kind::Interface { empty }
            }
            (Kind::Named { .. }, go_kind::FUNC) => Kind::Func,
            _ => kind,
        };
        if matches!(kind, Kind::Interface { .. }) {
            size = 16;
        } else if matches!(kind, Kind::Map { .. } | Kind::Chan { .. } | Kind::Func) {
            size = 8;
        }
        self.types[id] = Type { name, size, kind };
        Ok(id)
    }
}

/// A type reference as a global `.debug_info` offset.
fn to_global(unit: &gimli::Unit<R>, v: AttributeValue<R>) -> Option<DebugInfoOffset> {
    match v {
        AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header),
        AttributeValue::DebugInfoRef(o) => Some(o),
        _ => None,
    }
}

fn file_name(dwarf: &gimli::Dwarf<R>, unit: &gimli::Unit<R>, index: u64) -> String {
    let Some(lp) = unit.line_program.as_ref() else {
        return String::new();
    };
    let header = lp.header();
    let Some(file) = header.file(index) else {
        return String::new();
    };
    let name = dwarf
        .attr_string(unit, file.path_name())
        .ok()
        .and_then(|s| s.to_string_lossy().ok().map(|c| c.into_owned()))
        .unwrap_or_default();
    if name.starts_with('/') {
        return name;
    }
    let dir = file
        .directory(header)
        .and_then(|d| dwarf.attr_string(unit, d).ok())
        .and_then(|s| s.to_string_lossy().ok().map(|c| c.into_owned()))
        .unwrap_or_default();
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// The location of a variable at `pc`, as pieces; frame-base-relative
/// locations become RSP offsets through `cfa` (the CFA's offset from RSP).
fn location_at(
    dwarf: &gimli::Dwarf<R>,
    unit: &gimli::Unit<R>,
    value: AttributeValue<R>,
    pc: u64,
    cfa: i64,
) -> gimli::Result<Vec<Piece>> {
    let expr = match value {
        AttributeValue::Exprloc(e) => Some(e),
        _ => {
            let mut found = None;
            if let Some(mut locs) = dwarf.attr_locations(unit, value)? {
                while let Some(entry) = locs.next()? {
                    if entry.range.begin <= pc && pc < entry.range.end {
                        found = Some(entry.data);
                        break;
                    }
                }
            }
            found
        }
    };
    let Some(expr) = expr else { return Ok(vec![]) };
    Ok(pieces_of(expr, unit.encoding(), cfa))
}

/// Interprets the subset of DWARF expressions Go emits for variables; `cfa`
/// is the CFA's offset from RSP at the PC (Go's frame base is the CFA).
pub fn pieces_of(expr: gimli::Expression<R>, encoding: gimli::Encoding, cfa: i64) -> Vec<Piece> {
    let mut out = vec![];
    let mut cur: Option<Place> = None;
    let mut ops = expr.operations(encoding);
    loop {
        let op = match ops.next() {
            Ok(Some(op)) => op,
            Ok(None) => break,
            Err(e) => {
                out.push(Piece {
                    place: Place::Unavailable(format!("bad DWARF expression: {e}")),
                    size: None,
                });
                return out;
            }
        };
        match op {
            gimli::Operation::Register { register } => cur = Some(Place::Reg(register.0)),
            gimli::Operation::CallFrameCFA => cur = Some(Place::Stack(cfa)),
            gimli::Operation::FrameOffset { offset } => cur = Some(Place::Stack(cfa + offset)),
            gimli::Operation::RegisterOffset {
                register, offset, ..
            } if register.0 == 7 => cur = Some(Place::Stack(offset)),
            gimli::Operation::PlusConstant { value } => {
                if let Some(Place::Stack(o)) = cur {
                    cur = Some(Place::Stack(o + value as i64));
                }
            }
            gimli::Operation::Piece { size_in_bits, .. } => {
                let place = cur
                    .take()
                    .unwrap_or(Place::Unavailable("optimized out".into()));
                out.push(Piece {
                    place,
                    size: Some(size_in_bits / 8),
                });
            }
            other => {
                cur = Some(Place::Unavailable(format!(
                    "unsupported DWARF location op {other:?}"
                )));
            }
        }
    }
    if let Some(place) = cur {
        out.push(Piece { place, size: None });
    }
    out
}

//! Go's own function table, `.gopclntab`: functions, their names, their
//! pc→file/line tables and their function data, for binaries whose DWARF was
//! stripped (`-ldflags=-w`, `-ldflags=-s -w`). The runtime needs this table
//! for tracebacks and garbage collection, so no Go binary can drop it.
//!
//! Layouts (Go 1.18+, magic `0xfffffff0`; Go 1.20+, magic `0xfffffff1`, used
//! unchanged by Go 1.21–1.27):
//! - the header `pcHeader` and the table `_func`:
//!   <https://github.com/golang/go/blob/master/src/runtime/symtab.go> and
//!   <https://github.com/golang/go/blob/master/src/runtime/runtime2.go>;
//! - the pc-value encoding (`step`, `pcvalue`): runtime/symtab.go;
//! - function data indices (`FUNCDATA_ArgInfo` = 5) and the argument-info
//!   bytes (`TraceArgs*`): <https://github.com/golang/go/blob/master/src/internal/abi/symtab.go>,
//!   written by cmd/compile/internal/ssagen `EmitArgInfo` and read by
//!   runtime/traceback.go `printArgs`.
//!
//! Function data offsets are relative to `moduledata.gofunc` (the linker
//! symbol `go:func.*`). It is read from the ELF symbol table when there is
//! one; a binary without it (`-s`) is searched for `runtime.firstmoduledata`
//! (a pointer to the pclntab's address in `.noptrdata`/`.data`), as
//! debuggers do, and `gofunc` is read from that.
//!
//! Free of aya and tokio; unit-tests without root.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol};

/// Why a `.gopclntab` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PclnError {
    #[error("no .gopclntab section")]
    Missing,
    #[error("unsupported .gopclntab magic {0:#x} (Probe reads the Go 1.18+ layout)")]
    Magic(u32),
    #[error(".gopclntab is truncated or inconsistent: {0}")]
    Corrupt(&'static str),
}

/// `FUNCDATA_ArgInfo` (internal/abi/symtab.go).
pub const FUNCDATA_ARG_INFO: u8 = 5;
/// `PCDATA` table indices are not needed; pc tables used here live in `_func`.
const TRACE_ARGS_END_SEQ: u8 = 0xff;
const TRACE_ARGS_START_AGG: u8 = 0xfe;
const TRACE_ARGS_END_AGG: u8 = 0xfd;
const TRACE_ARGS_DOTDOTDOT: u8 = 0xfc;
const TRACE_ARGS_OFFSET_TOO_LARGE: u8 = 0xfb;

/// One function of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PclnFunc {
    pub name: String,
    /// First instruction (as linked).
    pub entry: u64,
    /// One past the last instruction: the next function's entry.
    pub end: u64,
    /// Offset of the `_func` record in the function table.
    func_off: usize,
}

/// One argument as Go tracebacks lay it out (`printArgs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgItem {
    /// A scalar of `size` bytes at `offset` in the argument area.
    Word { offset: u8, size: u8 },
    /// A scalar whose offset is ≥ 0xfb, which the compiler does not record.
    OffsetTooLarge,
    /// A struct, array, string, slice, interface or complex value.
    Agg(Vec<ArgItem>),
    /// The compiler stopped listing here (more than 10 words, or nested
    /// deeper than the traceback shows).
    More,
}

/// A parsed `.gopclntab`.
pub struct Pclntab {
    /// The section's bytes.
    data: Vec<u8>,
    /// Where the section is mapped (as linked).
    pub addr: u64,
    /// `moduledata.text`: the base of `entryOff`.
    pub text_start: u64,
    /// `moduledata.gofunc`: the base of function data offsets.
    pub gofunc: Option<u64>,
    /// How `gofunc` was found (for `--dry-run` and tests).
    pub gofunc_source: &'static str,
    cu_off: usize,
    filetab_off: usize,
    pctab_off: usize,
    /// `_func` has `startLine` (Go 1.20+).
    has_start_line: bool,
    funcs: Vec<PclnFunc>,
    by_name: HashMap<String, usize>,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn cstr(b: &[u8], o: usize) -> Option<&str> {
    let s = b.get(o..)?;
    let end = s.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&s[..end]).ok()
}

fn uvarint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    let mut shift = 0;
    for (i, &c) in b.iter().enumerate().take(5) {
        v |= u32::from(c & 0x7f) << shift;
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
        shift += 7;
    }
    None
}

impl Pclntab {
    /// Reads `.gopclntab` from an ELF file's bytes.
    pub fn parse(elf: &[u8]) -> Result<Self, PclnError> {
        let file = object::File::parse(elf).map_err(|_| PclnError::Missing)?;
        // A PIE keeps it in the relocatable read-only data.
        let sec = file
            .section_by_name(".gopclntab")
            .or_else(|| file.section_by_name(".data.rel.ro.gopclntab"))
            .ok_or(PclnError::Missing)?;
        let data = sec.data().map_err(|_| PclnError::Missing)?.to_vec();
        let addr = sec.address();
        let bad = PclnError::Corrupt;
        let magic = u32_at(&data, 0).ok_or(bad("header"))?;
        let has_start_line = match magic {
            0xffff_fff1 => true,
            0xffff_fff0 => false,
            m => return Err(PclnError::Magic(m)),
        };
        if data.get(4..8) != Some(&[0, 0, 1, 8]) {
            return Err(bad("header: not amd64 (minLC 1, ptrSize 8)"));
        }
        let word = |i: usize| u64_at(&data, 8 + 8 * i).ok_or(bad("header"));
        let nfunc = word(0)? as usize;
        // Go 1.26 stopped storing textStart here (it needed a relocation);
        // it is then 0 and moduledata.text, i.e. runtime.text, is the base.
        let header_text = word(2)?;
        let off = |i: usize| -> Result<usize, PclnError> {
            let v = word(i)? as usize;
            if v > data.len() {
                return Err(bad("header offset past the section"));
            }
            Ok(v)
        };
        let (funcname_off, cu_off, filetab_off, pctab_off, pcln_off) =
            (off(3)?, off(4)?, off(5)?, off(6)?, off(7)?);
        let symbol = |name: &str| {
            file.symbols()
                .find(|s| s.name() == Ok(name))
                .map(|s| s.address())
        };
        let module = find_moduledata(&file, addr);
        let text_start = if header_text != 0 {
            header_text
        } else if let Some(t) = symbol("runtime.text") {
            t
        } else if let Some(t) = module.as_ref().map(|m| m.text) {
            t
        } else {
            file.section_by_name(".text")
                .map(|s| s.address())
                .ok_or(bad("no text base"))?
        };
        let (gofunc, gofunc_source) = match symbol("go:func.*").or_else(|| symbol("go.func.*")) {
            Some(a) => (Some(a), "the go:func.* symbol"),
            None => match module.and_then(|m| m.gofunc) {
                Some(a) => (Some(a), "runtime.firstmoduledata"),
                None => (None, "not found"),
            },
        };
        let cap = nfunc.min(me_len_cap(&data));
        let mut me = Self {
            data,
            addr,
            text_start,
            gofunc,
            gofunc_source,
            cu_off,
            filetab_off,
            pctab_off,
            has_start_line,
            funcs: Vec::with_capacity(cap),
            by_name: HashMap::new(),
        };
        // functab: nfunc+1 pairs (entryOff, funcOff) of uint32; the last
        // entry's entryOff is the end of the last function.
        let ft = pcln_off;
        let pair = |i: usize| -> Option<(u32, u32)> {
            Some((
                u32_at(&me.data, ft + 8 * i)?,
                u32_at(&me.data, ft + 8 * i + 4)?,
            ))
        };
        for i in 0..nfunc {
            let (entry_off, func_off) = pair(i).ok_or(bad("functab"))?;
            let (next_off, _) = pair(i + 1).ok_or(bad("functab"))?;
            let func_off = ft + func_off as usize;
            let name_off = u32_at(&me.data, func_off + 4).ok_or(bad("_func"))? as usize;
            let name = cstr(&me.data, funcname_off + name_off)
                .ok_or(bad("function name"))?
                .to_owned();
            me.funcs.push(PclnFunc {
                name,
                entry: text_start.wrapping_add(u64::from(entry_off)),
                end: text_start.wrapping_add(u64::from(next_off)),
                func_off,
            });
        }
        for (i, f) in me.funcs.iter().enumerate() {
            me.by_name.entry(f.name.clone()).or_insert(i);
        }
        Ok(me)
    }

    /// Every function, in address order.
    pub fn functions(&self) -> &[PclnFunc] {
        &self.funcs
    }

    /// The function named exactly `name` (Go syntax: `main.(*Store).Put`).
    pub fn function(&self, name: &str) -> Option<&PclnFunc> {
        self.by_name.get(name).map(|&i| &self.funcs[i])
    }

    /// The function whose code contains `pc`.
    pub fn function_at(&self, pc: u64) -> Option<&PclnFunc> {
        let i = self.funcs.partition_point(|f| f.entry <= pc);
        let f = self.funcs.get(i.checked_sub(1)?)?;
        (pc < f.end).then_some(f)
    }

    fn field(&self, f: &PclnFunc, i: usize) -> Option<u32> {
        u32_at(&self.data, f.func_off + 4 * i)
    }

    /// `_func` fields by index: 0 entryOff, 1 nameOff, 2 args, 3
    /// deferreturn, 4 pcsp, 5 pcfile, 6 pcln, 7 npcdata, 8 cuOffset,
    /// then (Go 1.20+) 9 startLine; then funcID, flag, pad, nfuncdata.
    fn tail(&self, f: &PclnFunc) -> usize {
        f.func_off + 4 * if self.has_start_line { 10 } else { 9 }
    }

    /// Size in bytes of the arguments and results (`_func.args`).
    pub fn args_size(&self, f: &PclnFunc) -> Option<u32> {
        self.field(f, 2)
    }

    /// Line of the `func` keyword (`_func.startLine`, Go 1.20+).
    pub fn start_line(&self, f: &PclnFunc) -> Option<u32> {
        self.has_start_line.then(|| self.field(f, 9)).flatten()
    }

    /// Decodes the pc-value table at `off` of the pctab for function `f`
    /// and returns the value at `pc` (runtime/symtab.go `pcvalue`).
    fn pcvalue(&self, f: &PclnFunc, off: u32, pc: u64) -> Option<i32> {
        if off == 0 {
            return None;
        }
        let mut p = self.data.get(self.pctab_off + off as usize..)?;
        let mut cur_pc = f.entry;
        let mut val: i32 = -1;
        let mut first = true;
        loop {
            // Value delta (zig-zag), then pc delta (× minLC = 1 on amd64);
            // a zero value delta after the first pair ends the table.
            let (uvdelta, n) = uvarint(p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            p = p.get(n..)?;
            val = val.wrapping_add((-((uvdelta & 1) as i32)) ^ ((uvdelta >> 1) as i32));
            let (pcdelta, n) = uvarint(p)?;
            p = p.get(n..)?;
            let next = cur_pc.saturating_add(u64::from(pcdelta));
            if pc >= cur_pc && pc < next {
                return Some(val);
            }
            cur_pc = next;
            if cur_pc > f.end {
                return None;
            }
        }
    }

    /// Every (pc, value) change of the pc-value table `off` of `f`.
    fn pcvalue_rows(&self, f: &PclnFunc, off: u32) -> Vec<(u64, i32)> {
        let mut out = vec![];
        if off == 0 {
            return out;
        }
        let Some(mut p) = self.data.get(self.pctab_off + off as usize..) else {
            return out;
        };
        let (mut pc, mut val, mut first) = (f.entry, -1i32, true);
        while let Some((uvdelta, n)) = uvarint(p) {
            if uvdelta == 0 && !first {
                break;
            }
            first = false;
            let Some(rest) = p.get(n..) else { break };
            val = val.wrapping_add((-((uvdelta & 1) as i32)) ^ ((uvdelta >> 1) as i32));
            let Some((pcdelta, n)) = uvarint(rest) else {
                break;
            };
            let Some(rest) = rest.get(n..) else { break };
            p = rest;
            out.push((pc, val));
            pc = pc.saturating_add(u64::from(pcdelta));
            if pc >= f.end {
                break;
            }
        }
        out
    }

    /// The file name with index `fileno` in `f`'s compilation unit.
    fn file_name(&self, f: &PclnFunc, fileno: i32) -> Option<&str> {
        let cu = self.field(f, 8)? as usize;
        let idx = cu.checked_add(usize::try_from(fileno).ok()?)?;
        let off = u32_at(&self.data, self.cu_off + 4 * idx)?;
        if off == u32::MAX {
            return None;
        }
        cstr(&self.data, self.filetab_off + off as usize)
    }

    /// Source file and line of `pc` in `f` (the innermost position when
    /// code was inlined, as Go's `FuncForPC(pc).FileLine` reports it).
    pub fn line_at(&self, f: &PclnFunc, pc: u64) -> Option<(String, u64)> {
        let fileno = self.pcvalue(f, self.field(f, 5)?, pc)?;
        let line = self.pcvalue(f, self.field(f, 6)?, pc)?;
        Some((
            self.file_name(f, fileno)?.to_owned(),
            u64::try_from(line).ok()?,
        ))
    }

    /// Every address in any function where a line of a file ending in
    /// `file` begins (the first pc of each run of that line), with the
    /// file's full name.
    pub fn line_addresses(&self, file: &str, line: u64) -> Vec<(u64, String)> {
        let mut out = vec![];
        for f in &self.funcs {
            let (Some(pf), Some(pl)) = (self.field(f, 5), self.field(f, 6)) else {
                continue;
            };
            let files = self.pcvalue_rows(f, pf);
            if !files.iter().any(|&(_, n)| {
                self.file_name(f, n)
                    .is_some_and(|name| path_ends_with(name, file))
            }) {
                continue;
            }
            for (pc, l) in self.pcvalue_rows(f, pl) {
                if u64::try_from(l).ok() != Some(line) {
                    continue;
                }
                let fileno = files.iter().rev().find(|&&(p, _)| p <= pc).map(|&(_, n)| n);
                if let Some(name) = fileno.and_then(|n| self.file_name(f, n)) {
                    if path_ends_with(name, file) {
                        out.push((pc, name.to_owned()));
                    }
                }
            }
        }
        out
    }

    /// The address of function data `index` of `f`, or `None` when the
    /// function has none (runtime/symtab.go `funcdata`).
    pub fn funcdata(&self, f: &PclnFunc, index: u8) -> Option<u64> {
        let tail = self.tail(f);
        let nfuncdata = *self.data.get(tail + 3)?;
        if index >= nfuncdata {
            return None;
        }
        let npcdata = self.field(f, 7)? as usize;
        let off = u32_at(&self.data, tail + 4 + 4 * npcdata + 4 * index as usize)?;
        if off == u32::MAX {
            return None;
        }
        self.gofunc?.checked_add(u64::from(off))
    }

    /// `f`'s arguments as its argument info lists them (`None` when the
    /// function has no argument info, e.g. no arguments or assembly), read
    /// with `read(addr, len)` from the binary's data.
    pub fn arg_info<'a>(
        &self,
        f: &PclnFunc,
        read: impl Fn(u64, u64) -> Option<&'a [u8]>,
    ) -> Option<Vec<ArgItem>> {
        let at = self.funcdata(f, FUNCDATA_ARG_INFO)?;
        // TraceArgsMaxLen = (maxDepth*3+2)*limit+1 = 171 bytes at most.
        let bytes = (1..=171u64).rev().find_map(|n| read(at, n))?;
        Some(parse_arg_info(bytes))
    }
}

/// At most one function per 8 bytes of table: bounds a header's count.
fn me_len_cap(data: &[u8]) -> usize {
    data.len() / 8
}

fn path_ends_with(path: &str, suffix: &str) -> bool {
    path == suffix || (path.ends_with(suffix) && path[..path.len() - suffix.len()].ends_with('/'))
}

/// Parses argument-info bytes (the layout `printArgs` walks).
pub fn parse_arg_info(bytes: &[u8]) -> Vec<ArgItem> {
    fn seq(b: &[u8], i: &mut usize, depth: usize) -> Vec<ArgItem> {
        let mut out = vec![];
        while let Some(&c) = b.get(*i) {
            *i += 1;
            match c {
                TRACE_ARGS_END_SEQ => break,
                TRACE_ARGS_END_AGG if depth > 0 => break,
                TRACE_ARGS_END_AGG => {}
                TRACE_ARGS_START_AGG => {
                    let inner = if depth < 8 {
                        seq(b, i, depth + 1)
                    } else {
                        vec![ArgItem::More]
                    };
                    out.push(ArgItem::Agg(inner));
                }
                TRACE_ARGS_DOTDOTDOT => out.push(ArgItem::More),
                TRACE_ARGS_OFFSET_TOO_LARGE => out.push(ArgItem::OffsetTooLarge),
                offset => {
                    let Some(&size) = b.get(*i) else { break };
                    *i += 1;
                    out.push(ArgItem::Word { offset, size });
                }
            }
        }
        out
    }
    seq(bytes, &mut 0, 0)
}

/// `moduledata.gofunc` as found through `runtime.firstmoduledata` alone
/// (what a binary without a symbol table gets), for cross-checks.
pub fn gofunc_from_moduledata(elf: &[u8]) -> Option<u64> {
    let file = object::File::parse(elf).ok()?;
    let addr = file.section_by_name(".gopclntab")?.address();
    find_moduledata(&file, addr)?.gofunc
}

/// The parts of `runtime.firstmoduledata` Probe uses.
struct ModuleData {
    text: u64,
    gofunc: Option<u64>,
    /// `moduledata.types`: the base of type and name offsets.
    types: u64,
}

/// Offsets of `goid` and `stack.hi` in `runtime.g`, read from the runtime's
/// own type descriptor for `runtime.g` (the runtime allocates `g`s with
/// `new(g)`, so every binary carries it): an `abi.StructType` whose `Str`
/// names `*runtime.g` and whose fields carry names and offsets
/// (internal/abi/type.go `Type`, `StructType`, `StructField`, `Name`). For
/// binaries without DWARF; `None` for a PIE (its descriptors' pointers are
/// filled in by dynamic relocations) or when anything does not check out.
pub fn g_layout_from_type_info(elf: &[u8]) -> Option<(u64, u64)> {
    let file = object::File::parse(elf).ok()?;
    if file.kind() != object::ObjectKind::Executable {
        return None; // a PIE is ET_DYN
    }
    // Go 1.27 links type descriptors into `.go.type`; before, `.rodata`.
    let rodata = file
        .section_by_name(".go.type")
        .or_else(|| file.section_by_name(".rodata"))?;
    let ro = rodata.data().ok()?;
    let ro_addr = rodata.address();
    let read = |addr: u64, len: usize| -> Option<&[u8]> {
        let o = usize::try_from(addr.checked_sub(ro_addr)?).ok()?;
        ro.get(o..o.checked_add(len)?)
    };
    let types = match file.symbols().find(|s| s.name() == Ok("runtime.types")) {
        Some(s) => s.address(),
        None => {
            let pcln = file.section_by_name(".gopclntab")?.address();
            find_moduledata(&file, pcln)?.types
        }
    };
    // A name is a flag byte, a varint length, the bytes.
    let name_at = |addr: u64| -> Option<&str> {
        let head = read(addr, 3)?;
        let (len, n) = uvarint(&head[1..])?;
        std::str::from_utf8(read(addr.checked_add(1 + n as u64)?, len as usize)?).ok()
    };
    let want = b"\x0a*runtime.g";
    let name_offs: Vec<u32> = ro
        .windows(want.len())
        .enumerate()
        .filter(|(i, w)| *w == want && *i >= 1)
        .filter_map(|(i, _)| u32::try_from((ro_addr + i as u64 - 1).checked_sub(types)?).ok())
        .collect();
    let struct_fields = |t: u64| -> Option<Vec<(String, u64, u64)>> {
        let hdr = read(t, 80)?;
        if hdr[23] & 0x1f != 25 {
            return None; // not a struct
        }
        let (ptr, len) = (u64_at(hdr, 56)?, u64_at(hdr, 64)?);
        if len > 4096 {
            return None;
        }
        let mut out = vec![];
        for i in 0..len {
            let f = read(ptr.checked_add(24 * i)?, 24)?;
            out.push((
                name_at(u64_at(f, 0)?)?.to_owned(),
                u64_at(f, 8)?,
                u64_at(f, 16)?,
            ));
        }
        Some(out)
    };
    let start = types.max(ro_addr).next_multiple_of(8);
    let mut t = start;
    while t + 80 <= ro_addr + ro.len() as u64 {
        let hit = read(t + 40, 4)
            .and_then(|b| u32_at(b, 0))
            .is_some_and(|off| name_offs.contains(&off));
        if hit {
            if let Some(fields) = struct_fields(t) {
                let goid = fields.iter().find(|f| f.0 == "goid")?.2;
                let stack = fields.iter().find(|f| f.0 == "stack")?;
                let hi = struct_fields(stack.1)?.into_iter().find(|f| f.0 == "hi")?.2;
                return Some((goid, stack.2 + hi));
            }
        }
        t += 8;
    }
    None
}

/// Finds `runtime.firstmoduledata` in a binary without symbols: its first
/// word (`pcHeader`) is the address of `.gopclntab`, and the slice after it
/// (`funcnametab`) points into the same table. `gofunc` follows `rodata`,
/// which is the start of `.rodata`, in every layout from Go 1.20 to 1.27
/// (Go 1.27 inserted `typedesclen`, `itaboffset` and `itabsize` before it),
/// and points into `.rodata` (or, from Go 1.26, `.gopclntab`).
fn find_moduledata(file: &object::File<'_>, pclntab: u64) -> Option<ModuleData> {
    let rodata = file.section_by_name(".rodata")?;
    let ro_start = rodata.address();
    // go:func.* is read-only data: in `.rodata` (Go ≤1.25), `.gopclntab`
    // (Go 1.26) or `.go.func` (Go 1.27).
    let read_only: Vec<(u64, u64)> = file
        .sections()
        .filter(|s| matches!(s.kind(), object::SectionKind::ReadOnlyData))
        .map(|s| (s.address(), s.address() + s.size()))
        .filter(|r| r.0 != 0)
        .collect();
    let text = file.section_by_name(".text")?;
    let (text_lo, text_hi) = (text.address(), text.address() + text.size());
    // Go 1.26 moved it into a section of its own, `.go.module`.
    for name in [".go.module", ".noptrdata", ".data", ".data.rel.ro"] {
        let Some(sec) = file.section_by_name(name) else {
            continue;
        };
        let Ok(d) = sec.data() else { continue };
        let mut o = 0;
        while o + 8 * 48 <= d.len() {
            let w = |i: usize| u64_at(d, o + 8 * i).unwrap_or(0);
            if w(0) == pclntab && w(1) > pclntab && w(1) - pclntab < (1 << 32) {
                // Words 22 and 23 are `text` and `etext` (after seven
                // three-word slices, findfunctab, minpc and maxpc).
                let mtext = w(22);
                if !(text_lo..=text_hi).contains(&mtext) {
                    o += 8;
                    continue;
                }
                // `rodata` then `gofunc` somewhere in words 36..48.
                let gofunc = (36..47)
                    .rev()
                    .find(|&i| w(i) == ro_start)
                    .map(|i| w(i + 1))
                    .filter(|g| read_only.iter().any(|r| (r.0..r.1).contains(g)));
                return Some(ModuleData {
                    text: mtext,
                    gofunc,
                    types: w(37),
                });
            }
            o += 8;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_info_layout() {
        // func(a int, s string, x struct{p *int; b [2]bool}) then ...
        let b = [
            0x00, 8, 0xfe, 0x08, 8, 0x10, 8, 0xfd, 0xfe, 0x18, 8, 0xfe, 0x20, 1, 0x21, 1, 0xfd,
            0xfd, 0xfc, 0xff,
        ];
        let got = parse_arg_info(&b);
        use ArgItem::*;
        assert_eq!(
            got,
            vec![
                Word { offset: 0, size: 8 },
                Agg(vec![
                    Word { offset: 8, size: 8 },
                    Word {
                        offset: 16,
                        size: 8
                    }
                ]),
                Agg(vec![
                    Word {
                        offset: 24,
                        size: 8
                    },
                    Agg(vec![
                        Word {
                            offset: 32,
                            size: 1
                        },
                        Word {
                            offset: 33,
                            size: 1
                        }
                    ])
                ]),
                More
            ]
        );
        assert_eq!(parse_arg_info(&[0xfb, 0xff]), vec![OffsetTooLarge]);
        // Truncated input never panics.
        assert_eq!(parse_arg_info(&[0xfe, 0x00]), vec![Agg(vec![])]);
    }
}

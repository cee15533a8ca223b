//! Probe specs → resolved probes: the function looked up by its Go name in
//! DWARF, its attach address and file offset, its parameters with their
//! locations at that address, and the capture plan compiled for them.
//!
//! Free of aya and tokio. Near-match suggestions for unknown names and the
//! `probe symbols` listing live here too, as they search the same index.

use std::collections::HashMap;

use crate::{
    abi,
    binary::Binary,
    capture::{self, Limits, ProbePlan, Tables},
    dwarf::{DebugInfo, Field, Function, Kind, Param, Piece, Place, RuntimeLayout, Type, TypeId},
    error::Error,
    pclntab::{ArgItem, Pclntab},
    prologue,
};

/// Where in a function a probe fires: the `kind` of JSON events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A function's entry (after Go's stack check).
    Entry,
    /// Every return site of a function (`--returns`), paired with its entry.
    Return,
    /// A source line (`--line FILE:LINE`).
    Line,
    /// A raw address (`--addr`).
    Addr,
}

impl ProbeKind {
    /// The name events and `--dry-run` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Entry => "entry",
            ProbeKind::Return => "return",
            ProbeKind::Line => "line",
            ProbeKind::Addr => "addr",
        }
    }
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probe ready to configure in the kernel.
#[derive(Clone, Debug)]
pub struct ResolvedProbe {
    /// The spec as the user wrote it (the `probe` field of JSON events).
    pub spec: String,
    /// Where in the function it fires.
    pub kind: ProbeKind,
    /// Local variables are captured and shown.
    pub locals: bool,
    /// For a probe on an inlined copy: which copy, in which caller.
    pub inlined: Option<crate::dwarf::InlinedCopy>,
    pub function: Function,
    /// Source position of the probed PC.
    pub file: String,
    pub line: u64,
    /// The probed instruction: the function's entry, after Go's stack check.
    pub pc: u64,
    /// `pc` as an offset into the ELF file, where the uprobe goes.
    pub file_offset: u64,
    /// Why the probe sits at `pc` (shown by `--dry-run`).
    pub placement: String,
    /// Further (pc, file offset) sites sharing this probe (every RET of a
    /// function for its return probe).
    pub more_sites: Vec<(u64, u64)>,
    pub params: Vec<Param>,
    pub plan: ProbePlan,
    /// What this probe cannot show because the binary lacks information
    /// (the `@missing` field of JSON events); `None` with full DWARF.
    pub missing: Option<String>,
}

impl ResolvedProbe {
    /// A probe with no inlined copy, no extra sites and no locals shown.
    #[allow(clippy::too_many_arguments)]
    fn at(
        spec: &str,
        kind: ProbeKind,
        function: Function,
        (file, line): (String, u64),
        (pc, file_offset): (u64, u64),
        params: Vec<Param>,
        plan: ProbePlan,
    ) -> Self {
        Self {
            spec: spec.to_owned(),
            kind,
            locals: false,
            inlined: None,
            function,
            file,
            line,
            pc,
            file_offset,
            placement: String::new(),
            more_sites: vec![],
            params,
            plan,
            missing: None,
        }
    }
}

#[cfg(test)]
impl ResolvedProbe {
    /// A bare function probe, for output tests.
    pub(crate) fn for_tests(name: &str, file: &str) -> Self {
        Self::at(
            name,
            ProbeKind::Entry,
            Function::synthetic(name, 0x40_1000, file, 10),
            (file.to_owned(), 12),
            (0x40_1006, 0x1006),
            vec![],
            ProbePlan::default(),
        )
    }
}

/// A target binary with its DWARF, ready to resolve probes against.
pub struct Program {
    pub binary: Binary,
    pub debug: DebugInfo,
    /// `None` for a binary probed by address without Go DWARF.
    pub runtime: Option<RuntimeLayout>,
    /// Kernel type tables shared by every probe on this binary.
    pub tables: Tables,
    /// Runtime type descriptor address → DWARF type (for interfaces).
    pub rtypes: HashMap<u64, TypeId>,
    /// Go's function table, used when there is no DWARF (functions, lines
    /// and argument words then come from it).
    pub pcln: Option<Pclntab>,
    /// Where the DWARF came from when not from the binary itself (a
    /// separate debug-info file).
    pub debug_file: Option<std::path::PathBuf>,
}

/// What a probe on a binary without DWARF cannot show (`@missing`);
/// `goid` says whether the goroutine id could still be found (from the
/// runtime's type descriptor of `runtime.g`).
pub fn missing_dwarf(goid: bool, exact: bool) -> String {
    format!(
        "DWARF (the binary was built with -ldflags=-w or stripped): parameter names, types, locals{} and conditions on values are unavailable; args are the argument words as Go's tracebacks show them (from the runtime's argument info), {}",
        if goid { "" } else { ", the goroutine id (runtime.g's layout was not found)" },
        if exact {
            "in the registers the function's own stack-growth path spills them from (a float argument is in an XMM register, which BPF cannot read: shown as unavailable)"
        } else {
            "read where the register ABI puts integers (a leaf function, so no spill code says where each is): a float argument travels in an XMM register that this cannot tell apart, so it and the arguments after it may be shown from the wrong register"
        }
    )
}

impl Program {
    /// Opens a Go binary with DWARF, or says precisely why it cannot.
    /// Without DWARF in the binary, a separate debug-info file is looked
    /// for (see [`Binary::find_debug_file`]); without one, the program is
    /// opened from `.gopclntab` alone ([`Program::open_pcln`]).
    pub fn open(path: &std::path::Path) -> Result<Self, Error> {
        Self::open_with(path, None)
    }

    /// [`Program::open`] with an explicit separate debug-info file.
    pub fn open_with(
        path: &std::path::Path,
        debug_file: Option<&std::path::Path>,
    ) -> Result<Self, Error> {
        let binary = Binary::open(path)?;
        if !binary.is_go {
            binary.require_go_dwarf()?;
        }
        let external = match debug_file {
            Some(f) => Some(f.to_owned()),
            None if !binary.has_dwarf => binary.find_debug_file(),
            None => None,
        };
        if external.is_none() && !binary.has_dwarf {
            return Self::open_pcln(binary);
        }
        let mut debug = match &external {
            Some(f) => {
                let data = std::fs::read(f).map_err(|source| Error::Io {
                    what: format!("cannot read the debug-info file {}", f.display()),
                    source,
                })?;
                DebugInfo::load(&data, f)?
            }
            None => DebugInfo::load(&binary.data, path)?,
        };
        let runtime = Some(debug.runtime_layout().ok_or_else(|| Error::BadDwarf {
            path: external.clone().unwrap_or_else(|| path.to_owned()),
            reason: "no runtime.g type with goid and stack fields".into(),
        })?);
        Ok(Self {
            binary,
            debug,
            runtime,
            tables: Tables::new(),
            rtypes: HashMap::new(),
            pcln: None,
            debug_file: external,
        })
    }

    /// A Go binary without DWARF: functions, lines and argument words come
    /// from `.gopclntab`.
    pub fn open_pcln(binary: Binary) -> Result<Self, Error> {
        let pcln = Pclntab::parse(&binary.data).map_err(|e| Error::BadDwarf {
            path: binary.path.clone(),
            reason: format!("no DWARF, and its Go function table is unreadable: {e}"),
        })?;
        let debug = DebugInfo::load(&binary.data, &binary.path)?;
        // The goroutine id's offset from the runtime's own type descriptor.
        let runtime = crate::pclntab::g_layout_from_type_info(&binary.data).map(
            |(goid_offset, stack_hi_offset)| RuntimeLayout {
                goid_offset,
                stack_hi_offset,
            },
        );
        Ok(Self {
            binary,
            debug,
            runtime,
            tables: Tables::new(),
            rtypes: HashMap::new(),
            pcln: Some(pcln),
            debug_file: None,
        })
    }

    /// Spill slots of `f`'s register arguments (see
    /// [`prologue::spilled_args`]); `pc` is the probe, after the check.
    fn spill_map(&self, f: &crate::pclntab::PclnFunc, pc: u64) -> Option<Vec<(u64, u16, u64)>> {
        let skip = usize::try_from(pc.checked_sub(f.entry)?).ok()?;
        if skip == 0 {
            return None;
        }
        let off = self.binary.file_offset(f.entry)? as usize;
        let len = usize::try_from(f.end.checked_sub(f.entry)?).ok()?;
        let code = self.binary.data.get(off..off.checked_add(len)?)?;
        prologue::spilled_args(code, f.entry, skip)
    }

    /// Without DWARF: (function, file, line) of `pc` from `.gopclntab`
    /// (`None` with DWARF, or outside any function). Code inlined at `pc`
    /// is not expanded: the line is the innermost, the function the outer.
    pub fn table_position(&self, pc: u64) -> Option<(String, String, u64)> {
        let pcln = self.pcln.as_ref()?;
        let f = pcln.function_at(pc)?;
        let (file, line) = pcln.line_at(f, pc).unwrap_or_default();
        Some((f.name.clone(), file, line))
    }

    /// What probes on this program cannot show, when it has no DWARF.
    pub fn missing(&self) -> Option<String> {
        self.pcln
            .is_some()
            .then(|| missing_dwarf(self.runtime.is_some(), true))
    }

    /// Opens any ELF executable for address probes: with Go DWARF when it
    /// has it, else raw registers only.
    pub fn open_raw(path: &std::path::Path) -> Result<Self, Error> {
        let binary = Binary::open(path)?;
        let mut debug = DebugInfo::load(&binary.data, path)?;
        let runtime = if binary.is_go {
            debug.runtime_layout()
        } else {
            None
        };
        Ok(Self {
            binary,
            debug,
            runtime,
            tables: Tables::new(),
            rtypes: HashMap::new(),
            pcln: None,
            debug_file: None,
        })
    }

    /// Resolves `--addr 0xADDR` or `--addr SYMBOL+0xOFF` (the symbol from the
    /// ELF symbol table, so stripped-of-DWARF binaries work too). With DWARF
    /// the variables live at that PC are captured; without, raw registers.
    pub fn resolve_addr(
        &mut self,
        spec: &str,
        limits: Limits,
        locals: bool,
    ) -> Result<ResolvedProbe, Error> {
        let bad = |why: String| Error::Unsupported(format!("--addr {spec}: {why}"));
        let num = |t: &str| -> Option<u64> {
            let t = t.trim();
            match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => t.parse().ok(),
            }
        };
        let pc = match num(spec) {
            Some(a) => a,
            None => {
                let (sym, off) = match spec.rsplit_once('+') {
                    Some((s, o)) => (
                        s,
                        num(o).ok_or_else(|| bad(format!("{o:?} is not an offset")))?,
                    ),
                    None => (spec, 0),
                };
                let base = self
                    .binary
                    .symbol(sym)
                    .or_else(|| self.debug.function(sym).map(|f| f.low_pc))
                    .or_else(|| self.pcln.as_ref()?.function(sym).map(|f| f.entry))
                    .ok_or_else(|| {
                        let names = self.debug.functions().iter().map(|f| f.name.as_str());
                        Error::UnknownFunction {
                            name: sym.to_owned(),
                            path: self.binary.path.clone(),
                            near: near_matches(names, sym, 5),
                        }
                    })?;
                base + off
            }
        };
        let file_offset = self
            .binary
            .file_offset(pc)
            .ok_or_else(|| bad(format!("{pc:#x} is not in the file's code")))?;
        let function = self.debug.function_at(pc).cloned();
        let (params, plan, function, file, line) = match function {
            Some(f) => {
                let cfa = if pc == f.low_pc {
                    Some(8)
                } else {
                    self.debug.cfa_offset(pc)
                };
                let params =
                    match cfa {
                        Some(cfa) => self.debug.variables(&f, pc, cfa, locals).map_err(|e| {
                            Error::BadDwarf {
                                path: self.binary.path.clone(),
                                reason: format!("variables at {pc:#x}: {e}"),
                            }
                        })?,
                        None => vec![],
                    };
                let plan = capture::compile(&self.debug, &mut self.tables, &params, limits);
                let (file, line) = self
                    .debug
                    .line_at(pc)
                    .map(|(f, l)| (f.to_owned(), l))
                    .unwrap_or_default();
                (params, plan, f, file, line)
            }
            None => {
                let name = self
                    .binary
                    .symbol_at(pc)
                    .unwrap_or_else(|| format!("{pc:#x}"));
                (
                    vec![],
                    ProbePlan {
                        limits,
                        ..Default::default()
                    },
                    Function::synthetic(&name, pc, "", 0),
                    String::new(),
                    0,
                )
            }
        };
        Ok(ResolvedProbe {
            locals,
            ..ResolvedProbe::at(
                spec,
                ProbeKind::Addr,
                function,
                (file, line),
                (pc, file_offset),
                params,
                plan,
            )
        })
    }

    /// Registers the binary's runtime type descriptors so interfaces can be
    /// followed to their dynamic values (needs the `runtime.types` symbol).
    pub fn load_runtime_types(&mut self) {
        let Some(base) = self.binary.symbol("runtime.types") else {
            return;
        };
        self.rtypes = self.tables.register_rtypes(&mut self.debug, base);
        // Pointer types that DWARF leaves out (no variable has them) are
        // still reachable through interfaces: find each described type's
        // pointer type through its runtime descriptor's PtrToThis (an offset
        // from runtime.types at +44 of abi.Type, see internal/abi/type.go).
        let known: Vec<(u64, TypeId)> = self.rtypes.iter().map(|(a, t)| (*a, *t)).collect();
        for (addr, ty) in known {
            let Some(b) = self.binary.read_virt(addr + 44, 4) else {
                continue;
            };
            let off = i32::from_le_bytes(b.try_into().unwrap());
            if off <= 0 {
                continue;
            }
            let paddr = base + off as u64;
            if self.rtypes.contains_key(&paddr) {
                continue;
            }
            let pt = self.debug.add_pointer_type(ty);
            self.rtypes.insert(paddr, pt);
            let tid = self.tables.tid(&self.debug, ty);
            self.tables.rtypes.push((paddr, tid));
        }
    }

    /// Resolves `--func NAME` with default limits; see [`Program::resolve`].
    pub fn resolve_func(&mut self, name: &str) -> Result<ResolvedProbe, Error> {
        Ok(self.resolve(name, Limits::default())?.remove(0))
    }

    /// Resolves `--func NAME`: the function, or every shape instantiation of
    /// a generic function named without its type arguments (`main.Max`).
    pub fn resolve(&mut self, name: &str, limits: Limits) -> Result<Vec<ResolvedProbe>, Error> {
        if self.pcln.is_some() {
            return self.resolve_pcln(name, limits);
        }
        let funcs: Vec<Function> = match self.debug.function(name) {
            Some(f) => vec![f.clone()],
            None => self
                .debug
                .instantiations(name)
                .into_iter()
                .cloned()
                .collect(),
        };
        let copies = self.debug.inlined_copies(name).to_vec();
        if funcs.is_empty() && copies.is_empty() {
            return Err(Error::UnknownFunction {
                name: name.to_owned(),
                path: self.binary.path.clone(),
                near: near_matches(
                    self.debug.functions().iter().map(|f| f.name.as_str()),
                    name,
                    5,
                ),
            });
        }
        let mut out: Vec<ResolvedProbe> = funcs
            .into_iter()
            .map(|f| self.resolve_one(name, f, limits))
            .collect::<Result<_, _>>()?;
        for c in copies {
            out.push(self.resolve_inlined(name, c, limits)?);
        }
        Ok(out)
    }

    /// Where the instruction at `pc` lies in the file and its CFA's offset
    /// from the stack pointer there: what a probe placed mid-function needs
    /// to find its variables. `Err` says which is missing.
    fn offset_and_cfa(&self, pc: u64) -> Result<(u64, i64), String> {
        let file_offset = self
            .binary
            .file_offset(pc)
            .ok_or_else(|| format!("{pc:#x} is not in a loadable segment"))?;
        let cfa = self
            .debug
            .cfa_offset(pc)
            .ok_or_else(|| format!("no call frame information for {pc:#x}"))?;
        Ok((file_offset, cfa))
    }

    /// A probe on one inlined copy: at its first instruction, with the
    /// parameters DWARF locates there.
    fn resolve_inlined(
        &mut self,
        spec: &str,
        copy: crate::dwarf::InlinedCopy,
        limits: Limits,
    ) -> Result<ResolvedProbe, Error> {
        let pc = copy.entry_pc;
        let bad = |why: String| {
            Error::Unsupported(format!(
                "inlined copy of {} in {}: {why}",
                copy.name, copy.caller
            ))
        };
        let (file_offset, cfa) = self.offset_and_cfa(pc).map_err(bad)?;
        let params = self
            .debug
            .inlined_variables(&copy, pc, cfa, false)
            .map_err(|e| Error::BadDwarf {
                path: self.binary.path.clone(),
                reason: format!("variables of {} inlined in {}: {e}", copy.name, copy.caller),
            })?;
        let plan = capture::compile(&self.debug, &mut self.tables, &params, limits);
        let (file, line) = self
            .debug
            .line_at(pc)
            .map(|(f, l)| (f.to_owned(), l))
            .unwrap_or_default();
        let function = Function::synthetic(&copy.name, pc, &file, line);
        Ok(ResolvedProbe {
            inlined: Some(copy),
            ..ResolvedProbe::at(
                spec,
                ProbeKind::Entry,
                function,
                (file, line),
                (pc, file_offset),
                params,
                plan,
            )
        })
    }

    fn resolve_one(
        &mut self,
        spec: &str,
        function: Function,
        limits: Limits,
    ) -> Result<ResolvedProbe, Error> {
        let name = function.name.clone();
        let entry = function.low_pc;
        let (pc, file_offset, placement) = self.entry_site(&name, entry)?;
        let mut params = self
            .debug
            .params(&function, entry)
            .map_err(|e| Error::BadDwarf {
                path: self.binary.path.clone(),
                reason: format!("parameters of {name}: {e}"),
            })?;
        // At the entry the register ABI says exactly where every argument is;
        // DWARF location lists remain the fallback for types it cannot place.
        // A shape-instantiated generic takes its dictionary first, in RAX,
        // whether or not DWARF lists it (Go 1.21 does not).
        let hidden_dict = name.contains("[go.shape.") && !params.iter().any(|p| p.name == ".dict");
        if let Some(locs) = abi::entry_locations(&self.debug, &params, hidden_dict) {
            for (p, pieces) in params.iter_mut().filter(|p| !p.is_result).zip(locs) {
                p.pieces = pieces;
            }
        }
        let plan = capture::compile(&self.debug, &mut self.tables, &params, limits);
        let pos = (function.file.clone(), function.line);
        Ok(ResolvedProbe {
            placement,
            ..ResolvedProbe::at(
                spec,
                ProbeKind::Entry,
                function,
                pos,
                (pc, file_offset),
                params,
                plan,
            )
        })
    }

    /// Where a function probe goes: after Go's stack check when there is
    /// one (see `prologue`), as (pc, file offset, why there).
    fn entry_site(&self, name: &str, entry: u64) -> Result<(u64, u64, String), Error> {
        let not_loadable = || {
            Error::Unsupported(format!(
                "{name} at {entry:#x} is not in a loadable segment of {}",
                self.binary.path.display()
            ))
        };
        let entry_offset = self.binary.file_offset(entry).ok_or_else(not_loadable)?;
        // Skip Go's stack-bound check so a call that grows its stack is seen
        // once, not twice (see `prologue`).
        let code = self.binary.data.get(entry_offset as usize..).unwrap_or(&[]);
        let skip = prologue::after_stack_check(&code[..code.len().min(32)]).unwrap_or(0) as u64;
        let first = {
            let at = code.get(skip as usize..).unwrap_or(&[]);
            let mut dec = iced_x86::Decoder::with_ip(
                64,
                &at[..at.len().min(16)],
                entry + skip,
                iced_x86::DecoderOptions::NONE,
            );
            format!("{:?}", dec.decode().mnemonic()).to_lowercase()
        };
        let placement = if skip > 0 {
            format!(
                "after Go's stack check, at +{skip:#x} ({first}{}): fires once per call, even when the call grows its stack",
                if first == "push" { ", emulated by the kernel instead of single-stepped" } else { "" }
            )
        } else {
            // Without a stack check the first instruction is either an
            // emulated `push rbp` or already works on the arguments (a
            // frameless leaf): no later instruction is safe to move to.
            format!(
                "at the first instruction ({first}): no stack check (a leaf function){}",
                if first == "push" {
                    ", emulated by the kernel"
                } else {
                    "; single-stepped by the kernel (no emulated instruction comes before the arguments' registers are used)"
                }
            )
        };
        Ok((entry + skip, entry_offset + skip, placement))
    }

    /// `--func NAME` on a binary without DWARF: the function (or every
    /// shape instantiation of a generic) from `.gopclntab`, with its
    /// argument words placed by the register ABI.
    fn resolve_pcln(&mut self, name: &str, limits: Limits) -> Result<Vec<ResolvedProbe>, Error> {
        let pcln = self.pcln.as_ref().expect("pcln mode");
        let prefix = format!("{name}[");
        let funcs: Vec<crate::pclntab::PclnFunc> = match pcln.function(name) {
            Some(f) => vec![f.clone()],
            None => pcln
                .functions()
                .iter()
                .filter(|f| f.name.starts_with(&prefix) && f.name.ends_with(']'))
                .cloned()
                .collect(),
        };
        if funcs.is_empty() {
            return Err(Error::UnknownFunction {
                name: name.to_owned(),
                path: self.binary.path.clone(),
                near: near_matches(pcln.functions().iter().map(|f| f.name.as_str()), name, 5),
            });
        }
        let mut out = vec![];
        for f in funcs {
            let pcln = self.pcln.as_ref().expect("pcln mode");
            let (file, line) = pcln.line_at(&f, f.entry).unwrap_or_default();
            let line = pcln.start_line(&f).map_or(line, u64::from);
            let binary = &self.binary;
            let items = pcln.arg_info(&f, |at, n| binary.read_virt(at, n));
            let (pc, file_offset, placement) = self.entry_site(&f.name, f.entry)?;
            let no_base = pcln.gofunc.is_none();
            let (mut params, mut notes) = arg_word_params(&mut self.debug, items.as_deref());
            if no_base {
                // A stripped PIE: moduledata's pointers are dynamic relocations.
                notes = vec!["argument words: the base of the runtime's function data (go:func.*) was not found without a symbol table (a stripped PIE?)"];
            }
            // Exact registers from the stack-growth path's spills when the
            // function has a stack check; else the ABI model.
            let exact = match self.spill_map(&f, pc) {
                Some(spills) => {
                    place_by_spills(&self.debug, &mut params, &spills);
                    true
                }
                None => {
                    place_by_abi(&self.debug, &mut params, f.name.contains('['));
                    false
                }
            };
            let plan = capture::compile(&self.debug, &mut self.tables, &params, limits);
            let mut missing = missing_dwarf(self.runtime.is_some(), exact);
            for n in notes {
                missing.push_str("; ");
                missing.push_str(n);
            }
            let function = Function::from_table(&f.name, f.entry, f.end, &file, line);
            out.push(ResolvedProbe {
                placement,
                missing: Some(missing),
                ..ResolvedProbe::at(
                    name,
                    ProbeKind::Entry,
                    function,
                    (file, line),
                    (pc, file_offset),
                    params,
                    plan,
                )
            });
        }
        Ok(out)
    }

    /// The return probe of entry probe `entry`: every RET instruction of the
    /// function (decoded with iced-x86; never a uretprobe, which would
    /// rewrite return addresses on stacks the Go runtime moves), capturing
    /// the results where the register ABI leaves them.
    pub fn resolve_returns(&mut self, entry: &ResolvedProbe) -> Result<ResolvedProbe, Error> {
        let f = &entry.function;
        let bad = |why: String| Error::Unsupported(format!("--returns for {}: {why}", f.name));
        let start = self
            .binary
            .file_offset(f.low_pc)
            .ok_or_else(|| bad("code not in the file".into()))?;
        let code = self
            .binary
            .data
            .get(start as usize..(start + (f.high_pc - f.low_pc)) as usize)
            .ok_or_else(|| bad("code not in the file".into()))?;
        let mut decoder =
            iced_x86::Decoder::with_ip(64, code, f.low_pc, iced_x86::DecoderOptions::NONE);
        let mut sites = vec![];
        let mut insn = iced_x86::Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut insn);
            if insn.mnemonic() == iced_x86::Mnemonic::Ret {
                let pc = insn.ip();
                sites.push((pc, start + (pc - f.low_pc)));
            }
        }
        if sites.is_empty() {
            return Err(bad(
                "no return instruction (the function never returns normally)".into(),
            ));
        }
        let mut params = entry.params.clone();
        let hidden_dict =
            f.name.contains("[go.shape.") && !params.iter().any(|p| p.name == ".dict");
        match abi::return_locations(&self.debug, &params, hidden_dict) {
            Some(locs) => {
                for (p, pieces) in params.iter_mut().filter(|p| p.is_result).zip(locs) {
                    p.pieces = pieces;
                }
            }
            None => params
                .iter_mut()
                .filter(|p| p.is_result)
                .for_each(|p| p.pieces.clear()),
        }
        let plan = capture::compile_vars(
            &self.debug,
            &mut self.tables,
            &params,
            entry.plan.limits,
            true,
        );
        let first = sites.remove(0);
        let pos = (entry.file.clone(), entry.line);
        Ok(ResolvedProbe {
            more_sites: sites,
            missing: entry.missing.clone(),
            ..ResolvedProbe::at(
                &entry.spec,
                ProbeKind::Return,
                f.clone(),
                pos,
                first,
                params,
                plan,
            )
        })
    }

    /// Resolves `--line FILE:LINE`: a probe at every address where the line
    /// begins (`is_stmt` rows of the line table), with the parameters and,
    /// with `locals`, the local variables live there.
    pub fn resolve_line(
        &mut self,
        spec: &str,
        limits: Limits,
        locals: bool,
    ) -> Result<Vec<ResolvedProbe>, Error> {
        let bad = |why: String| Error::Unsupported(format!("--line {spec}: {why}"));
        let (file, line) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("expected FILE:LINE, e.g. main.go:42".into()))?;
        let line: u64 = line
            .parse()
            .map_err(|_| bad(format!("{line:?} is not a line number")))?;
        let addrs = match &self.pcln {
            Some(p) => p.line_addresses(file, line),
            None => self.debug.line_addresses(file, line),
        };
        if addrs.is_empty() {
            return Err(bad(format!(
                "no code at line {line} of a file ending in {file:?} in {} (a blank or comment line, or a file not in this binary?)",
                self.binary.path.display()
            )));
        }
        let mut out = vec![];
        for (pc, path) in addrs {
            if let Some(pcln) = &self.pcln {
                // No DWARF: the line's position, no variables.
                let Some(f) = pcln.function_at(pc) else {
                    continue;
                };
                let function = Function::from_table(&f.name, f.entry, f.end, &path, line);
                let file_offset = self
                    .binary
                    .file_offset(pc)
                    .ok_or_else(|| bad(format!("{pc:#x} is not in a loadable segment")))?;
                out.push(ResolvedProbe {
                    missing: self.missing(),
                    ..ResolvedProbe::at(
                        spec,
                        ProbeKind::Line,
                        function,
                        (path, line),
                        (pc, file_offset),
                        vec![],
                        ProbePlan {
                            limits,
                            ..Default::default()
                        },
                    )
                });
                continue;
            }
            let Some(function) = self.debug.function_at(pc).cloned() else {
                continue;
            };
            let (file_offset, cfa) = self.offset_and_cfa(pc).map_err(bad)?;
            let params = self
                .debug
                .variables(&function, pc, cfa, locals)
                .map_err(|e| Error::BadDwarf {
                    path: self.binary.path.clone(),
                    reason: format!("variables of {} at {pc:#x}: {e}", function.name),
                })?;
            let plan = capture::compile(&self.debug, &mut self.tables, &params, limits);
            out.push(ResolvedProbe {
                locals,
                ..ResolvedProbe::at(
                    spec,
                    ProbeKind::Line,
                    function,
                    (path, line),
                    (pc, file_offset),
                    params,
                    plan,
                )
            });
        }
        Ok(out)
    }
}

/// Parameters `arg0`, `arg1`… for a function's argument info: a scalar is
/// an unsigned word of its size, an aggregate (struct, array, string,
/// slice, interface, complex) a struct of its scalar words `word0`, `word1`…
/// in memory order. A stack-assigned parameter's single piece is its
/// argument-area offset (RSP+8+offset at the entry); the register ABI
/// overrides register-assigned ones. Also returns notes on what is cut.
fn arg_word_params(
    debug: &mut DebugInfo,
    items: Option<&[ArgItem]>,
) -> (Vec<Param>, Vec<&'static str>) {
    let mut notes = vec![];
    let Some(items) = items else {
        notes.push("the function has no argument info (no arguments, or assembly)");
        return (vec![], notes);
    };
    let word_type = |debug: &mut DebugInfo, size: u64| {
        debug.add_type(Type {
            name: format!("word{}", size * 8),
            size,
            kind: Kind::Uint,
        })
    };
    fn leaves(items: &[ArgItem], out: &mut Vec<(u64, u64)>, cut: &mut bool) {
        for it in items {
            match it {
                ArgItem::Word { offset, size } => out.push((u64::from(*offset), u64::from(*size))),
                ArgItem::Agg(inner) => leaves(inner, out, cut),
                ArgItem::More | ArgItem::OffsetTooLarge => *cut = true,
            }
        }
    }
    let mut params = vec![];
    for it in items {
        let (ty, offset) = match it {
            ArgItem::More => {
                notes
                    .push("more arguments than Go's argument info lists (it stops after 10 words)");
                break;
            }
            ArgItem::Word { offset, size } => (
                word_type(debug, u64::from(*size).max(1)),
                Some(u64::from(*offset)),
            ),
            ArgItem::OffsetTooLarge => (word_type(debug, 8), None),
            ArgItem::Agg(inner) => {
                let (mut ws, mut cut) = (vec![], false);
                leaves(inner, &mut ws, &mut cut);
                if cut {
                    notes.push("an argument has more words than Go's argument info lists");
                }
                let base = ws.first().map_or(0, |w| w.0);
                let end = ws.iter().map(|w| w.0 + w.1).max().unwrap_or(base);
                let align = ws.iter().map(|w| w.1).max().unwrap_or(1).max(1);
                let mut fields = vec![];
                for (i, (off, size)) in ws.into_iter().enumerate() {
                    let ty = word_type(debug, size.max(1));
                    fields.push(Field {
                        name: format!("word{i}"),
                        offset: off - base,
                        ty,
                        embedded: false,
                    });
                }
                let size = (end - base).div_ceil(align) * align;
                let ty = debug.add_type(Type {
                    name: "words".into(),
                    size,
                    kind: Kind::Struct { fields },
                });
                (ty, Some(base))
            }
        };
        params.push(Param {
            name: format!("arg{}", params.len()),
            ty,
            is_result: false,
            local: false,
            pieces: vec![Piece {
                place: match offset {
                    Some(o) => Place::Stack(8 + o as i64),
                    None => Place::Unavailable(String::new()),
                },
                size: None,
            }],
        });
    }
    (params, notes)
}

/// The scalar words of an argument-word parameter: (offset in the
/// argument area, bytes), from its synthetic type and its stack piece.
fn param_words(debug: &DebugInfo, p: &Param) -> Option<Vec<(u64, u64)>> {
    let Some(Piece {
        place: Place::Stack(s),
        ..
    }) = p.pieces.first()
    else {
        return None;
    };
    let base = u64::try_from(s - 8).ok()?;
    Some(match &debug.ty(p.ty).kind {
        Kind::Struct { fields } => fields
            .iter()
            .map(|f| (base + f.offset, debug.ty(f.ty).size))
            .collect(),
        _ => vec![(base, debug.ty(p.ty).size)],
    })
}

/// Places argument words by the spill code: a word found there is in that
/// register at the entry; a parameter none of whose words is spilled is
/// stack-assigned (it stays at its argument-info offset).
fn place_by_spills(debug: &DebugInfo, params: &mut [Param], spills: &[(u64, u16, u64)]) {
    for p in params.iter_mut() {
        let Some(words) = param_words(debug, p) else {
            p.pieces = vec![Piece {
                place: Place::Unavailable(
                    "its offset is past what Go's argument info records (250 bytes)".into(),
                ),
                size: None,
            }];
            continue;
        };
        let found: Vec<Option<u16>> = words
            .iter()
            .map(|w| spills.iter().find(|s| s.0 == w.0).map(|s| s.1))
            .collect();
        if found.iter().all(Option::is_none) {
            continue; // on the stack
        }
        let base = words[0].0;
        let (mut pieces, mut at) = (vec![], base);
        for (w, r) in words.iter().zip(found) {
            if w.0 > at {
                pieces.push(Piece {
                    place: Place::Unavailable("padding".into()),
                    size: Some(w.0 - at),
                });
            }
            pieces.push(Piece {
                place: match r {
                    Some(r) => Place::Reg(r),
                    None => Place::Unavailable("not in the function's spill code".into()),
                },
                size: Some(w.1),
            });
            at = w.0 + w.1;
        }
        p.pieces = pieces;
    }
}

/// Places argument words by the ABIInternal model of `abi` (every word an
/// integer), keeping stack-assigned ones at their argument-info offsets.
fn place_by_abi(debug: &DebugInfo, params: &mut [Param], hidden_dict: bool) {
    // A generic's dictionary comes first, in RAX; its argument info leaves
    // it out (cmd/compile/internal/ssagen EmitArgInfo).
    let Some(locs) = abi::entry_locations(debug, params, hidden_dict) else {
        return;
    };
    for (p, pieces) in params.iter_mut().zip(locs) {
        // A stack-assigned argument is where its argument info says (the
        // offset is from the argument area, RSP+8 at the entry), which also
        // covers arrays that the model cannot tell from structs.
        let on_stack = matches!(
            pieces.as_slice(),
            [Piece {
                place: Place::Stack(_),
                ..
            }]
        );
        p.pieces = match (on_stack, p.pieces.first()) {
            (
                true,
                Some(Piece {
                    place: Place::Stack(off),
                    ..
                }),
            ) => {
                vec![Piece {
                    place: Place::Stack(*off),
                    size: None,
                }]
            }
            (true, _) => vec![Piece {
                place: Place::Unavailable(
                    "on the stack at an offset Go's argument info does not record (past 250 bytes)"
                        .into(),
                ),
                size: None,
            }],
            (false, _) => pieces,
        };
    }
}

/// Functions worth listing: user and library code, not linker-generated stubs.
pub fn probeable(f: &Function) -> bool {
    !(f.name.starts_with("type:")
        || f.name.starts_with("go:")
        || f.name.contains("..stmp")
        || f.low_pc == 0)
}

/// The `limit` names closest to `wanted`: same-suffix and substring matches
/// first (a missing package or receiver), then by edit distance.
pub fn near_matches<'a>(
    names: impl Iterator<Item = &'a str>,
    wanted: &str,
    limit: usize,
) -> Vec<String> {
    let lw = wanted.to_lowercase();
    let tail = |s: &str| s.rsplit(['.', ')']).next().unwrap_or(s).to_lowercase();
    let wtail = tail(wanted);
    let mut scored: Vec<(f64, &str)> = names
        .map(|n| {
            let ln = n.to_lowercase();
            let mut score = strsim::normalized_levenshtein(&ln, &lw);
            if tail(n) == wtail {
                score += 0.5;
            }
            if ln.contains(&lw) || lw.contains(&ln) {
                score += 0.3;
            }
            (score, n)
        })
        .filter(|(s, _)| *s > 0.5)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(limit)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// `probe symbols`: probe-able functions whose name contains `pattern`
/// (case-insensitive), sorted, with their source position.
pub fn list_symbols<'a>(debug: &'a DebugInfo, pattern: Option<&str>) -> Vec<&'a Function> {
    let pat = pattern.map(str::to_lowercase);
    let mut out: Vec<&Function> = debug
        .functions()
        .iter()
        .filter(|f| probeable(f))
        .filter(|f| {
            pat.as_ref()
                .is_none_or(|p| f.name.to_lowercase().contains(p))
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_matches_prefers_same_method() {
        let names = [
            "main.(*Store).Put",
            "main.(*Store).Get",
            "main.kinds",
            "runtime.main",
            "net/http.(*Server).Serve",
        ];
        let got = near_matches(names.iter().copied(), "main.Store.Put", 3);
        assert_eq!(got[0], "main.(*Store).Put");
        let got = near_matches(names.iter().copied(), "main.kind", 3);
        assert_eq!(got[0], "main.kinds");
        assert!(near_matches(names.iter().copied(), "zzzzzzzzzzzzzzzz", 3).is_empty());
    }
}

//! Go's internal register ABI on amd64 (ABIInternal, Go ≥1.17): where each
//! parameter is at a function's entry, computed from the parameter types the
//! way the compiler assigns them (go/src/cmd/compile/abi-internal.md).
//!
//! Free of aya and tokio. At the entry PC this is exact and does not depend
//! on the DWARF location lists, which are for stack-assigned parameters
//! sometimes off by a slot (seen with Go 1.21 and 1.27 for a string that
//! follows float parameters). DWARF locations stay the fallback.

use crate::dwarf::{DebugInfo, Kind, Param, Piece, Place, TypeId};

/// Integer argument registers in assignment order, as DWARF numbers:
/// RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11.
pub const INT_REGS: [u16; 9] = [0, 3, 2, 5, 4, 8, 9, 10, 11];
/// Floating-point argument registers X0–X14, as DWARF numbers (17 = XMM0).
pub const FLOAT_REGS: usize = 15;
const XMM0: u16 = 17;

/// Where each input parameter (results skipped) lives at the function entry,
/// or `None` when a type is outside what the ABI model handles. Offsets of
/// stack-assigned parameters are relative to RSP at the entry instruction.
/// `hidden_dict`: a generic's dictionary pointer is passed first (in RAX)
/// without a DWARF parameter for it.
pub fn entry_locations(
    debug: &DebugInfo,
    params: &[Param],
    hidden_dict: bool,
) -> Option<Vec<Vec<Piece>>> {
    let inputs = params.iter().filter(|p| !p.is_result && !p.local);
    Some(assign_all(debug, inputs, usize::from(hidden_dict), 0)?.0)
}

/// Assigns `vars` in order to registers (starting after `ints` integer
/// registers) or, when they do not fit, to the stack from byte `stack` on;
/// returns the pieces of each and where the stack assignment ended.
fn assign_all<'p>(
    debug: &DebugInfo,
    vars: impl Iterator<Item = &'p Param>,
    mut ints: usize,
    mut stack: u64,
) -> Option<(Vec<Vec<Piece>>, u64)> {
    let mut floats = 0usize;
    let mut out = vec![];
    for p in vars {
        let mut a = Assign {
            debug,
            ints,
            floats,
            pieces: vec![],
            at: 0,
        };
        if a.reg(p.ty)? {
            a.pad_to(debug.ty(p.ty).size);
            ints = a.ints;
            floats = a.floats;
            out.push(a.pieces);
        } else {
            // The whole value goes to the stack; registers are not consumed.
            let align = alignment(debug, p.ty)?;
            stack = stack.div_ceil(align) * align;
            // +8: the return address the CALL pushed sits at RSP.
            out.push(vec![Piece {
                place: Place::Stack(8 + stack as i64),
                size: None,
            }]);
            stack += debug.ty(p.ty).size;
        }
    }
    Some((out, stack))
}

struct Assign<'d> {
    debug: &'d DebugInfo,
    ints: usize,
    floats: usize,
    pieces: Vec<Piece>,
    /// Byte offset in the value covered by `pieces` so far.
    at: u64,
}

impl Assign<'_> {
    fn pad_to(&mut self, off: u64) {
        if off > self.at {
            self.pieces.push(Piece {
                place: Place::Unavailable("padding".into()),
                size: Some(off - self.at),
            });
            self.at = off;
        }
    }

    fn int(&mut self, size: u64) -> bool {
        if self.ints >= INT_REGS.len() {
            return false;
        }
        self.pieces.push(Piece {
            place: Place::Reg(INT_REGS[self.ints]),
            size: Some(size),
        });
        self.ints += 1;
        self.at += size;
        true
    }

    fn float(&mut self, size: u64) -> bool {
        if self.floats >= FLOAT_REGS {
            return false;
        }
        self.pieces.push(Piece {
            place: Place::Reg(XMM0 + self.floats as u16),
            size: Some(size),
        });
        self.floats += 1;
        self.at += size;
        true
    }

    /// Register-assigns `ty` at the current offset; `Some(false)` when the
    /// registers run out, `None` when the type is not modelled.
    fn reg(&mut self, ty: TypeId) -> Option<bool> {
        let t = self.debug.underlying(ty);
        let size = t.size;
        Some(match &t.kind {
            Kind::Bool | Kind::Int | Kind::Uint | Kind::Pointer { .. } => self.int(size),
            Kind::Float => self.float(size),
            Kind::Complex => self.float(size / 2) && self.float(size / 2),
            Kind::String => self.int(8) && self.int(8),
            Kind::Slice { .. } => self.int(8) && self.int(8) && self.int(8),
            Kind::Map { .. } | Kind::Chan { .. } | Kind::Func | Kind::UnsafePointer => self.int(8),
            Kind::Interface { .. } => self.int(8) && self.int(8),
            Kind::Other { .. } => return None,
            Kind::Struct { fields } => {
                let base = self.at;
                for f in fields.clone() {
                    self.pad_to(base + f.offset);
                    if !self.reg(f.ty)? {
                        return Some(false);
                    }
                }
                self.pad_to(base + size);
                true
            }
            Kind::Array { elem, count } => match count {
                0 => true,
                1 => self.reg(*elem)?,
                _ => false,
            },
            Kind::Named { .. } | Kind::Pending => return None,
        })
    }
}

/// Where each result is at a RET instruction: results are assigned like
/// arguments, from the first register again, and stack-assigned results
/// follow the stack-assigned arguments (abi-internal.md, "Function call
/// argument and result passing"). At RET, RSP is back where it was at entry.
pub fn return_locations(
    debug: &DebugInfo,
    params: &[Param],
    hidden_dict: bool,
) -> Option<Vec<Vec<Piece>>> {
    let inputs = params.iter().filter(|p| !p.is_result && !p.local);
    let (_, args_end) = assign_all(debug, inputs, usize::from(hidden_dict), 0)?;
    let results = params.iter().filter(|p| p.is_result);
    Some(assign_all(debug, results, 0, args_end.div_ceil(8) * 8)?.0)
}

/// Go's alignment of a type on amd64.
pub fn alignment(debug: &DebugInfo, ty: TypeId) -> Option<u64> {
    let t = debug.underlying(ty);
    Some(match &t.kind {
        Kind::Bool | Kind::Int | Kind::Uint | Kind::Float => t.size.max(1),
        Kind::Complex => (t.size / 2).max(1),
        Kind::Struct { fields } => {
            let mut a = 1;
            for f in fields {
                a = a.max(alignment(debug, f.ty)?);
            }
            a
        }
        Kind::Array { elem, .. } => alignment(debug, *elem)?,
        Kind::Named { .. } | Kind::Pending => return None,
        // One or more pointer-sized words.
        Kind::String
        | Kind::Slice { .. }
        | Kind::Pointer { .. }
        | Kind::Interface { .. }
        | Kind::Map { .. }
        | Kind::Chan { .. }
        | Kind::Func
        | Kind::UnsafePointer => 8,
        // Go kinds the DWARF reader does not model: word-aligned, as every
        // remaining Go kind is on amd64.
        Kind::Other { .. } => 8,
    })
}

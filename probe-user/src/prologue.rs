//! Where to put a function-entry probe in Go code.
//!
//! Go functions begin with a stack-bound check (see cmd/internal/obj/x86's
//! `stacksplit`): `cmp rsp, [r14+16]` (or `lea r12, [rsp-N]; cmp r12,
//! [r14+16]` for larger frames) then `jbe` to a `morestack` call that grows
//! the stack and *restarts the function from its first instruction*. A probe
//! on the first instruction therefore fires twice for a call that grows the
//! stack. Probing the instruction right after the `jbe` fires exactly once per
//! call; no instruction before it writes an argument register or RSP, so the
//! entry-PC argument locations still hold there. (The instruction there is
//! usually `push rbp`, which the kernel emulates instead of single-stepping.)

/// The offset of the first instruction after the stack check, if `code`
/// (the function's first bytes) starts with one.
pub fn after_stack_check(code: &[u8]) -> Option<usize> {
    let mut i = 0;
    // lea r12, [rsp+disp8] / [rsp+disp32]
    if code.starts_with(&[0x4c, 0x8d, 0x64, 0x24]) {
        i += 5;
    } else if code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24]) {
        i += 8;
    }
    let rest = code.get(i..)?;
    // cmp rsp, [r14+disp8] (49 3b 66 xx) or cmp r12, [r14+disp8] (4d 3b 66 xx)
    let cmp_ok = match rest {
        [0x49, 0x3b, 0x66, _, ..] => i == 0,
        [0x4d, 0x3b, 0x66, _, ..] => i > 0,
        _ => false,
    };
    if !cmp_ok {
        return None;
    }
    i += 4;
    match code.get(i..)? {
        [0x76, _, ..] => Some(i + 2),                // jbe rel8
        [0x0f, 0x86, _, _, _, _, ..] => Some(i + 6), // jbe rel32
        _ => None,
    }
}

/// Where each register-assigned argument is at the entry, read from the
/// code the compiler emits for the stack-growth path: before calling
/// `runtime.morestack`, a function with a stack check spills every register
/// argument to its spill slot (`MOVQ AX, 8(SP)`, `MOVSD X0, 16(SP)`; see
/// cmd/compile/internal/ssagen `genssa` / `Arch.LoadRegResult` and
/// cmd/internal/obj/x86 `stacksplit`), then reloads them and jumps back.
/// `code` starts at the function's entry and `skip` is
/// [`after_stack_check`]'s result. Returns (offset in the argument area,
/// i.e. from RSP+8 at the entry, DWARF register number, bytes); `None`
/// without a stack check or when the block does not look like that.
pub fn spilled_args(code: &[u8], entry: u64, skip: usize) -> Option<Vec<(u64, u16, u64)>> {
    use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
    // The jbe just before `skip`: its target is the spill block.
    let mut dec = Decoder::with_ip(64, code.get(..skip)?, entry, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut target = None;
    while dec.can_decode() {
        dec.decode_out(&mut insn);
        if insn.mnemonic() == Mnemonic::Jbe {
            target = Some(insn.near_branch_target());
        }
    }
    let at = usize::try_from(target?.checked_sub(entry)?).ok()?;
    let block = code.get(at..)?;
    let mut dec = Decoder::with_ip(
        64,
        &block[..block.len().min(512)],
        entry + at as u64,
        DecoderOptions::NONE,
    );
    let mut out = vec![];
    for _ in 0..64 {
        if !dec.can_decode() {
            return None;
        }
        dec.decode_out(&mut insn);
        if insn.mnemonic() == Mnemonic::Call {
            return Some(out);
        }
        let to_stack = insn.op_count() == 2
            && insn.op0_kind() == OpKind::Memory
            && insn.memory_base() == Register::RSP
            && insn.memory_index() == Register::None
            && insn.op1_kind() == OpKind::Register;
        if !to_stack {
            return None; // not the spill block we know
        }
        let disp = insn.memory_displacement64();
        let (dwarf, reg_size) = reg_by_name(&format!("{:?}", insn.op1_register()))?;
        let size = match insn.mnemonic() {
            Mnemonic::Movss => 4,
            Mnemonic::Movsd | Mnemonic::Movq => 8,
            _ => reg_size,
        };
        out.push((disp.checked_sub(8)?, dwarf, size));
    }
    None
}

/// DWARF number and size in bytes of an x86-64 register by its name
/// (`RAX`, `EBX`, `R8D`, `SIL`, `XMM3`, as iced-x86 prints them).
fn reg_by_name(name: &str) -> Option<(u16, u64)> {
    if let Some(n) = name.strip_prefix("XMM") {
        return Some((17 + n.parse::<u16>().ok()?, 16));
    }
    if let Some(rest) = name.strip_prefix('R') {
        // R8..R15 with an optional D/W/L suffix.
        let (num, size) = match rest.char_indices().find(|c| !c.1.is_ascii_digit()) {
            None => (rest, 8),
            Some((i, 'D')) => (&rest[..i], 4),
            Some((i, 'W')) => (&rest[..i], 2),
            Some((i, 'L')) => (&rest[..i], 1),
            Some(_) => ("", 8),
        };
        if let Ok(n) = num.parse::<u16>() {
            return (8..=15).contains(&n).then_some((n, size));
        }
    }
    const LEGACY: [(&str, u16); 8] = [
        ("AX", 0),
        ("DX", 1),
        ("CX", 2),
        ("BX", 3),
        ("SI", 4),
        ("DI", 5),
        ("BP", 6),
        ("SP", 7),
    ];
    for (base, n) in LEGACY {
        let low = format!("{}L", &base[..1]);
        let low2 = format!("{base}L");
        let size = if name == format!("R{base}") {
            8
        } else if name == format!("E{base}") {
            4
        } else if name == base {
            2
        } else if name == low && n < 4 || name == low2 && n >= 4 {
            1
        } else {
            continue;
        };
        return Some((n, size));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frame() {
        let code = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x93, 0x01, 0, 0, 0x55];
        assert_eq!(after_stack_check(&code), Some(10));
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55];
        assert_eq!(after_stack_check(&code), Some(6));
    }

    #[test]
    fn large_frame() {
        let code = [
            0x4c, 0x8d, 0x64, 0x24, 0xc0, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x2f, 0x03, 0, 0,
            0x55,
        ];
        assert_eq!(after_stack_check(&code), Some(15));
    }

    #[test]
    fn register_names() {
        assert_eq!(reg_by_name("RAX"), Some((0, 8)));
        assert_eq!(reg_by_name("EBX"), Some((3, 4)));
        assert_eq!(reg_by_name("CX"), Some((2, 2)));
        assert_eq!(reg_by_name("AL"), Some((0, 1)));
        assert_eq!(reg_by_name("SIL"), Some((4, 1)));
        assert_eq!(reg_by_name("R9"), Some((9, 8)));
        assert_eq!(reg_by_name("R11D"), Some((11, 4)));
        assert_eq!(reg_by_name("R8L"), Some((8, 1)));
        assert_eq!(reg_by_name("XMM14"), Some((31, 16)));
        assert_eq!(reg_by_name("RIP"), None);
    }

    #[test]
    fn leaf_without_check() {
        assert_eq!(after_stack_check(&[0x48, 0x01, 0xd0]), None);
        assert_eq!(after_stack_check(&[]), None);
        // cmp r12 without the lea is not Go's check
        assert_eq!(
            after_stack_check(&[0x4d, 0x3b, 0x66, 0x10, 0x76, 0x00]),
            None
        );
    }
}

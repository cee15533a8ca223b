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

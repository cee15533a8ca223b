//! Probe's eBPF side: one uprobe program, `probe_entry`, serves every probe.
//!
//! The attach cookie is the probe's index into `PROBES`; the program reads
//! the Go register-ABI registers, the goroutine id through `g` (R14), a
//! bounded window of the goroutine stack and whatever the probe's capture ops
//! ask for, and submits one [`Event`] to the `EVENTS` ring buffer. It never
//! writes to the target and never blocks: failures are recorded in the event
//! or counted in `STATS`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated as gen},
    macros::{map, uprobe},
    maps::{Array, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use probe_common::*;

#[map]
static PROBES: Array<ProbeParams> = Array::with_max_entries(MAX_PROBES, 0);

#[map]
static STATS: PerCpuArray<ProbeStats> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

#[uprobe]
pub fn probe_entry(ctx: ProbeContext) -> u32 {
    match try_probe_entry(&ctx) {
        Ok(()) => 0,
        Err(()) => 0,
    }
}

/// Reads `len` bytes of target memory at `src` into `dst`; returns the
/// helper's result (0 or a negative errno).
#[inline(always)]
unsafe fn read_user(dst: *mut u8, len: u32, src: u64) -> i64 {
    gen::bpf_probe_read_user(dst as *mut _, len, src as *const _)
}

#[inline(always)]
unsafe fn read_user_u64(src: u64) -> Option<u64> {
    let mut v: u64 = 0;
    if read_user(&mut v as *mut u64 as *mut u8, 8, src) == 0 {
        Some(v)
    } else {
        None
    }
}

#[inline(always)]
fn stats(id: u32) -> Option<&'static mut ProbeStats> {
    // SAFETY: per-CPU value, only this CPU's program touches it meanwhile.
    STATS.get_ptr_mut(id).map(|p| unsafe { &mut *p })
}

fn try_probe_entry(ctx: &ProbeContext) -> Result<(), ()> {
    // SAFETY: the helper only reads the cookie of the current attachment.
    let cookie = unsafe { gen::bpf_get_attach_cookie(ctx.regs as *mut _) };
    let id = (cookie & 0xffff_ffff) as u32;
    let st = stats(id).ok_or(())?;
    st.hits += 1;
    let params = match PROBES.get(id) {
        Some(p) if p.flags & PARAM_ENABLED != 0 => p,
        _ => {
            st.unconfigured += 1;
            return Err(());
        }
    };

    let mut entry = match EVENTS.reserve::<Event>(0) {
        Some(e) => e,
        None => {
            st.ringbuf_drops += 1;
            return Err(());
        }
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved ring-buffer record of size_of::<Event>().
    unsafe {
        fill_event(ctx, id, params, st, ev);
    }
    entry.submit(0);
    Ok(())
}

#[inline(always)]
unsafe fn fill_event(
    ctx: &ProbeContext,
    id: u32,
    params: &ProbeParams,
    st: &mut ProbeStats,
    ev: *mut Event,
) {
    let r = &*ctx.regs;
    let h = &mut (*ev).header;
    let pid_tgid = bpf_get_current_pid_tgid();
    h.magic = EVENT_MAGIC;
    h.probe_id = id;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.ktime_ns = bpf_ktime_get_ns();
    h.flags = 0;
    h._pad = 0;
    // DWARF x86-64 register numbering.
    h.regs = [
        r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip,
    ];
    let sp = r.rsp;
    h.g = 0;
    h.goid = 0;
    let mut stack_hi: u64 = 0;
    if params.flags & PARAM_G_IN_R14 != 0 && r.r14 != 0 {
        let g = r.r14;
        h.g = g;
        if let Some(goid) = read_user_u64(g + params.goid_offset as u64) {
            h.goid = goid;
            h.flags |= EV_GOID;
        }
        if let Some(hi) = read_user_u64(g + params.stack_hi_offset as u64) {
            stack_hi = hi;
        }
    }

    // The goroutine stack from RSP to min(RSP + window, g.stack.hi): reading
    // past stack.hi could fault on an unmapped page and lose the whole copy.
    let mut len = params.stack_bytes as u64;
    if len > STACK_BYTES as u64 {
        len = STACK_BYTES as u64;
    }
    if stack_hi > sp && stack_hi - sp < len {
        len = stack_hi - sp;
    }
    let len = (len as u32) & (STACK_BYTES as u32 * 2 - 1);
    h.stack_len = 0;
    if len > 0 && len <= STACK_BYTES as u32 {
        if read_user((*ev).stack.as_mut_ptr(), len, sp) == 0 {
            h.stack_len = len;
        } else {
            h.flags |= EV_STACK_FAULT;
            st.read_errors += 1;
        }
    }

    let regs = h.regs;
    let n = params.n_ops as usize;
    for i in 0..MAX_OPS {
        let mut info = SlotInfo::default();
        if i < n {
            capture(&params.ops[i], &regs, sp, ev, i, st, &mut info);
        }
        (*ev).slots[i] = info;
    }
}

/// Runs one capture op into slot `i` and returns what it did.
#[inline(always)]
unsafe fn capture(
    op: &CaptureOp,
    regs: &[u64; NUM_REGS],
    sp: u64,
    ev: *mut Event,
    i: usize,
    st: &mut ProbeStats,
    info: &mut SlotInfo,
) {
    let (addr, count) = match (source(&op.addr, regs, sp, ev, i), source(&op.len, regs, sp, ev, i)) {
        (Some(a), Some(c)) => (a, c),
        _ => {
            info.got = -14; // EFAULT: the address or length could not be read
            st.read_errors += 1;
            return;
        }
    };
    // Saturate without 128-bit multiplication, which BPF cannot do.
    let want = if count > u32::MAX as u64 {
        u64::MAX
    } else {
        count * op.elem_size as u64
    };
    info.addr = addr;
    info.want = want;
    let mut take = want;
    if take > op.max_bytes as u64 {
        take = op.max_bytes as u64;
    }
    if take > SLOT_BYTES as u64 {
        take = SLOT_BYTES as u64;
    }
    if take == 0 || addr == 0 {
        return;
    }
    let take = (take as u32) & (SLOT_BYTES as u32 * 2 - 1);
    if take == 0 || take > SLOT_BYTES as u32 {
        return;
    }
    let ret = read_user((*ev).data[i & (MAX_OPS - 1)].as_mut_ptr(), take, addr);
    if ret == 0 {
        info.got = take as i32;
    } else {
        info.got = ret as i32;
        st.read_errors += 1;
    }
}

/// Evaluates a [`Source`] at the hit. Slot sources may only name slots of
/// earlier ops (`< current`), which are already filled.
#[inline(always)]
unsafe fn source(
    s: &Source,
    regs: &[u64; NUM_REGS],
    sp: u64,
    ev: *mut Event,
    current: usize,
) -> Option<u64> {
    match s.kind {
        SRC_REG => {
            let i = s.index as usize;
            if i < NUM_REGS {
                Some(regs[i])
            } else {
                None
            }
        }
        SRC_STACK => read_user_u64(sp.wrapping_add(s.offset as i64 as u64)),
        SRC_SLOT => {
            let k = s.index as usize;
            let off = s.offset as usize;
            if k >= current || k >= MAX_OPS || off > SLOT_BYTES - 8 {
                return None;
            }
            let slot = &(*ev).slots[k & (MAX_OPS - 1)];
            if slot.got < 0 || (slot.got as usize) < off + 8 {
                return None;
            }
            let base = (*ev).data[k & (MAX_OPS - 1)].as_ptr();
            let mut v: u64 = 0;
            if gen::bpf_probe_read_kernel(
                &mut v as *mut u64 as *mut _,
                8,
                base.add(off & (SLOT_BYTES - 1)) as *const _,
            ) == 0
            {
                Some(v)
            } else {
                None
            }
        }
        SRC_CONST => Some(s.offset as u32 as u64),
        _ => Some(0),
    }
}

/// Deliberately rejected by the verifier: dereferences a register value as a
/// pointer. Never attached; `probe selftest verifier` loads it to show how
/// Probe reports a verifier rejection.
#[uprobe]
pub fn selftest_verifier_reject(ctx: ProbeContext) -> u32 {
    // SAFETY: it is not; that is the point, and the kernel refuses to load it.
    unsafe {
        let r = &*ctx.regs;
        let p = core::ptr::read_volatile(&r.rax) as *const u64;
        core::ptr::read_volatile(p) as u32
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

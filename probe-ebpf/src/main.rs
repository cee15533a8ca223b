//! Probe's eBPF side: one uprobe program, `probe_entry`, serves every probe.
//!
//! The attach cookie is the probe's index into `PROBES`. At each hit the
//! program records the Go register-ABI registers, the goroutine id through
//! `g` (R14) and a window of the goroutine stack, then runs the probe's
//! capture plan: starting from the parameters' pointer-carrying words (roots)
//! it walks the target's memory depth-first, guided by the type descriptors in
//! `TYPES` and `RTYPES`, appending each block it reads to the event. The walk
//! is a `bpf_loop` over a small explicit work stack, bounded by a byte budget,
//! a depth limit, a step limit and the stack's depth; whatever a bound cuts is
//! flagged in the event. Everything is read at the instant of the hit, so the
//! values are consistent with each other.
//!
//! The program never writes to the target and never blocks: failures are
//! recorded in the event or counted in `STATS`.
#![no_std]
// The bpf target has no compare-and-swap, so `core::sync::atomic` offers no
// `swap`; the intrinsic lowers to BPF's atomic exchange instruction.
#![feature(core_intrinsics)]
// `asm!` on bpf: an empty block as a compiler barrier (see `release`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
#![no_main]

use core::{
    ffi::c_void,
    intrinsics::{atomic_xchg, AtomicOrdering},
    ptr::addr_of_mut,
};

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, generated as gen,
    },
    macros::{map, uprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};
use probe_common::*;

#[map]
static PROBES: Array<ProbeParams> = Array::with_max_entries(MAX_PROBES, 0);

#[map]
static TYPES: Array<TypeInfo> = Array::with_max_entries(MAX_TYPES, 0);

#[map]
static RTYPES: HashMap<u64, RType> = HashMap::with_max_entries(MAX_RTYPES, 0);

#[map]
static STATS: PerCpuArray<ProbeStats> = PerCpuArray::with_max_entries(MAX_PROBES, 0);

/// An event being assembled, in place in its ring (or in the ring's spare
/// slot when the ring has no room).
#[repr(C)]
pub struct Scratch {
    bytes: [u8; SCRATCH_BYTES],
}

/// The event rings (see [`RingCtl`]): `max_entries` is set at load to the
/// number of rings; userspace maps them (`BPF_F_MMAPABLE`) and reads events
/// in place.
///
/// Why not a `BPF_MAP_TYPE_RINGBUF`: its output takes a spin lock with
/// interrupts off and copies the event; measured here that was about 170 ns
/// of a ~450 ns hit, the largest single cost. A ring per CPU, written in
/// place, needs neither.
#[map]
static RINGS: Array<EventRing> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Rings the reader's bell: one record, with a wakeup, when an event ring
/// passes half full. Otherwise the reader drains on a short timer.
#[map]
static DOORBELL: RingBuf = RingBuf::with_byte_size(DOORBELL_BYTES, 0);

const W_READ: u32 = 0;
const W_SCAN: u32 = 1;
const W_ROOT: u32 = 2;

/// One pending piece of work.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Work {
    /// READ: where to read.
    addr: u64,
    /// READ: elements to read. SCAN: elements in the chunk.
    count: u32,
    /// Type id of one element.
    tid: u32,
    /// Pointer hops from the parameter.
    depth: u32,
    /// `W_*`.
    kind: u32,
    /// SCAN: data offset of the chunk's first byte. ROOT: root index.
    chunk_off: u32,
    /// SCAN cursor.
    elem: u32,
    desc: u32,
    /// READ: bytes the value has in full.
    want: u32,
    /// SCAN cursor: repetition of the descriptor.
    rep: u32,
    _pad: u32,
}

#[repr(C)]
pub struct WorkStack {
    len: u32,
    _pad: u32,
    /// See [`launder`].
    spill: [u32; 4],
    /// The head of `g`, read here rather than into the event: this memory
    /// is touched at every hit and stays in cache, while the event's ring
    /// memory is cold (the reader on another CPU last held it), and loading
    /// bytes that a helper just copied into a cold line waits for the line
    /// (perf put ~25 ns of samples per hit on the goid load).
    ghead: [u64; G_HEAD_BYTES as usize / 8],
    items: [Work; WORK_DEPTH],
}

#[map]
static WORK: PerCpuArray<WorkStack> = PerCpuArray::with_max_entries(1, 0);

/// Entry times of calls in flight, for `--returns` (LRU: a frame abandoned
/// by a panic is eventually evicted, never leaked).
#[map]
static ENTRIES: LruHashMap<EntryKey, u64> = LruHashMap::with_max_entries(65536, 0);

/// Token buckets for `--rate`.
#[map]
static RATE: Array<RateState> = Array::with_max_entries(MAX_PROBES, 0);

/// Processes traced when a probe has `PARAM_PID_FILTER` (key: tgid).
#[map]
static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(MAX_PIDS, 0);

/// Index 0: suspension and the number of rings (see [`Control`]).
#[map]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

const HDR: usize = core::mem::size_of::<EventHeader>();
/// `bpf_ringbuf_output` flag (include/uapi/linux/bpf.h).
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Map flag: userspace may mmap the map (include/uapi/linux/bpf.h).
const BPF_F_MMAPABLE: u32 = 1 << 10;
const DATA_MASK: u32 = (DATA_BYTES as u32) - 1;

/// State shared with the `bpf_loop` callback (lives on this program's stack).
#[repr(C)]
struct LoopCtx {
    id: u32,
    /// Bytes of data used so far.
    pos: u32,
    flags: u32,
    read_errors: u32,
    steps: u32,
    /// Data bytes the current root's walk may use: each root gets an equal
    /// share of what is left when it starts, so one large argument cannot
    /// starve the others.
    root_limit: u32,
    /// The ring the event is assembled in, and the event's offset in its
    /// data (for the `bpf_loop` callback, which looks both up again).
    ring: u32,
    off: u32,
    sp: u64,
}

#[uprobe]
pub fn probe_entry(ctx: ProbeContext) -> u32 {
    match try_probe_entry(&ctx) {
        Ok(()) => 0,
        Err(()) => 0,
    }
}

/// Reads `len` bytes of target memory at `src` into `dst`; 0 or -errno.
#[inline(always)]
unsafe fn read_user(dst: *mut u8, len: u32, src: u64) -> i64 {
    gen::bpf_probe_read_user(dst as *mut c_void, len, src as *const c_void)
}

/// `len`, which the caller has checked is in `1..=max` (`max` a power of
/// two), in a form every verifier can bound: the kernel's own `var &= const`
/// idiom on `len - 1`, in an `asm!` block so that LLVM, which knows the mask
/// changes nothing, cannot drop it. LLVM checks `len > 0 && len <= max` as
/// one compare of `len - 1`; older verifiers (Linux 6.1's among them) do not
/// carry a bound learnt on `len - 1` over to `len`, and reject the read
/// ("R2 min value is negative").
#[inline(always)]
fn verifier_size(len: u32, max: u32) -> u32 {
    let mut v = (len as u64).wrapping_sub(1);
    // SAFETY: one ALU instruction on a register; no memory is touched.
    unsafe {
        core::arch::asm!("{0} &= {1}", inout(reg) v, in(reg) (max as u64 - 1), options(pure, nomem, nostack));
    }
    v as u32 + 1
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
fn stats(id: u32) -> Option<*mut ProbeStats> {
    STATS.get_ptr_mut(id)
}

fn try_probe_entry(ctx: &ProbeContext) -> Result<(), ()> {
    // SAFETY: the helper only reads the cookie of the current attachment.
    let cookie = unsafe { gen::bpf_get_attach_cookie(ctx.regs as *mut c_void) };
    let id = (cookie & 0xffff_ffff) as u32;
    let st = stats(id).ok_or(())?;
    // SAFETY: per-CPU value of this probe; only this CPU's program touches it.
    let st = unsafe { &mut *st };
    let params = PROBES.get(id);
    if let Some(p) = params {
        // Other processes running the same file are not this session's
        // business: not even counted as hits.
        // SAFETY: plain map lookup of a u8.
        if p.flags & PARAM_PID_FILTER != 0
            && unsafe { PIDS.get(&((bpf_get_current_pid_tgid() >> 32) as u32)) }.is_none()
        {
            return Err(());
        }
    }
    st.hits += 1;
    let params = match params {
        Some(p) if p.flags & PARAM_ENABLED != 0 => p,
        _ => {
            st.unconfigured += 1;
            return Err(());
        }
    };
    let control = CONTROL.get(0).ok_or(())?;
    if control.suspended != 0 {
        st.suspended += 1;
        return Err(());
    }
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let n = control.rings;
    let idx = if cpu < n || n == 0 { cpu } else { cpu % n };
    let ring = RINGS.get_ptr_mut(idx).ok_or(())?;
    // SAFETY: `busy` is a u64 of the ring's map value, shared with other
    // CPUs only through atomics.
    let busy = unsafe { addr_of_mut!((*ring).ctl.busy) };
    if unsafe { xchg(busy, 1) } != 0 {
        // Another hit is writing this ring (it preempted us, or we share
        // the ring with another CPU): never wait in the target's thread.
        st.ringbuf_drops += 1;
        return Err(());
    }
    let r = if params.flags & PARAM_LEAN != 0 {
        capture_lean(ctx, id, params, st, ring)
    } else {
        capture(ctx, id, params, st, ring, idx)
    };
    // SAFETY: as above.
    unsafe { release(busy, 0) };
    r
}

/// Atomic exchange, a full barrier.
#[inline(always)]
unsafe fn xchg(p: *mut u64, v: u64) -> u64 {
    atomic_xchg::<u64, { AtomicOrdering::SeqCst }>(p, v)
}

/// A store-release on x86-64 (the only architecture this program reads
/// registers for): x86 keeps stores in program order (TSO; the kernel's own
/// `smp_store_release` is a compiler barrier and a `mov` there), so a
/// compiler barrier and a plain store suffice. The bpf target has a
/// store-release instruction only from `-mcpu=v4`, which LLVM cannot select
/// at our CPU version, and cannot select a compiler fence either.
///
/// Not an exchange: a locked instruction waits for the store buffer to
/// drain, and the buffer holds the event just written into cold ring memory
/// (perf put ~30 ns of samples on each exchange). The return to user mode
/// drains it too, so the time per call did not measurably change (A/B
/// within this machine's noise); what remains is that nothing here needs a
/// full barrier.
#[inline(always)]
unsafe fn release(p: *mut u64, v: u64) {
    // An empty asm block may touch any memory, so no store moves across it
    // (LLVM's bpf backend cannot select a compiler fence).
    core::arch::asm!("", options(nostack, preserves_flags));
    core::ptr::write_volatile(p, v);
}

/// Captures one hit into ring `idx` (whose `busy` flag we hold).
#[inline(always)]
fn capture(
    ctx: &ProbeContext,
    id: u32,
    params: &ProbeParams,
    st: &mut ProbeStats,
    ring: *mut EventRing,
    idx: u32,
) -> Result<(), ()> {
    let (head, tail) = positions(ring);
    // Room for the largest event, so it can be assembled in place before
    // its size is known.
    let room = has_room(head, tail);
    let off = if room {
        head_offset(head)
    } else {
        0
    };
    // SAFETY: map value of ring `idx`; `slot` bounds the offset.
    let sc = unsafe { slot(ring, off) }.ok_or(())?;
    let ws = WORK.get_ptr_mut(0).ok_or(())?;
    // SAFETY: the event slot, large enough for the header (checked at compile time).
    let (hdr, sp, hi) = unsafe { fill_header(ctx, id, params, sc, ws) };
    // SAFETY: the header's registers were just written.
    if params.n_filters > 0 && !unsafe { filters_pass(params, sc, sp) } {
        st.filtered += 1;
        return Err(());
    }
    if params.rate_per_sec != 0 && !take_token(id, params.rate_per_sec) {
        st.rate_limited += 1;
        return Err(());
    }
    // SAFETY: the header was just written.
    let (goid, frame, ktime) = unsafe { ((*hdr).goid, (*hdr).frame, (*hdr).ktime_ns) };
    if params.flags & PARAM_RECORD_ENTRY != 0 && goid != 0 {
        let key = EntryKey {
            probe: id,
            _pad: 0,
            goid,
            frame,
        };
        let _ = ENTRIES.insert(&key, &ktime, 0);
    }
    if params.flags & PARAM_RETURN != 0 {
        let key = EntryKey {
            probe: params.pair_id,
            _pad: 0,
            goid,
            frame,
        };
        // SAFETY: plain map lookup of a u64.
        let entry = unsafe { ENTRIES.get(&key) }.copied();
        let _ = ENTRIES.remove(&key);
        match entry {
            // SAFETY: header written above.
            Some(t) => unsafe { (*hdr).entry_ktime = t },
            None => {
                // The call began before we attached, or its entry was not
                // captured (rate limit, condition): nothing to pair it with.
                st.unpaired += 1;
                return Err(());
            }
        }
    }
    if !room {
        // Dropped, after the condition and the entry/return bookkeeping
        // (a return still pairs with an entry that was dropped), before the
        // capture: a reader that falls behind must not cost the target a
        // walk whose event nobody will see.
        st.ringbuf_drops += 1;
        return Ok(());
    }

    // Field by field: a struct literal's zeroes become a `memset` call.
    let mut lc_mem = core::mem::MaybeUninit::<LoopCtx>::uninit();
    // SAFETY: every field is written before the reference is made; it is
    // used in place (a move would bring the memset back).
    let lc = unsafe {
        let p = lc_mem.as_mut_ptr();
        store(addr_of_mut!((*p).id), id);
        store(addr_of_mut!((*p).pos), 0);
        store(addr_of_mut!((*p).flags), 0);
        store(addr_of_mut!((*p).read_errors), 0);
        store(addr_of_mut!((*p).steps), 0);
        store(addr_of_mut!((*p).root_limit), 0);
        store(addr_of_mut!((*p).ring), idx);
        store(addr_of_mut!((*p).off), off);
        store(addr_of_mut!((*p).sp), sp);
        &mut *p
    };
    // SAFETY: scratch and work stack are this CPU's; bounds checked inside.
    unsafe {
        if params.stack_frames > 0 {
            walk_frames(ctx, params, lc, sc, hdr);
        }
        copy_stack(params, lc, sc, hi);
        walk(params, ws, lc, sc);
        if (*ws).len > 0 {
            lc.flags |= EV_STEPS;
        }
        (*hdr).flags |= lc.flags;
        (*hdr).data_len = lc.pos;
        (*hdr).read_errors = lc.read_errors;
        (*hdr).steps = lc.steps;
    }
    publish(ring, head, tail, lc, st)
}

/// The ring's `head` and `tail`. Only the holder of `busy` writes `head`;
/// `tail` is the reader's, read once.
#[inline(always)]
fn positions(ring: *mut EventRing) -> (u64, u64) {
    // SAFETY: fields of the ring's map value.
    unsafe {
        (
            (*ring).ctl.head,
            core::ptr::read_volatile(addr_of_mut!((*ring).ctl.tail)),
        )
    }
}

/// Is there room at `head` for the largest event (so one can be assembled
/// in place before its size is known)?
#[inline(always)]
fn has_room(head: u64, tail: u64) -> bool {
    head.wrapping_sub(tail) <= (RING_BYTES - SCRATCH_BYTES) as u64
}

/// The offset in a ring's data of the event at position `head`.
#[inline(always)]
fn head_offset(head: u64) -> u32 {
    RING_DATA_OFF as u32 + (head as u32 & (RING_BYTES as u32 - 1))
}

/// Counts what the hit's capture hit (read errors, limits) and publishes
/// its event, assembled at `head` with `lc.pos` bytes of chunks.
#[inline(always)]
fn publish(
    ring: *mut EventRing,
    head: u64,
    tail: u64,
    lc: &LoopCtx,
    st: &mut ProbeStats,
) -> Result<(), ()> {
    st.read_errors += lc.read_errors as u64;
    if lc.flags & (EV_BUDGET | EV_DEPTH | EV_STEPS) != 0 {
        st.truncated += 1;
    }
    if HDR as u32 + lc.pos > SCRATCH_BYTES as u32 {
        return Err(());
    }
    let head = head + record_len(lc.pos) as u64;
    // SAFETY: the ring's map value; the release orders the event's bytes
    // before the new head.
    unsafe {
        release(addr_of_mut!((*ring).ctl.head), head);
        ring_doorbell(ring, head.wrapping_sub(tail));
    }
    Ok(())
}

/// Captures one hit of a [`ProbeParams::lean`] probe into `ring` (whose
/// `busy` flag we hold): the event [`capture`] would write for it (same
/// header, the stack window, then each string's bytes as a chunk, under the
/// same budget rules), without what only other probes need: no condition,
/// rate or pairing checks, no work stack, no type table lookups, no state
/// laundered for the verifier, and the header written in one pass with
/// every field known, instead of zeroed and patched: ~21-25 ns less BPF
/// run time per hit than the general path for `main.work(n int, key
/// string)` of testdata/hot (`cargo xtask bench --only bpf-time`: both
/// attached to one run, paired samples of `kernel.bpf_stats_enabled`).
#[inline(always)]
fn capture_lean(
    ctx: &ProbeContext,
    id: u32,
    params: &ProbeParams,
    st: &mut ProbeStats,
    ring: *mut EventRing,
) -> Result<(), ()> {
    let (head, tail) = positions(ring);
    if !has_room(head, tail) {
        // No condition to evaluate first: a drop is counted and costs
        // nothing more.
        st.ringbuf_drops += 1;
        return Ok(());
    }
    let off = head_offset(head);
    // SAFETY: map value of the ring; `slot` bounds the offset.
    let sc = unsafe { slot(ring, off) }.ok_or(())?;
    let ws = WORK.get_ptr_mut(0).ok_or(())?;
    // SAFETY: the trapped task's registers; this CPU's work-stack value.
    let r = unsafe { &*ctx.regs };
    let ktime = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();
    let (sp, rip) = (r.rsp, r.rip);
    let mut flags = 0u32;
    let (mut goid, mut hi, mut frame) = (0u64, 0u64, 0u64);
    // g's head: one read for goid and stack.hi (`lean` checked both offsets
    // are aligned and inside it).
    // SAFETY: a checked read into this CPU's buffer.
    unsafe {
        let tmp = addr_of_mut!((*ws).ghead);
        if r.r14 != 0 && read_user(tmp as *mut u8, G_HEAD_BYTES, r.r14) == 0 {
            let words = G_HEAD_BYTES as usize / 8;
            goid = (*tmp)[(params.goid_offset as usize / 8) & (words - 1)];
            hi = (*tmp)[(params.stack_hi_offset as usize / 8) & (words - 1)];
            frame = hi.wrapping_sub(sp);
            flags |= EV_GOID;
        }
    }
    let mut lc = LoopCtx {
        id,
        pos: 0,
        flags: 0,
        read_errors: 0,
        steps: 0,
        root_limit: 0,
        ring: 0,
        off,
        sp,
    };
    // SAFETY: the event slot (room checked above) and its data area, each
    // chunk bounded inside `emit_chunk`.
    unsafe {
        copy_stack(params, &mut lc, sc, hi);
        let n = params.n_roots;
        for i in 0..LEAN_ROOTS {
            if i >= n {
                break;
            }
            let root = &params.roots[i as usize];
            lean_string(
                n - i,
                params,
                &mut lc,
                sc,
                reg_value(r, root.w0.reg),
                reg_value(r, root.w1.reg),
                rip,
            );
        }
        flags |= lc.flags;
        let h = (*sc).bytes.as_mut_ptr() as *mut EventHeader;
        (*h).magic = EVENT_MAGIC;
        (*h).probe_id = id;
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).ktime_ns = ktime;
        (*h).goid = goid;
        (*h).g = r.r14;
        (*h).flags = flags;
        (*h).data_len = lc.pos;
        (*h).regs = [
            r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, sp, r.r8, r.r9, r.r10, r.r11, r.r12,
            r.r13, r.r14, r.r15, rip,
        ];
        (*h).read_errors = lc.read_errors;
        store(addr_of_mut!((*h).steps), 0);
        store(addr_of_mut!((*h).kind), EVK_ENTRY);
        store(addr_of_mut!((*h).nstack), 0);
        (*h).frame = frame;
        store(addr_of_mut!((*h).entry_ktime), 0);
    }
    publish(ring, head, tail, &lc, st)
}

/// The lean path's string root with `left` roots still to capture (this
/// one included), its words `(ptr, len)`: the chunk `root_step` and
/// `read_step` would append for it (a string's type is plain bytes, size
/// 1, no descriptors), or none.
#[inline(always)]
unsafe fn lean_string(
    left: u32,
    params: &ProbeParams,
    lc: &mut LoopCtx,
    sc: *mut Scratch,
    ptr: u64,
    len: u64,
    rip: u64,
) {
    share_budget(params, lc, left);
    if ptr == 0 || len == 0 {
        return;
    }
    // The string's bytes are one pointer hop from the parameter.
    if params.max_depth < 1 {
        lc.flags |= EV_DEPTH;
        return;
    }
    let count = if len > params.max_string as u64 {
        params.max_string as u64
    } else {
        len
    };
    if count == 0 {
        return;
    }
    if in_rodata(params, rip, ptr, count) {
        // A literal: userspace reads it from the binary.
        return;
    }
    let Some(take) = budget_take(params, lc, count) else {
        return;
    };
    if take < count {
        lc.flags |= EV_BUDGET;
    }
    let full = if len > u32::MAX as u64 {
        u32::MAX
    } else {
        len as u32
    };
    emit_chunk(lc, sc, ptr, take as u32, full);
}

/// Register `dwarf` (DWARF x86-64 numbering, as in the header) of `r`.
#[inline(always)]
fn reg_value(r: &aya_ebpf::bindings::pt_regs, dwarf: u8) -> u64 {
    match dwarf {
        0 => r.rax,
        1 => r.rdx,
        2 => r.rcx,
        3 => r.rbx,
        4 => r.rsi,
        5 => r.rdi,
        6 => r.rbp,
        7 => r.rsp,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        15 => r.r15,
        16 => r.rip,
        _ => 0,
    }
}

/// The event slot at `off` in a ring's data, if in bounds (restated here,
/// where the verifier can see it).
#[inline(always)]
unsafe fn slot(ring: *mut EventRing, off: u32) -> Option<*mut Scratch> {
    if off as usize > RING_DATA_OFF + RING_BYTES - 1 {
        return None;
    }
    Some((*ring).data.as_mut_ptr().add(off as usize) as *mut Scratch)
}

/// Wakes the reader once when the ring passes half full with `used` bytes.
///
/// No wakeup per event: waking the reader from inside the uprobe costs
/// microseconds (an irq_work, a self-IPI under virtualisation) on every hit.
/// Userspace drains on a short timer instead; only a burst that fills half
/// the ring before the timer rings the doorbell. Ringing it on every event
/// past that mark would turn a slow reader into microseconds of extra cost
/// per hit in the target (a reader that cannot keep up must cost the target
/// nothing: the ring fills and drops are counted).
#[inline(always)]
unsafe fn ring_doorbell(ring: *mut EventRing, used: u64) {
    let over = (*ring).ctl.over;
    if used > (RING_BYTES / 2) as u64 {
        if over == 0 {
            (*ring).ctl.over = 1;
            let mut bell: u64 = 0;
            gen::bpf_ringbuf_output(
                &DOORBELL as *const RingBuf as *mut c_void,
                &mut bell as *mut u64 as *mut c_void,
                8,
                BPF_RB_FORCE_WAKEUP,
            );
        }
    } else if over != 0 && used < (RING_BYTES / 4) as u64 {
        (*ring).ctl.over = 0;
    }
}

/// Writes the header; returns it, the stack pointer and `g.stack.hi`.
#[inline(always)]
unsafe fn fill_header(
    ctx: &ProbeContext,
    id: u32,
    params: &ProbeParams,
    sc: *mut Scratch,
    ws: *mut WorkStack,
) -> (*mut EventHeader, u64, u64) {
    let r = &*ctx.regs;
    let h = (*sc).bytes.as_mut_ptr() as *mut EventHeader;
    let pid_tgid = bpf_get_current_pid_tgid();
    (*h).magic = EVENT_MAGIC;
    (*h).probe_id = id;
    (*h).pid = (pid_tgid >> 32) as u32;
    (*h).tid = pid_tgid as u32;
    (*h).ktime_ns = bpf_ktime_get_ns();
    store(addr_of_mut!((*h).flags), 0);
    store(addr_of_mut!((*h).data_len), 0);
    store(addr_of_mut!((*h).read_errors), 0);
    store(addr_of_mut!((*h).steps), 0);
    // DWARF x86-64 register numbering.
    (*h).regs = [
        r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip,
    ];
    store(addr_of_mut!((*h).g), 0);
    store(addr_of_mut!((*h).goid), 0);
    (*h).kind = if params.flags & PARAM_RETURN != 0 {
        EVK_RETURN
    } else {
        EVK_ENTRY
    };
    store(addr_of_mut!((*h).nstack), 0);
    store(addr_of_mut!((*h).frame), 0);
    store(addr_of_mut!((*h).entry_ktime), 0);
    let mut hi = 0;
    if params.flags & PARAM_G_IN_R14 != 0 && r.r14 != 0 {
        (*h).g = r.r14;
        // One read of g's head covers both fields (each helper call costs
        // tens of nanoseconds here). Both are 8-byte fields, so aligned.
        let (go, so) = (params.goid_offset, params.stack_hi_offset);
        let n = if go > so { go } else { so } + 8;
        let tmp = addr_of_mut!((*ws).ghead);
        if n <= G_HEAD_BYTES
            && (go | so) & 7 == 0
            && read_user(tmp as *mut u8, G_HEAD_BYTES, r.r14) == 0
        {
            let words = G_HEAD_BYTES as usize / 8;
            let goid = (*tmp)[(go as usize / 8) & (words - 1)];
            let v = (*tmp)[(so as usize / 8) & (words - 1)];
            (*h).goid = goid;
            (*h).flags |= EV_GOID;
            hi = v;
            (*h).frame = v.wrapping_sub(r.rsp);
        } else {
            if let Some(goid) = read_user_u64(r.r14 + go as u64) {
                (*h).goid = goid;
                (*h).flags |= EV_GOID;
            }
            if let Some(v) = read_user_u64(r.r14 + so as u64) {
                hi = v;
                (*h).frame = v.wrapping_sub(r.rsp);
            }
        }
    }
    (h, r.rsp, hi)
}

/// Do all kernel-side condition terms hold?
#[inline(always)]
unsafe fn filters_pass(params: &ProbeParams, sc: *mut Scratch, sp: u64) -> bool {
    for i in 0..FILTER_OPS {
        if i as u32 >= params.n_filters {
            break;
        }
        let f = &params.filters[i];
        let w = source(&f.src, sc, sp);
        let ok = match f.kind {
            filter::INT => {
                let bits = (f.size as u32).min(8) * 8;
                let v = if bits == 0 || bits >= 64 {
                    w as i64
                } else {
                    ((w << (64 - bits)) as i64) >> (64 - bits)
                };
                cmp_ord(f.op, v.cmp(&(f.value as i64)))
            }
            filter::UINT => {
                let bits = (f.size as u32).min(8) * 8;
                let v = if bits == 0 || bits >= 64 {
                    w
                } else {
                    w & ((1u64 << bits) - 1)
                };
                cmp_ord(f.op, v.cmp(&f.value))
            }
            filter::STR => {
                let len = source(&f.len_src, sc, sp);
                let mut eq = len == f.value;
                if eq && len > 0 {
                    // Two words, not `[0u8; 16]`, which becomes a `memset` call.
                    let mut words = [0u64; 2];
                    let buf = words.as_mut_ptr() as *mut u8;
                    let n = (len as u32) & 31;
                    if n > 16 || read_user(buf, verifier_size(n.max(1), 16), w) != 0 {
                        eq = false;
                    } else {
                        for j in 0..16 {
                            if (j as u64) < len && *buf.add(j) != f.bytes[j] {
                                eq = false;
                            }
                        }
                    }
                }
                if f.op == filter::NE {
                    !eq
                } else {
                    eq
                }
            }
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[inline(always)]
fn cmp_ord(op: u8, o: core::cmp::Ordering) -> bool {
    use core::cmp::Ordering::*;
    match op {
        filter::EQ => o == Equal,
        filter::NE => o != Equal,
        filter::LT => o == Less,
        filter::LE => o != Greater,
        filter::GT => o == Greater,
        filter::GE => o != Less,
        _ => true,
    }
}

/// Takes one token from probe `id`'s bucket (refilled at `rate` per second,
/// holding at most one second's worth). Concurrent hits on several CPUs may
/// race on the bucket; the error is at most a token or two.
#[inline(always)]
fn take_token(id: u32, rate: u32) -> bool {
    let Some(b) = RATE.get_ptr_mut(id) else {
        return true;
    };
    // SAFETY: map value of this probe.
    let b = unsafe { &mut *b };
    let now = unsafe { bpf_ktime_get_ns() };
    let mut elapsed = now.wrapping_sub(b.last_ns);
    if elapsed > 1_000_000_000 {
        elapsed = 1_000_000_000;
    }
    b.last_ns = now;
    let cap = rate as u64 * 1_000_000_000;
    let mut tokens = b.nanotokens + elapsed * rate as u64;
    if tokens > cap {
        tokens = cap;
    }
    if tokens < 1_000_000_000 {
        b.nanotokens = tokens;
        return false;
    }
    b.nanotokens = tokens - 1_000_000_000;
    true
}

/// Records return addresses by walking frame pointers (Go keeps RBP as a
/// frame pointer on amd64): first the probed PC, then the return address at
/// the CFA - 8, then up the RBP chain.
#[inline(always)]
unsafe fn walk_frames(
    ctx: &ProbeContext,
    params: &ProbeParams,
    lc: &mut LoopCtx,
    sc: *mut Scratch,
    hdr: *mut EventHeader,
) {
    let r = &*ctx.regs;
    let base = (*sc).bytes.as_mut_ptr().add(HDR) as *mut u64;
    let max = if params.stack_frames > MAX_FRAMES {
        MAX_FRAMES
    } else {
        params.stack_frames
    };
    *base = r.rip;
    let mut n: u32 = 1;
    let mut ret = read_user_u64(r.rsp.wrapping_add(params.ret_sp_off as u64)).unwrap_or(0);
    let mut fp = if params.flags & PARAM_FRAME_SET != 0 {
        read_user_u64(r.rbp).unwrap_or(0)
    } else {
        r.rbp
    };
    for i in 1..MAX_FRAMES {
        if i >= max || ret == 0 {
            break;
        }
        *base.add((i & (MAX_FRAMES - 1)) as usize) = ret;
        n = i + 1;
        if fp == 0 {
            break;
        }
        ret = read_user_u64(fp.wrapping_add(8)).unwrap_or(0);
        fp = read_user_u64(fp).unwrap_or(0);
    }
    (*hdr).nstack = n;
    lc.pos = n * 8;
}

/// The goroutine stack from RSP to min(RSP + window, g.stack.hi), as the
/// first chunk: reading past stack.hi could fault and lose the whole copy.
#[inline(always)]
unsafe fn copy_stack(params: &ProbeParams, lc: &mut LoopCtx, sc: *mut Scratch, hi: u64) {
    let sp = lc.sp;
    let mut len = params.stack_bytes as u64;
    if len > STACK_BYTES as u64 {
        len = STACK_BYTES as u64;
    }
    if hi > sp && hi - sp < len {
        len = hi - sp;
    }
    if len == 0 {
        // No window asked for: no empty chunk either.
        return;
    }
    if !emit_chunk(lc, sc, sp, len as u32, len as u32) {
        // Into the header's flags with the rest of the capture's.
        lc.flags |= EV_STACK_FAULT;
    }
}

/// Appends a chunk of `len` bytes read at `addr`. Returns false when the
/// read failed (the chunk is then recorded with length 0).
#[inline(always)]
unsafe fn emit_chunk(lc: &mut LoopCtx, sc: *mut Scratch, addr: u64, len: u32, want: u32) -> bool {
    let pos = lc.pos & DATA_MASK;
    let base = (*sc).bytes.as_mut_ptr().add(HDR + pos as usize);
    let ch = base as *mut Chunk;
    (*ch).addr = addr;
    (*ch).want = want;
    let len = len & (MAX_CHUNK as u32 * 2 - 1);
    let mut ok = true;
    let mut got = 0u32;
    if len > 0 && len <= MAX_CHUNK as u32 {
        if read_user(base.add(16), verifier_size(len, MAX_CHUNK as u32), addr) == 0 {
            got = len;
        } else {
            ok = false;
            lc.read_errors += 1;
        }
    }
    (*ch).len = got;
    lc.pos = lc.pos + 16 + ((got + 7) & !7);
    ok
}

#[inline(always)]
unsafe fn push(ws: *mut WorkStack, w: Work, lc: &mut LoopCtx) {
    let n = (*ws).len;
    if n >= WORK_DEPTH as u32 {
        lc.flags |= EV_STEPS;
        return;
    }
    let d = &mut (*ws).items[(n as usize) & (WORK_DEPTH - 1)] as *mut Work;
    store(addr_of_mut!((*d).addr), w.addr);
    store(addr_of_mut!((*d).count), w.count);
    store(addr_of_mut!((*d).tid), w.tid);
    store(addr_of_mut!((*d).depth), w.depth);
    store(addr_of_mut!((*d).kind), w.kind);
    store(addr_of_mut!((*d).chunk_off), w.chunk_off);
    store(addr_of_mut!((*d).elem), w.elem);
    store(addr_of_mut!((*d).desc), w.desc);
    store(addr_of_mut!((*d).want), w.want);
    store(addr_of_mut!((*d).rep), w.rep);
    (*ws).len = n + 1;
}

/// One store, never merged with its neighbours: adjacent zero stores
/// otherwise become a call to compiler-builtins' `memset`, a byte-at-a-time
/// loop in BPF (a few hundred instructions per hit, measured with
/// `bpftool prog dump xlated`).
#[inline(always)]
unsafe fn store<T>(dst: *mut T, v: T) {
    core::ptr::write_volatile(dst, v);
}

/// Loads the u64 at data offset `off` of the event being built.
#[inline(always)]
unsafe fn data_u64(sc: *mut Scratch, off: u32) -> u64 {
    let p = (*sc).bytes.as_ptr().add(HDR + (off & DATA_MASK) as usize) as *const u64;
    core::ptr::read_unaligned(p)
}

/// The READ that a descriptor of `kind` over words `(w0, w1)` leads to.
#[inline(always)]
unsafe fn child(
    kind: u8,
    w0: u64,
    w1: u64,
    target: u32,
    target2: u32,
    depth: u32,
    params: &ProbeParams,
    lc: &mut LoopCtx,
    sc: *mut Scratch,
) -> Option<Work> {
    let mk = |addr: u64, count: u64, tid: u32, want: u64| Work {
        addr,
        count: count as u32,
        tid,
        depth: depth + 1,
        kind: W_READ,
        chunk_off: 0,
        elem: 0,
        desc: 0,
        want: if want > u32::MAX as u64 {
            u32::MAX
        } else {
            want as u32
        },
        rep: 0,
        _pad: 0,
    };
    let cap = |n: u64, max: u32| if n > max as u64 { max as u64 } else { n };
    if w0 == 0 {
        return None;
    }
    match kind {
        desc::PTR => Some(mk(w0, 1, target, 0)),
        desc::STRING => {
            if w1 == 0 {
                return None;
            }
            Some(mk(w0, cap(w1, params.max_string), TID_BYTES, w1))
        }
        desc::SLICE => {
            if w1 == 0 {
                return None;
            }
            Some(mk(w0, cap(w1, params.max_elems), target, 0))
        }
        desc::EFACE | desc::IFACE => {
            let rtype = if kind == desc::IFACE {
                // Keep the itab's type word in the event: the decoder needs
                // the dynamic type too.
                if lc.pos as u64 + 32 > params.max_bytes as u64 {
                    lc.flags |= EV_BUDGET;
                    return None;
                }
                let off = lc.pos + 16;
                if !emit_chunk(lc, sc, w0 + 8, 8, 8) {
                    return None;
                }
                data_u64(sc, off)
            } else {
                w0
            };
            if w1 == 0 {
                return None;
            }
            // Runtime type descriptors are keyed by their linked address; a
            // PIE is loaded at `rip - static_pc` further.
            let h = (*sc).bytes.as_ptr() as *const EventHeader;
            let bias = (*h).regs[reg::RIP as usize].wrapping_sub(params.static_pc);
            let key = rtype.wrapping_sub(bias);
            let rt = RTYPES.get(&key)?;
            Some(mk(w1, 1, rt.tid, 0))
        }
        desc::ARRAY_POW2 | desc::OLD_BUCKETS => {
            // Old buckets not yet evacuated still hold their entries
            // (runtime/map.go `evacuate`); evacuated ones are marked per
            // slot and the decoder skips them.
            let b = if kind == desc::OLD_BUCKETS {
                desc::old_buckets_log2(w1 as u8, (w1 >> 8) as u8) as u64
            } else {
                w1 & 0xff
            };
            let n = if b > 30 { 1u64 << 30 } else { 1u64 << b };
            Some(mk(w0, cap(n, params.max_elems), target, 0))
        }
        desc::ARRAY_MASK => Some(mk(w0, cap(w1 + 1, params.max_elems), target, 0)),
        desc::SWISS_DIR => {
            if w1 == 0 {
                Some(mk(w0, 1, target, 0))
            } else {
                Some(mk(w0, cap(w1, params.max_elems), target2, 0))
            }
        }
        _ => None,
    }
}

/// Evaluates a root's word source.
#[inline(always)]
unsafe fn source(s: &Source, sc: *mut Scratch, sp: u64) -> u64 {
    match s.kind {
        SRC_REG => {
            let h = (*sc).bytes.as_ptr() as *const EventHeader;
            let i = s.reg as usize;
            if i < NUM_REGS {
                (*h).regs[i]
            } else {
                0
            }
        }
        SRC_STACK => read_user_u64(sp.wrapping_add(s.offset as i64 as u64)).unwrap_or(0),
        SRC_CONST => s.offset as u32 as u64,
        SRC_SP => sp.wrapping_add(s.offset as i64 as u64),
        _ => 0,
    }
}

/// Walks the roots: leading string roots right here, the rest in a
/// `bpf_loop` (skipped when nothing is left: setting one up and calling its
/// callback costs about a hundred nanoseconds per hit here, a third of the
/// whole program for a function whose only pointer argument is a string).
///
/// A string is one read with no pointers to follow, so it needs none of the
/// work stack. What the verifier must not see is one copy of the rest of
/// the program per outcome of these reads (that multiplied its states past
/// the million-instruction limit in an earlier attempt): the walk state is
/// passed through map memory afterwards, which the verifier treats as
/// unknown, so every path reaches the loop in the same state.
#[inline(always)]
unsafe fn walk(params: &ProbeParams, ws: *mut WorkStack, lc: &mut LoopCtx, sc: *mut Scratch) {
    (*ws).len = 0;
    let n = params.n_roots;
    let mut first = 0u32;
    for i in 0..FAST_ROOTS {
        if i >= n || params.roots[i as usize].kind != desc::STRING {
            break;
        }
        if let Some(w) = root_step(i, n - i, params, lc, sc) {
            read_step(w, params, ws, lc, sc);
        }
        first = i + 1;
    }
    if first > 0 {
        launder(ws, lc);
    }
    if first >= n || (*ws).len != 0 {
        // Nothing left for the loop (or a string read queued a scan, which
        // byte strings never do).
        return;
    }
    // One ROOT item: each root's step queues the next root below its own
    // walk, so roots are walked in order with one slot of the work stack.
    push(ws, root_work(first), lc);
    let lcp = lc as *mut LoopCtx as *mut c_void;
    if core::ptr::read_volatile(&WALK_WITH_BPF_LOOP) != 0 {
        gen::bpf_loop(MAX_STEPS, walk_step as *mut c_void, lcp, 0);
    } else {
        // Kernels before 5.17: `bpf_for_each_map_elem` (5.13) over an
        // array of MAX_STEPS entries calls the same step as often; its
        // callback, like bpf_loop's, is verified without unrolling.
        gen::bpf_for_each_map_elem(
            &STEPS as *const Array<u8> as *mut c_void,
            walk_step_each as *mut c_void,
            lcp,
            0,
        );
    }
}

/// 0 where the kernel lacks `bpf_loop` (before 5.17), or where userspace
/// forces the fallback (`PROBE_FORCE_NO_BPF_LOOP=1`): written into
/// `.rodata` before loading, so the verifier sees a constant and checks
/// only the branch that runs (the helper call is then dead code, which the
/// kernel removes before it would look the helper up).
#[no_mangle]
static WALK_WITH_BPF_LOOP: u8 = 1;

/// The fallback walk's loop: one (unused) element per step.
#[map]
static STEPS: Array<u8> = Array::with_max_entries(MAX_STEPS, 0);

/// One step of the walk as a `bpf_for_each_map_elem` callback.
#[inline(never)]
extern "C" fn walk_step_each(
    _map: *mut c_void,
    _key: *mut c_void,
    _value: *mut c_void,
    ctx: *mut c_void,
) -> i64 {
    walk_step(0, ctx)
}

/// String roots read before the loop.
const FAST_ROOTS: u32 = 2;

/// Passes the walk state through this CPU's work-stack map value: values
/// loaded from a map are unknown to the verifier, so the paths through the
/// string reads above converge into one state.
#[inline(always)]
unsafe fn launder(ws: *mut WorkStack, lc: &mut LoopCtx) {
    let m = addr_of_mut!((*ws).spill);
    store(addr_of_mut!((*m)[0]), lc.pos);
    store(addr_of_mut!((*m)[1]), lc.root_limit);
    store(addr_of_mut!((*m)[2]), lc.flags);
    store(addr_of_mut!((*m)[3]), lc.read_errors);
    lc.pos = core::ptr::read_volatile(addr_of_mut!((*m)[0]));
    lc.root_limit = core::ptr::read_volatile(addr_of_mut!((*m)[1]));
    lc.flags = core::ptr::read_volatile(addr_of_mut!((*m)[2]));
    lc.read_errors = core::ptr::read_volatile(addr_of_mut!((*m)[3]));
}

/// The work item for root `i`.
#[inline(always)]
fn root_work(i: u32) -> Work {
    Work {
        addr: 0,
        count: 0,
        tid: 0,
        depth: 0,
        kind: W_ROOT,
        chunk_off: i,
        elem: 0,
        desc: 0,
        want: 0,
        rep: 0,
        _pad: 0,
    }
}

/// ROOT `i` of `left` roots still to walk: gives it its share of the byte
/// budget and returns the READ its words lead to.
#[inline(always)]
unsafe fn root_step(
    i: u32,
    left: u32,
    params: &ProbeParams,
    lc: &mut LoopCtx,
    sc: *mut Scratch,
) -> Option<Work> {
    share_budget(params, lc, left);
    let r = &params.roots[(i as usize) & (MAX_ROOTS - 1)];
    let w0 = source(&r.w0, sc, lc.sp);
    let w1 = source(&r.w1, sc, lc.sp);
    child(r.kind, w0, w1, r.target, 0, 0, params, lc, sc)
}

/// READ: appends the elements of `w` as one chunk, cut to the byte budget,
/// and queues a scan of them when their type holds pointers.
#[inline(always)]
unsafe fn read_step(
    w: Work,
    params: &ProbeParams,
    ws: *mut WorkStack,
    lc: &mut LoopCtx,
    sc: *mut Scratch,
) {
    if w.depth > params.max_depth {
        lc.flags |= EV_DEPTH;
        return;
    }
    let Some(ti) = TYPES.get(w.tid) else { return };
    let size = ti.size as u64;
    if size == 0 || w.count == 0 {
        return;
    }
    let want = w.count as u64 * size;
    let h = (*sc).bytes.as_ptr() as *const EventHeader;
    if ti.n_descs == 0 && in_rodata(params, (*h).regs[reg::RIP as usize], w.addr, want) {
        // Constant data (a string literal, mostly): userspace reads it from
        // the binary. No read, no chunk, none of the byte budget.
        return;
    }
    let Some(take) = budget_take(params, lc, want) else {
        return;
    };
    // Whole values (the common case) and byte strings need no `div`.
    let elems = if take == want {
        w.count as u64
    } else if size == 1 {
        take
    } else {
        take / size
    };
    if elems == 0 {
        lc.flags |= EV_BUDGET;
        return;
    }
    if elems < w.count as u64 {
        lc.flags |= EV_BUDGET;
    }
    let take = elems * size;
    let full = if w.want != 0 { w.want as u64 } else { want };
    let full = if full > u32::MAX as u64 {
        u32::MAX
    } else {
        full as u32
    };
    let data_off = lc.pos + 16;
    if emit_chunk(lc, sc, w.addr, take as u32, full) && ti.n_descs > 0 {
        push(
            ws,
            Work {
                addr: 0,
                count: elems as u32,
                tid: w.tid,
                depth: w.depth,
                kind: W_SCAN,
                chunk_off: data_off,
                elem: 0,
                desc: 0,
                want: 0,
                rep: 0,
                _pad: 0,
            },
            lc,
        );
    }
}

/// Gives the root about to be walked, with `left` roots still to walk (it
/// included), an equal share of what is left of the event's byte budget.
#[inline(always)]
fn share_budget(params: &ProbeParams, lc: &mut LoopCtx, left: u32) {
    let max = if params.max_bytes > DATA_BYTES as u32 {
        DATA_BYTES as u32
    } else {
        params.max_bytes
    };
    if lc.pos < max && left > 0 {
        // A 64-bit `div` is tens of cycles: skip it for the last root.
        let rest = max - lc.pos;
        lc.root_limit = lc.pos + if left == 1 { rest } else { rest / left };
    }
}

/// How many of `want` bytes the next chunk may take: what is left of the
/// event's byte budget (`--max-bytes`, at most `DATA_BYTES`) and of the
/// current root's share, after the chunk's own 16-byte header, at most
/// `MAX_CHUNK`; none (flagged) when the budget is spent.
#[inline(always)]
fn budget_take(params: &ProbeParams, lc: &mut LoopCtx, want: u64) -> Option<u64> {
    let mut left = params.max_bytes as u64;
    if left > DATA_BYTES as u64 {
        left = DATA_BYTES as u64;
    }
    if (lc.root_limit as u64) < left {
        left = lc.root_limit as u64;
    }
    let used = lc.pos as u64 + 16;
    if used >= left {
        lc.flags |= EV_BUDGET;
        return None;
    }
    let mut take = want;
    if take > MAX_CHUNK as u64 {
        take = MAX_CHUNK as u64;
    }
    if take > left - used {
        take = left - used;
    }
    Some(take)
}

/// Do `len` bytes at `addr` lie wholly in the executable's read-only data
/// segment (see `ProbeParams::rodata_start`)? A PIE's segment is `rip -
/// static_pc` further up, as for `RTYPES` keys.
#[inline(always)]
fn in_rodata(params: &ProbeParams, rip: u64, addr: u64, len: u64) -> bool {
    let bias = rip.wrapping_sub(params.static_pc);
    let off = addr.wrapping_sub(bias).wrapping_sub(params.rodata_start);
    off < params.rodata_len && len <= params.rodata_len - off
}

/// One step of the walk (a `bpf_loop` callback): returns 1 to stop. Not
/// exported: the verifier requires callbacks to be static functions.
#[inline(never)]
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the LoopCtx on probe_entry's stack; maps are this CPU's.
    unsafe {
        let lc = &mut *(ctx as *mut LoopCtx);
        let (Some(ws), Some(ring), Some(params)) = (
            WORK.get_ptr_mut(0),
            RINGS.get_ptr_mut(lc.ring),
            PROBES.get(lc.id),
        ) else {
            return 1;
        };
        let Some(sc) = slot(ring, lc.off) else {
            return 1;
        };
        let n = (*ws).len;
        if n == 0 || n > WORK_DEPTH as u32 {
            return 1;
        }
        lc.steps += 1;
        let top = ((n - 1) as usize) & (WORK_DEPTH - 1);
        let w = (*ws).items[top];
        match w.kind {
            W_ROOT => {
                (*ws).len = n - 1;
                let (i, roots) = (w.chunk_off, params.n_roots);
                if i + 1 < roots {
                    push(ws, root_work(i + 1), lc);
                }
                // Roots left, this one included, share what is left of the budget.
                if let Some(c) = root_step(i, roots.saturating_sub(i), params, lc, sc) {
                    push(ws, c, lc);
                }
            }
            W_READ => {
                (*ws).len = n - 1;
                read_step(w, params, ws, lc, sc);
            }
            _ => {
                // W_SCAN: visit descriptor `desc` of element `elem`.
                let Some(ti) = TYPES.get(w.tid) else {
                    (*ws).len = n - 1;
                    return 0;
                };
                let d = &ti.descs[(w.desc as usize) & (MAX_DESCS - 1)];
                let base = w.chunk_off + w.elem * ti.size + w.rep * d.stride;
                let w0 = data_u64(sc, base + d.offset);
                let w1 = match d.kind {
                    desc::ARRAY_POW2 | desc::ARRAY_MASK | desc::SWISS_DIR => {
                        data_u64(sc, base + d.aux)
                    }
                    // B in the low byte, the map's flags in the next.
                    desc::OLD_BUCKETS => {
                        (data_u64(sc, base + d.aux) & 0xff)
                            | ((data_u64(sc, base + d.target2) & 0xff) << 8)
                    }
                    _ => data_u64(sc, base + d.offset + 8),
                };
                // Advance the cursor before pushing the child on top of it.
                let mut next = w;
                next.rep += 1;
                if next.rep >= d.repeat as u32 {
                    next.rep = 0;
                    next.desc += 1;
                }
                if next.desc >= ti.n_descs || next.desc >= MAX_DESCS as u32 {
                    next.desc = 0;
                    next.elem += 1;
                }
                if next.elem >= w.count {
                    (*ws).len = n - 1;
                } else {
                    (*ws).items[top] = next;
                }
                if w.depth >= params.max_depth {
                    if w0 != 0 {
                        lc.flags |= EV_DEPTH;
                    }
                    return 0;
                }
                if let Some(c) = child(d.kind, w0, w1, d.target, d.target2, w.depth, params, lc, sc)
                {
                    push(ws, c, lc);
                }
            }
        }
        0
    }
}

/// The floor for benchmarks: an empty program, so that what a uprobe costs
/// by itself can be told apart from what Probe's program adds.
#[uprobe]
pub fn probe_floor(_ctx: ProbeContext) -> u32 {
    0
}

/// The floor plus one clock read: what an event's timestamp costs by itself
/// (`probe selftest floor --work clock`).
#[uprobe]
pub fn probe_floor_clock(_ctx: ProbeContext) -> u32 {
    // SAFETY: a helper without arguments (a call the compiler keeps).
    let _ = unsafe { bpf_ktime_get_ns() };
    0
}

/// The floor plus one 8-byte read of target memory at the stack pointer, a
/// page the kernel has just written (the emulated `push`): what a
/// `bpf_probe_read_user` call costs by itself (`--work read`).
#[uprobe]
pub fn probe_floor_read(ctx: ProbeContext) -> u32 {
    // SAFETY: the registers of the trapped task.
    let sp = unsafe { (*ctx.regs).rsp };
    // SAFETY: a checked read of user memory into a local.
    let _ = unsafe { read_user_u64(sp) };
    0
}

/// What a capture of the per-hit goal's data must do at the least, written
/// by hand for `main.work(n int, key string)` of `testdata/hot` (Go's
/// register ABI: `n` in RAX, `key` in RBX/RCX; `g` in R14): a timestamp,
/// the argument registers, the head of `g` (goroutine id), a 256-byte stack
/// window and the string's bytes, into a per-CPU buffer. No ring, no plan,
/// no reader: a lower bound for any tracer capturing the same data at this
/// site (`--work minimal`).
#[uprobe]
pub fn probe_floor_minimal(ctx: ProbeContext) -> u32 {
    match try_floor_minimal(&ctx) {
        Some(()) => 0,
        None => 0,
    }
}

#[map]
static MINIMAL: PerCpuArray<MinimalCapture> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn try_floor_minimal(ctx: &ProbeContext) -> Option<()> {
    let b = MINIMAL.get_ptr_mut(0)?;
    // SAFETY: this CPU's buffer, and the trapped task's registers; each
    // read is checked by the helper and bounded by its buffer.
    unsafe {
        let r = &*ctx.regs;
        (*b).ktime_ns = bpf_ktime_get_ns();
        (*b).regs = [r.rax, r.rbx, r.rcx, r.rsp];
        read_goal_memory(b, r.r14, r.rsp);
        let cap = (*b).string.len() as u64;
        let n = if r.rcx > cap { cap } else { r.rcx } as u32;
        if n > 0 {
            read_user((*b).string.as_mut_ptr(), n, r.rbx);
        }
    }
    Some(())
}

/// The two reads of target memory the per-hit goal needs whatever the
/// function's arguments: the head of `g` (for the goroutine id) and the
/// 256-byte stack window (`--work reads`). Each `bpf_probe_read_user` has a
/// fixed cost of its own (~100 ns on this kind of machine whatever the size
/// or the page), so these two alone are most of the goal's budget.
#[uprobe]
pub fn probe_floor_reads(ctx: ProbeContext) -> u32 {
    let Some(b) = MINIMAL.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: as in `try_floor_minimal`.
    unsafe {
        let r = &*ctx.regs;
        read_goal_memory(b, r.r14, r.rsp);
    }
    0
}

/// The minimal capture of `probe_floor_minimal`, delivered: written as an
/// event into this CPU's ring (`RINGS`, the ring Probe's own events take)
/// and published to a reader on another CPU, which drains every 10 ms and
/// reads every byte (`--work delivered`). No attach cookie, no pid, no
/// `busy` flag, no counters, no doorbell, only the fields the decoder of
/// this one function would need: what delivering the per-hit goal's data
/// costs at the least with Probe's kind of ring, so the per-hit table can
/// tell what delivery itself adds to a capture (the event's cache lines
/// move to the reader's CPU and back) from what Probe's program adds.
#[uprobe]
pub fn probe_floor_delivered(ctx: ProbeContext) -> u32 {
    match try_floor_delivered(&ctx) {
        Ok(()) => 0,
        Err(()) => 0,
    }
}

/// Where `probe_floor_delivered` finds the goroutine id in g's head (set by
/// userspace from the binary's Go version).
#[map]
static FLOOR_GOID: Array<u32> = Array::with_max_entries(1, 0);

#[inline(always)]
fn try_floor_delivered(ctx: &ProbeContext) -> Result<(), ()> {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // A CPU past the rings' count (more than MAX_RINGS) captures nothing,
    // so no two CPUs share a ring. No `busy` flag either, unlike Probe: a
    // hit preempted mid-write by another on its CPU could tear an event,
    // which a lower bound for the bench may risk and Probe may not.
    let ring = RINGS.get_ptr_mut(cpu).ok_or(())?;
    let (head, tail) = positions(ring);
    if !has_room(head, tail) {
        return Err(());
    }
    let off = head_offset(head);
    // SAFETY: map value of this CPU's ring; `slot` bounds the offset.
    let sc = unsafe { slot(ring, off) }.ok_or(())?;
    let b = MINIMAL.get_ptr_mut(0).ok_or(())?;
    let at = FLOOR_GOID.get(0).copied().unwrap_or(0);
    // SAFETY: the trapped task's registers, this CPU's buffer and the event
    // slot (room checked above), each chunk bounded inside `emit_chunk`.
    unsafe {
        let r = &*ctx.regs;
        let ktime = bpf_ktime_get_ns();
        let mut lc = LoopCtx {
            id: 0,
            pos: 0,
            flags: 0,
            read_errors: 0,
            steps: 0,
            root_limit: 0,
            ring: cpu,
            off,
            sp: r.rsp,
        };
        read_g_head(b, r.r14);
        let goid = (*b).g_head[(at as usize / 8) & 31];
        emit_chunk(&mut lc, sc, r.rsp, 256, 256);
        let cap = (*b).string.len() as u64;
        let n = if r.rcx > cap { cap } else { r.rcx } as u32;
        if n > 0 {
            emit_chunk(&mut lc, sc, r.rbx, n, n);
        }
        // Only what the selftest's reader uses (`rings::Events` checks
        // magic and length and orders by time); the header's other fields
        // keep whatever the ring held there.
        let h = (*sc).bytes.as_mut_ptr() as *mut EventHeader;
        (*h).magic = EVENT_MAGIC;
        (*h).ktime_ns = ktime;
        (*h).goid = goid;
        (*h).data_len = lc.pos;
        // RAX, RCX, RBX and RSP at their DWARF numbers (`n`, `key`).
        (*h).regs[0] = r.rax;
        (*h).regs[2] = r.rcx;
        (*h).regs[3] = r.rbx;
        (*h).regs[7] = r.rsp;
        release(
            addr_of_mut!((*ring).ctl.head),
            head + record_len(lc.pos) as u64,
        );
    }
    Ok(())
}

/// Reads g's head at `g` and the stack window at `sp` into `b`.
#[inline(always)]
unsafe fn read_goal_memory(b: *mut MinimalCapture, g: u64, sp: u64) {
    read_g_head(b, g);
    let stack = core::mem::size_of_val(&(*b).stack) as u32;
    read_user((*b).stack.as_mut_ptr() as *mut u8, stack, sp);
}

/// Reads g's head at `g` into `b`.
#[inline(always)]
unsafe fn read_g_head(b: *mut MinimalCapture, g: u64) {
    let g_head = core::mem::size_of_val(&(*b).g_head) as u32;
    read_user((*b).g_head.as_mut_ptr() as *mut u8, g_head, g);
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

//! The kernel/userspace ABI of Probe: every type that crosses between the
//! eBPF programs (`probe-ebpf`) and the daemon (`probe-user`).
//!
//! All types are `#[repr(C)]` with explicit padding, and their sizes are
//! asserted at compile time so a change on one side cannot silently break
//! the other. `docs/ARCHITECTURE.md` documents the layout in prose.
//!
//! How a hit is captured (the "capture plan"):
//! - userspace writes one [`ProbeParams`] per probe into `PROBES`, at the
//!   index it passes as the uprobe's BPF cookie. Its [`RootOp`]s say where the
//!   parameters' pointer-carrying words are (registers, stack slots);
//! - `TYPES` describes, per type id, the size of one value and the
//!   [`Desc`]riptors of the pointer-carrying words inside it;
//! - `RTYPES` maps a Go runtime type descriptor's address to the type id to
//!   read behind an interface holding that dynamic type;
//! - the program copies the stack window, then walks the roots depth-first
//!   with a bounded work stack, appending every block of target memory it
//!   reads as a [`Chunk`] to the event. Userspace decodes the event by reading
//!   Go values out of those chunks as if reading the process's memory.
#![no_std]

/// Most probes one loaded program serves (size of `PROBES` and `STATS`).
pub const MAX_PROBES: u32 = 256;
/// Root operations per probe.
pub const MAX_ROOTS: usize = 16;
/// Pointer-carrying descriptors per type (nested structs are flattened).
pub const MAX_DESCS: usize = 16;
/// Entries of the `TYPES` map.
pub const MAX_TYPES: u32 = 8192;
/// Entries of the `RTYPES` map.
pub const MAX_RTYPES: u32 = 16384;
/// Registers recorded per hit, in DWARF x86-64 numbering (0 = RAX … 15 = R15,
/// 16 = return address column, which we fill with RIP).
pub const NUM_REGS: usize = 17;
/// Bytes of chunk data one event can carry (the hard cap of `--max-bytes`).
pub const DATA_BYTES: usize = 16384;
/// Largest single read (one chunk).
pub const MAX_CHUNK: usize = 4096;
/// Depth of the kernel's work stack.
pub const WORK_DEPTH: usize = 32;
/// Work steps (reads and descriptor visits) per hit.
pub const MAX_STEPS: u32 = 1024;
/// Bytes of the goroutine stack copied from the stack pointer upwards.
pub const STACK_BYTES: u32 = 512;
/// Bytes of one event ring (`RINGS` map): each CPU writes its own ring, so a
/// hit takes no lock shared with other CPUs; a power of two.
pub const RING_BYTES: usize = 2 << 20;
/// Most event rings one session creates; CPUs beyond share them (`cpu %
/// rings`), which the `busy` flag of [`RingCtl`] makes safe.
pub const MAX_RINGS: u32 = 16;
/// Where the ring proper starts in [`EventRing::data`]: first comes the
/// spare slot, where a hit is assembled when the ring has no room (so its
/// condition is still evaluated and it is counted as dropped, not
/// filtered).
pub const RING_DATA_OFF: usize = SCRATCH_BYTES;
/// Bytes of [`EventRing::data`]: spare slot, ring, and slack after the ring
/// so an event that starts near its end is still contiguous (it runs into
/// the slack instead of wrapping; the next event starts at the wrapped
/// position, so the slack and the ring's start never hold the same bytes).
pub const RING_AREA_BYTES: usize = SCRATCH_BYTES + RING_BYTES + SCRATCH_BYTES;
/// Bytes the kernel's doorbell ring buffer (`DOORBELL`) has: it carries one
/// 8-byte record whenever an event ring passes half full, to wake the reader.
pub const DOORBELL_BYTES: u32 = 4096;

/// The control block of one event ring, shared by the kernel (producer) and
/// the reader (consumer) through the mmap of the `RINGS` map. Positions are
/// byte counts that only grow; an event at position `p` starts at
/// `data[RING_DATA_OFF + p % RING_BYTES]`, 8-byte aligned, and is
/// `record_len(header.data_len)` bytes long.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RingCtl {
    /// Where the next event goes; published by the kernel after the event's
    /// bytes (a store-release).
    pub head: u64,
    pub _pad0: [u64; 7],
    /// Up to where the reader has consumed; written only by the reader.
    pub tail: u64,
    pub _pad1: [u64; 7],
    /// 1 while a hit is writing this ring (taken with an atomic exchange,
    /// given back with a store-release): a
    /// hit that finds it taken (preemption, or CPUs sharing a ring) counts a
    /// drop instead of waiting.
    pub busy: u64,
    /// 1 once the ring passed half full and the doorbell rang; 0 again once
    /// it is below a quarter.
    pub over: u64,
    pub _pad2: [u64; 6],
}

/// One value of the `RINGS` map (`BPF_F_MMAPABLE`, one per ring).
#[repr(C)]
pub struct EventRing {
    pub ctl: RingCtl,
    pub data: [u8; RING_AREA_BYTES],
}

/// Bytes an event with `data_len` bytes of chunks occupies in a ring.
pub const fn record_len(data_len: u32) -> usize {
    (core::mem::size_of::<EventHeader>() + data_len as usize + 7) & !7
}

/// The `CONTROL` map's one value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Control {
    /// Non-zero while probes are suspended (CPU budget exceeded).
    pub suspended: u32,
    /// Event rings in `RINGS` (its `max_entries`, set at load).
    pub rings: u32,
}
/// Type id 0: plain bytes (string data); size 1, no descriptors.
pub const TID_BYTES: u32 = 0;

/// DWARF register numbers used on the Go amd64 register ABI
/// (<https://go.dev/s/regabi>; DWARF numbering from the System V psABI).
pub mod reg {
    pub const RAX: u8 = 0;
    pub const RDX: u8 = 1;
    pub const RCX: u8 = 2;
    pub const RBX: u8 = 3;
    pub const RSI: u8 = 4;
    pub const RDI: u8 = 5;
    pub const RBP: u8 = 6;
    pub const RSP: u8 = 7;
    pub const R8: u8 = 8;
    pub const R9: u8 = 9;
    pub const R10: u8 = 10;
    pub const R11: u8 = 11;
    pub const R14: u8 = 14;
    pub const RIP: u8 = 16;
}

/// Where a root operation takes a 64-bit word from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// One of the `SRC_*` constants.
    pub kind: u8,
    /// `SRC_REG`: the DWARF register number.
    pub reg: u8,
    pub _pad: [u8; 2],
    /// `SRC_STACK`: byte offset from the stack pointer at the hit.
    /// `SRC_CONST`: the value itself.
    pub offset: i32,
}

/// No source: the word is 0.
pub const SRC_NONE: u8 = 0;
/// The value of a register.
pub const SRC_REG: u8 = 1;
/// The 8 bytes at `rsp + offset` in the target's memory.
pub const SRC_STACK: u8 = 2;
/// The constant `offset`.
pub const SRC_CONST: u8 = 4;
/// The address `rsp + offset`: a stack-resident variable, read and walked
/// as if a pointer pointed at it.
pub const SRC_SP: u8 = 5;

/// What the words at a descriptor mean, i.e. what to read next. `w0` is the
/// word at the descriptor's offset, `w1` the one after it (or at `aux`).
pub mod desc {
    /// `w0` is a pointer to one `target`.
    pub const PTR: u8 = 1;
    /// `w0` = data, `w1` = length: a string (`TID_BYTES`, `max_string` cap).
    pub const STRING: u8 = 2;
    /// `w0` = data, `w1` = length: `min(len, max_elems)` of `target`.
    pub const SLICE: u8 = 3;
    /// `w0` = runtime type, `w1` = data: an empty interface.
    pub const EFACE: u8 = 4;
    /// `w0` = itab (its `_type` at +8, also captured), `w1` = data: a
    /// non-empty interface.
    pub const IFACE: u8 = 5;
    /// `w0` = pointer to `1 << byte at aux` of `target` (an hmap's buckets).
    pub const ARRAY_POW2: u8 = 6;
    /// `w0` = pointer to `(word at aux) + 1` of `target` (a Swiss table's groups).
    pub const ARRAY_MASK: u8 = 7;
    /// Swiss map directory: `w0` = dirPtr, word at `aux` = dirLen. dirLen 0:
    /// one group of `target`; else `dirLen` table pointers of `target2`.
    pub const SWISS_DIR: u8 = 8;
    /// A growing hmap's old buckets (Go ≤1.23): `w0` = `oldbuckets`, the
    /// byte at `aux` = B, the byte at `target2` (an offset here, not a type)
    /// = the map's flags. `1 << (B - 1)` of `target`, or `1 << B` on a
    /// same-size grow (runtime/map.go `hashGrow`). Nil when not growing.
    pub const OLD_BUCKETS: u8 = 9;

    /// hmap flag: growing into as many buckets as before (runtime/map.go
    /// `sameSizeGrow`).
    pub const SAME_SIZE_GROW: u8 = 8;

    /// log2 of the number of old buckets of a growing hmap whose `B` and
    /// `flags` bytes are given: the kernel copies that many, the decoder
    /// walks that many.
    #[inline(always)]
    pub const fn old_buckets_log2(b: u8, flags: u8) -> u8 {
        if flags & SAME_SIZE_GROW != 0 || b == 0 {
            b
        } else {
            b - 1
        }
    }
}

/// A pointer-carrying word inside a value of some type.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Byte offset of `w0` in the value.
    pub offset: u32,
    /// Byte offset of the length/count word, where the kind uses one.
    pub aux: u32,
    /// Type id to read.
    pub target: u32,
    /// Second type id (`SWISS_DIR`).
    pub target2: u32,
    /// One of the [`desc`] kinds.
    pub kind: u8,
    pub _pad: u8,
    /// The descriptor repeats `repeat` times (an array of such words)…
    pub repeat: u16,
    /// …every `stride` bytes.
    pub stride: u32,
}

/// One entry of `TYPES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TypeInfo {
    /// Bytes of one value.
    pub size: u32,
    /// Valid entries of `descs`.
    pub n_descs: u32,
    pub descs: [Desc; MAX_DESCS],
}

/// One entry of `RTYPES`: what an interface holding this dynamic type points at.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RType {
    /// Type id to read at the interface's data word.
    pub tid: u32,
    pub _pad: u32,
}

/// A root: a pointer-carrying word pair of a parameter, read from registers
/// or the stack, with the same meaning as a [`Desc`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RootOp {
    pub w0: Source,
    pub w1: Source,
    pub target: u32,
    pub kind: u8,
    pub _pad: [u8; 3],
}

/// Per-probe parameters, indexed by the uprobe's attach cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeParams {
    /// Offset of `goid` in the Go runtime's `g` struct (from DWARF).
    pub goid_offset: u32,
    /// Offset of `stack.hi` in `g` (from DWARF), bounds the stack copy.
    pub stack_hi_offset: u32,
    /// Bytes of stack to copy (≤ [`STACK_BYTES`]).
    pub stack_bytes: u32,
    /// `PARAM_*` flags.
    pub flags: u32,
    /// Chunk bytes per event (≤ [`DATA_BYTES`]).
    pub max_bytes: u32,
    /// Bytes of a string to capture.
    pub max_string: u32,
    /// Elements of a slice, array or map table to capture.
    pub max_elems: u32,
    /// Pointer hops to follow from a parameter.
    pub max_depth: u32,
    /// Valid entries of `roots`.
    pub n_roots: u32,
    /// Return addresses to record (≤ [`MAX_FRAMES`]); 0: no stack.
    pub stack_frames: u32,
    /// For a return probe: the id of its entry probe (for `ENTRIES`).
    pub pair_id: u32,
    /// `--rate`: hits per second let through (0: unlimited).
    pub rate_per_sec: u32,
    /// Valid entries of `filters`.
    pub n_filters: u32,
    /// The return address is at `[rsp + ret_sp_off]` at the probed PC (the
    /// CFA minus 8, from `.debug_frame`).
    pub ret_sp_off: u32,
    /// The probed PC as linked (the ELF's own address). `rip - static_pc`
    /// is the executable's load bias (0 unless it is a PIE), which the
    /// kernel subtracts from runtime type addresses before `RTYPES` lookups.
    pub static_pc: u64,
    /// The executable's read-only data segment as linked (`.rodata`: string
    /// literals and other constant data; 0 bytes: none). Pointer-free
    /// values lying wholly inside it are not read at the hit: the mapping is
    /// read-only and its bytes are the file's, so userspace reads them from
    /// the binary, as a debugger does for a core file (one
    /// `bpf_probe_read_user` less per string literal, ~100 ns here).
    pub rodata_start: u64,
    pub rodata_len: u64,
    pub roots: [RootOp; MAX_ROOTS],
    /// Kernel-side condition terms, all of which must hold.
    pub filters: [Filter; FILTER_OPS],
}

/// Condition terms per probe checked in the kernel.
pub const FILTER_OPS: usize = 4;

/// Filter kinds and comparison operators.
pub mod filter {
    /// Signed integer of `size` bytes compared with `value as i64`.
    pub const INT: u8 = 1;
    /// Unsigned integer (or bool) of `size` bytes compared with `value`.
    pub const UINT: u8 = 2;
    /// String (data word `src`, length word `len_src`) equal to the first
    /// `value` bytes of `bytes` (EQ/NE only).
    pub const STR: u8 = 3;
    pub const EQ: u8 = 1;
    pub const NE: u8 = 2;
    pub const LT: u8 = 3;
    pub const LE: u8 = 4;
    pub const GT: u8 = 5;
    pub const GE: u8 = 6;
}

/// One `variable OP literal` term of a condition, checked at the hit so a
/// non-matching hit sends nothing to userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub src: Source,
    pub len_src: Source,
    pub value: u64,
    pub bytes: [u8; 16],
    pub kind: u8,
    pub op: u8,
    pub size: u8,
    pub _pad: [u8; 5],
}

/// The probe is configured (an all-zero array slot is not).
pub const PARAM_ENABLED: u32 = 1;
/// `g` is in R14 at the probed PC (Go ≥1.17 ABIInternal on amd64).
pub const PARAM_G_IN_R14: u32 = 2;
/// Record the entry time in `ENTRIES` for a later return (`--returns`).
pub const PARAM_RECORD_ENTRY: u32 = 4;
/// This is a return probe: look its entry up in `ENTRIES`.
pub const PARAM_RETURN: u32 = 8;
/// The function has pushed RBP at the probed PC: the caller's frame
/// pointer is `[rbp]`, not RBP itself.
pub const PARAM_FRAME_SET: u32 = 16;
/// Only processes listed in `PIDS` are traced (the probe is attached to the
/// file, for every process running it; the kernel filters by tgid, which
/// costs one hash lookup per hit however many processes are traced).
pub const PARAM_PID_FILTER: u32 = 32;
/// Processes one session may trace by pid (`PIDS` map).
pub const MAX_PIDS: u32 = 4096;
/// Set by userspace (`Kernel::configure`) on a probe whose capture is
/// [`ProbeParams::lean`]: the kernel takes its lean path, which does the
/// same capture without the general plan interpreter.
pub const PARAM_LEAN: u32 = 64;
/// Most string roots the lean path captures.
pub const LEAN_ROOTS: u32 = 2;
/// How much of the head of `g` one read covers: goid and stack.hi live well
/// inside it in every Go release, and a g is larger than this (see `type g`
/// in runtime/runtime2.go), so the read stays inside the object.
pub const G_HEAD_BYTES: u32 = 256;

impl ProbeParams {
    /// Can the kernel's lean path capture this probe? An entry (or line)
    /// probe with the goroutine in R14, no condition terms, rate limit,
    /// return addresses or entry/return pairing, whose roots are at most
    /// [`LEAN_ROOTS`] strings held in registers: the shape of most Go
    /// functions' pointer arguments that are not structs. The lean path
    /// writes the event the general path would (same header, same chunks in
    /// the same order, same budget rules) with a fraction of its
    /// instructions: no work stack, no type table lookups, no loop.
    pub fn lean(&self) -> bool {
        let reg = |s: &Source| s.kind == SRC_REG && (s.reg as usize) < NUM_REGS;
        let head = |off: u32| off.is_multiple_of(8) && off + 8 <= G_HEAD_BYTES;
        self.flags & (PARAM_RECORD_ENTRY | PARAM_RETURN) == 0
            && self.flags & PARAM_G_IN_R14 != 0
            && head(self.goid_offset)
            && head(self.stack_hi_offset)
            && self.n_filters == 0
            && self.rate_per_sec == 0
            && self.stack_frames == 0
            && self.n_roots <= LEAN_ROOTS
            && self.roots[..self.n_roots as usize]
                .iter()
                .all(|r| r.kind == desc::STRING && reg(&r.w0) && reg(&r.w1))
    }
}

/// Per-probe counters, one copy per CPU in the `STATS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeStats {
    /// Times the uprobe fired for this probe.
    pub hits: u64,
    /// Hits lost because the ring buffer had no room.
    pub ringbuf_drops: u64,
    /// Memory reads that failed (unmapped memory, paged out).
    pub read_errors: u64,
    /// Hits whose capture was cut by a limit (budget, depth, steps, queue).
    pub truncated: u64,
    /// Hits whose cookie named no configured probe.
    pub unconfigured: u64,
    /// Hits not captured because of `--rate`.
    pub rate_limited: u64,
    /// Hits not captured because the kernel-side condition did not match.
    pub filtered: u64,
    /// Hits not captured because probes were suspended (CPU budget).
    pub suspended: u64,
    /// Returns whose entry was not captured (began before attach, or
    /// filtered/rate-limited at entry).
    pub unpaired: u64,
}

/// Token-bucket state of one probe (`RATE` map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RateState {
    /// Tokens × 1e9 (nanotokens), at most one second's worth.
    pub nanotokens: u64,
    /// When the bucket was last refilled.
    pub last_ns: u64,
}

/// Fixed header of every event.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// [`EVENT_MAGIC`], to catch ABI mismatches.
    pub magic: u32,
    /// The attach cookie, i.e. the index into `PROBES`.
    pub probe_id: u32,
    /// Thread group id (the process id as userspace sees it).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` at the hit: CLOCK_MONOTONIC.
    pub ktime_ns: u64,
    /// Goroutine id, valid when `EV_GOID` is set.
    pub goid: u64,
    /// The `g` pointer (R14).
    pub g: u64,
    /// `EV_*` flags.
    pub flags: u32,
    /// Bytes of chunk data following the header.
    pub data_len: u32,
    /// Registers by DWARF number, see [`NUM_REGS`].
    pub regs: [u64; NUM_REGS],
    /// Reads that failed during this hit.
    pub read_errors: u32,
    /// Work steps used.
    pub steps: u32,
    /// `EVK_ENTRY` or `EVK_RETURN`.
    pub kind: u32,
    /// Return addresses at the start of the data (`--stack`).
    pub nstack: u32,
    /// `g.stack.hi - rsp`: identifies the frame within its goroutine, and
    /// survives the runtime copying the stack elsewhere (copystack keeps
    /// offsets from the top).
    pub frame: u64,
    /// For a return: the paired entry's `ktime_ns`, or 0 if none was seen.
    pub entry_ktime: u64,
}

/// An entry (or line/address) hit.
pub const EVK_ENTRY: u32 = 0;
/// A return-instruction hit.
pub const EVK_RETURN: u32 = 1;

/// Key of the `ENTRIES` map that pairs entries with returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryKey {
    /// The entry probe's id.
    pub probe: u32,
    pub _pad: u32,
    pub goid: u64,
    /// `g.stack.hi - rsp` at the entry (and at the matching return).
    pub frame: u64,
}

/// Most return addresses `--stack` records.
pub const MAX_FRAMES: u32 = 32;

pub const EVENT_MAGIC: u32 = 0x5052_4233; // "PRB3"
/// `goid` was read.
pub const EV_GOID: u32 = 1;
/// The stack copy failed.
pub const EV_STACK_FAULT: u32 = 2;
/// The byte budget ran out: some reads were not made.
pub const EV_BUDGET: u32 = 4;
/// The depth limit stopped some pointers from being followed.
pub const EV_DEPTH: u32 = 8;
/// The work stack or step limit stopped the walk.
pub const EV_STEPS: u32 = 16;

/// A block of target memory in an event's data: this header, then `len`
/// bytes, then padding to a multiple of 8.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Target address of the first byte.
    pub addr: u64,
    /// Bytes that follow.
    pub len: u32,
    /// Bytes the value had in full (≥ `len`; more when a limit cut it).
    pub want: u32,
}

/// What the benchmarks' hand-written "minimal capture" (`probe selftest
/// floor --work minimal`, kernel program `probe_floor_minimal`) stores per
/// hit in its per-CPU `MINIMAL` map: the data of the per-hit goal, read the
/// cheapest way for `main.work(n int, key string)` of `testdata/hot`, and
/// nothing else (no ring, no capture plan). Userspace reads it back to show
/// the capture was real.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MinimalCapture {
    /// `bpf_ktime_get_ns()` at the hit.
    pub ktime_ns: u64,
    /// RAX, RBX, RCX (`n`, `key.ptr`, `key.len` under Go's register ABI),
    /// RSP.
    pub regs: [u64; 4],
    /// The first 256 bytes of `g` (R14): the goroutine id is in there.
    pub g_head: [u64; 32],
    /// 256 bytes of the stack from RSP.
    pub stack: [u64; 32],
    /// The string's first (up to) 64 bytes.
    pub string: [u8; 64],
}

/// Size of the per-CPU scratch buffer an event is assembled in: room for the
/// header, the data budget and slack so a bounded write never leaves the
/// buffer; a power of two so the kernel can bound lengths with a mask.
pub const SCRATCH_BYTES: usize = 32 * 1024;

const _: () = assert!(core::mem::size_of::<Source>() == 8);
const _: () = assert!(core::mem::size_of::<Desc>() == 24);
const _: () = assert!(core::mem::size_of::<TypeInfo>() == 8 + 24 * MAX_DESCS);
const _: () = assert!(core::mem::size_of::<RType>() == 8);
const _: () = assert!(core::mem::size_of::<RootOp>() == 24);
const _: () = assert!(core::mem::size_of::<ProbeParams>() == 80 + 24 * MAX_ROOTS + 48 * FILTER_OPS);
const _: () = assert!(core::mem::size_of::<Filter>() == 48);
const _: () = assert!(core::mem::size_of::<ProbeStats>() == 72);
const _: () = assert!(core::mem::size_of::<EventHeader>() == 216);
const _: () = assert!(core::mem::size_of::<EntryKey>() == 24);
const _: () = assert!(core::mem::size_of::<RateState>() == 16);
const _: () = assert!(core::mem::size_of::<Chunk>() == 16);
const _: () = assert!(DATA_BYTES.is_power_of_two() && MAX_CHUNK.is_power_of_two());
const _: () = assert!(
    SCRATCH_BYTES <= 32 * 1024,
    "per-CPU map values are limited to 32 KiB"
);
const _: () =
    assert!(SCRATCH_BYTES >= core::mem::size_of::<EventHeader>() + DATA_BYTES + MAX_CHUNK + 64);
const _: () = assert!(SCRATCH_BYTES.is_power_of_two());
const _: () = assert!(RING_BYTES.is_power_of_two() && RING_BYTES >= 4 * SCRATCH_BYTES);
const _: () = assert!(core::mem::size_of::<RingCtl>() == 192);
const _: () = assert!(core::mem::size_of::<Control>() == 8);
const _: () = assert!(core::mem::size_of::<MinimalCapture>() == 8 + 32 + 256 + 256 + 64);
const _: () = assert!(
    core::mem::size_of::<EventRing>() <= 4 << 20,
    "array map values are limited to KMALLOC_MAX_SIZE (4 MiB on x86-64)"
);
const _: () = assert!(core::mem::size_of::<EventHeader>().is_multiple_of(8));

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no implicit padding.
    unsafe impl aya::Pod for super::ProbeParams {}
    unsafe impl aya::Pod for super::ProbeStats {}
    unsafe impl aya::Pod for super::TypeInfo {}
    unsafe impl aya::Pod for super::RType {}
    unsafe impl aya::Pod for super::RateState {}
    unsafe impl aya::Pod for super::Control {}
    unsafe impl aya::Pod for super::MinimalCapture {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(r: u8) -> Source {
        Source {
            kind: SRC_REG,
            reg: r,
            ..Default::default()
        }
    }

    fn string_root(ptr: u8, len: u8) -> RootOp {
        RootOp {
            w0: reg(ptr),
            w1: reg(len),
            kind: desc::STRING,
            ..Default::default()
        }
    }

    /// `main.work(n int, key string)` as userspace configures it: one
    /// string root in RBX/RCX, goid and stack.hi inside g's head.
    fn work() -> ProbeParams {
        let mut p = ProbeParams {
            goid_offset: 152,
            stack_hi_offset: 8,
            stack_bytes: 256,
            flags: PARAM_ENABLED | PARAM_G_IN_R14,
            n_roots: 1,
            ..Default::default()
        };
        p.roots[0] = string_root(reg::RBX, reg::RCX);
        p
    }

    #[test]
    fn string_arguments_in_registers_take_the_lean_path() {
        let mut p = work();
        assert!(p.lean());
        p.n_roots = 0;
        assert!(p.lean(), "no pointer arguments at all");
        p.n_roots = 2;
        p.roots[1] = string_root(reg::RDI, reg::RSI);
        assert!(p.lean(), "two strings");
        p.flags |= PARAM_PID_FILTER;
        assert!(p.lean(), "the pid filter is checked before either path");
    }

    #[test]
    fn anything_the_lean_path_does_not_do_takes_the_general_path() {
        type Change = fn(&mut ProbeParams);
        let cases: [(&str, Change); 13] = [
            ("a condition", |p| p.n_filters = 1),
            ("a rate limit", |p| p.rate_per_sec = 10),
            ("return addresses", |p| p.stack_frames = 4),
            ("an entry paired with returns", |p| {
                p.flags |= PARAM_RECORD_ENTRY
            }),
            ("a return", |p| p.flags |= PARAM_RETURN),
            ("no g in R14", |p| p.flags &= !PARAM_G_IN_R14),
            ("goid past g's head", |p| p.goid_offset = G_HEAD_BYTES),
            ("stack.hi unaligned", |p| p.stack_hi_offset = 12),
            ("a pointer root", |p| p.roots[0].kind = desc::PTR),
            ("a slice root", |p| p.roots[0].kind = desc::SLICE),
            ("a string on the stack", |p| p.roots[0].w0.kind = SRC_STACK),
            ("a register number past the header's", |p| {
                p.roots[0].w1.reg = NUM_REGS as u8
            }),
            ("three strings", |p| {
                p.n_roots = 3;
                p.roots[1] = p.roots[0];
                p.roots[2] = p.roots[0];
            }),
        ];
        for (what, change) in cases {
            let mut p = work();
            change(&mut p);
            assert!(!p.lean(), "{what}");
        }
    }
}

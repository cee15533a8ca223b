//! The kernel/userspace ABI of Probe: every type that crosses between the
//! eBPF programs (`probe-ebpf`) and the daemon (`probe-user`).
//!
//! All types are `#[repr(C)]`, contain no padding that the other side could
//! misread, and their sizes are asserted at compile time so that a change on
//! one side cannot silently break the other. `docs/ARCHITECTURE.md` documents
//! the layout in prose.
//!
//! Data flow across the boundary:
//! - userspace writes one [`ProbeParams`] per probe into the `PROBES` array map,
//!   at the index it also passes as the uprobe's BPF cookie;
//! - the uprobe program interprets the params' [`CaptureOp`]s and submits one
//!   [`Event`] per hit to the `EVENTS` ring buffer;
//! - per-probe counters ([`ProbeStats`]) live in the per-CPU `STATS` array.
#![no_std]

/// Most probes one loaded program serves (size of `PROBES` and `STATS`).
pub const MAX_PROBES: u32 = 256;
/// Capture operations per probe, and capture slots per event.
pub const MAX_OPS: usize = 8;
/// Bytes one capture slot holds; longer values are cut and marked truncated.
pub const SLOT_BYTES: usize = 512;
/// Bytes of the goroutine stack copied from the stack pointer upwards.
pub const STACK_BYTES: usize = 512;
/// Registers recorded per hit, in DWARF x86-64 numbering (0 = RAX … 15 = R15,
/// 16 = return address column, which we fill with RIP).
pub const NUM_REGS: usize = 17;
/// Size of the ring buffer shared by all probes.
pub const RING_BYTES: u32 = 8 << 20;

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

/// Where a capture operation takes a 64-bit value from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// One of the `SRC_*` constants.
    pub kind: u8,
    /// `SRC_REG`: the DWARF register number. `SRC_SLOT`: the slot index,
    /// which must be lower than the index of the op that reads it.
    pub index: u8,
    pub _pad: [u8; 2],
    /// `SRC_STACK`: byte offset from the stack pointer at the hit.
    /// `SRC_SLOT`: byte offset into the slot. `SRC_CONST`: the value itself.
    pub offset: i32,
}

/// No source: the op is unused.
pub const SRC_NONE: u8 = 0;
/// The value of a register.
pub const SRC_REG: u8 = 1;
/// The 8 bytes at `rsp + offset` in the target's memory.
pub const SRC_STACK: u8 = 2;
/// The 8 bytes at `offset` in an earlier op's slot of the same event.
pub const SRC_SLOT: u8 = 3;
/// The constant `offset` (non-negative).
pub const SRC_CONST: u8 = 4;

/// One capture operation: read `count(len) * elem_size` bytes (at most
/// `max_bytes`, at most [`SLOT_BYTES`]) at the address given by `addr` into
/// the slot of the same index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureOp {
    pub addr: Source,
    pub len: Source,
    pub elem_size: u32,
    pub max_bytes: u32,
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
    /// Number of valid entries in `ops`.
    pub n_ops: u32,
    /// `PARAM_*` flags.
    pub flags: u32,
    pub _pad: u32,
    pub ops: [CaptureOp; MAX_OPS],
}

/// The probe is configured (an all-zero array slot is not).
pub const PARAM_ENABLED: u32 = 1;
/// `g` is in R14 at the probed PC (Go ≥1.17 ABIInternal on amd64).
pub const PARAM_G_IN_R14: u32 = 2;

/// Per-probe counters, one copy per CPU in the `STATS` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeStats {
    /// Times the uprobe fired for this probe.
    pub hits: u64,
    /// Hits lost because the ring buffer had no room.
    pub ringbuf_drops: u64,
    /// Capture reads that failed (unmapped memory, paged out).
    pub read_errors: u64,
    /// Hits whose cookie named no configured probe.
    pub unconfigured: u64,
}

/// The result of one capture op in an [`Event`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotInfo {
    /// The address the op read from.
    pub addr: u64,
    /// Bytes the value has in full (`count * elem_size`).
    pub want: u64,
    /// Bytes copied into the slot, or a negative errno when the read failed.
    pub got: i32,
    pub _pad: u32,
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
    /// Bytes of stack copied into [`Event::stack`].
    pub stack_len: u32,
    /// Registers by DWARF number, see [`NUM_REGS`].
    pub regs: [u64; NUM_REGS],
    pub _pad: u64,
}

pub const EVENT_MAGIC: u32 = 0x5052_4231; // "PRB1"
/// `goid` was read.
pub const EV_GOID: u32 = 1;
/// The stack copy failed.
pub const EV_STACK_FAULT: u32 = 2;

/// One hit, as submitted to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub header: EventHeader,
    pub slots: [SlotInfo; MAX_OPS],
    /// The goroutine stack from RSP upwards.
    pub stack: [u8; STACK_BYTES],
    /// Capture slots, one per op.
    pub data: [[u8; SLOT_BYTES]; MAX_OPS],
}

const _: () = assert!(core::mem::size_of::<Source>() == 8);
const _: () = assert!(core::mem::size_of::<CaptureOp>() == 24);
const _: () = assert!(core::mem::size_of::<ProbeParams>() == 24 + 24 * MAX_OPS);
const _: () = assert!(core::mem::size_of::<ProbeStats>() == 32);
const _: () = assert!(core::mem::size_of::<SlotInfo>() == 24);
const _: () = assert!(core::mem::size_of::<EventHeader>() == 192);
const _: () = assert!(
    core::mem::size_of::<Event>() == 192 + 24 * MAX_OPS + STACK_BYTES + SLOT_BYTES * MAX_OPS
);
const _: () = assert!(SLOT_BYTES.is_power_of_two() && STACK_BYTES.is_power_of_two());

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no padding left implicit.
    unsafe impl aya::Pod for super::ProbeParams {}
    unsafe impl aya::Pod for super::ProbeStats {}
}

//! Reading events out of the kernel's event rings (the `RINGS` map, see
//! `probe_common::RingCtl`): maps them into this process, hands out each
//! event in place, oldest first across rings, and gives the space back when
//! the event is dropped.
//!
//! Each ring has one producer at a time (the hit holding its `busy` flag)
//! and one consumer (this reader). The kernel publishes `head` with a
//! store-release after writing the event's bytes; we load it with
//! acquire ordering, read, and store `tail` with release ordering, so the
//! kernel never overwrites bytes we have not finished with.
//!
//! The reader is woken by the small `DOORBELL` ring buffer only when a ring
//! passes half full; otherwise it drains on its own timer (the kernel side
//! never pays for a wakeup per event).

use std::{
    os::fd::{AsFd, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::{MapData, RingBuf};
use probe_common::{
    record_len, EventHeader, EventRing, RingCtl, EVENT_MAGIC, RING_BYTES, RING_DATA_OFF,
    SCRATCH_BYTES,
};

use crate::error::Error;

/// Bytes between two rings in the map's memory (array map elements are
/// rounded up to 8 bytes).
const ELEM: usize = (std::mem::size_of::<EventRing>() + 7) & !7;
const CTL: usize = std::mem::size_of::<RingCtl>();

/// Consumed bytes of a ring after which `tail` is published even in the
/// middle of a drain (so a long drain frees space early).
const PUBLISH_EVERY: u64 = 256 << 10;

/// The event rings of one loaded program, mapped into this process.
///
/// `head` and `tail` live on cache lines the kernel side touches on every
/// hit, so the reader touches them as little as it can: `head` is loaded
/// again only when the events up to the last loaded value are consumed, and
/// `tail` is published when a drain finds nothing more, or every
/// [`PUBLISH_EVERY`] bytes. Each time, the line moves between CPUs, and the
/// traced thread pays for the move on its next hit.
pub struct Events {
    doorbell: RingBuf<MapData>,
    /// Keeps the map's fd open while mapped.
    _rings: MapData,
    base: NonNull<u8>,
    len: usize,
    /// Our consumed position per ring.
    tails: Vec<u64>,
    /// What `tail` in each ring says (what we last published).
    published: Vec<u64>,
    /// The last `head` loaded per ring.
    heads: Vec<u64>,
    /// Records found malformed (never expected: the kernel side is ours);
    /// their ring was skipped to its head.
    pub corrupt: u64,
}

// SAFETY: the mapping is owned by this value and only touched through
// `&mut self` (the kernel writes concurrently, synchronised by `head`/`tail`).
unsafe impl Send for Events {}

impl Events {
    /// What to tell the user when malformed records were skipped.
    pub fn corrupt_note(&self) -> Option<String> {
        (self.corrupt > 0).then(|| {
            format!(
                "{} malformed event records skipped (a bug in probe: please report it)",
                self.corrupt
            )
        })
    }

    /// Maps `rings` (a `BPF_F_MMAPABLE` array of `n` [`EventRing`]s).
    pub(crate) fn new(rings: MapData, n: u32, doorbell: RingBuf<MapData>) -> Result<Self, Error> {
        let page = 4096;
        let len = (n as usize * ELEM).div_ceil(page) * page;
        // SAFETY: mapping a map fd the kernel sized for at least `len`
        // bytes; the mapping is unmapped in `Drop`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                rings.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Kernel(format!(
                "mapping the event rings ({} MiB): {}",
                len >> 20,
                std::io::Error::last_os_error()
            )));
        }
        let base = NonNull::new(p as *mut u8).expect("mmap returned null");
        let mut ev = Self {
            doorbell,
            _rings: rings,
            base,
            len,
            tails: vec![0; n as usize],
            published: vec![0; n as usize],
            heads: vec![0; n as usize],
            corrupt: 0,
        };
        for i in 0..n as usize {
            let t = ev.ctl(i, |c| &c.tail).load(Ordering::Relaxed);
            ev.tails[i] = t;
            ev.published[i] = t;
            ev.heads[i] = t;
        }
        Ok(ev)
    }

    /// An atomic view of a field of ring `i`'s control block.
    fn ctl(&self, i: usize, field: impl Fn(&RingCtl) -> &u64) -> &AtomicU64 {
        // SAFETY: ring `i` lies within the mapping; the control block is
        // 8-byte aligned (elements are, and it comes first); the kernel
        // accesses these fields with atomics or plain aligned u64 stores.
        unsafe {
            let ctl = &*(self.base.as_ptr().add(i * ELEM) as *const RingCtl);
            AtomicU64::from_ptr(field(ctl) as *const u64 as *mut u64)
        }
    }

    /// The oldest event not yet consumed, across rings (by timestamp among
    /// each ring's first; events still being written on another CPU may
    /// come after slightly newer ones). Consumed when the returned value is
    /// dropped.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        // The bell only wakes us; the events are in the rings.
        while self.doorbell.next().is_some() {}
        let mut best: Option<(u64, usize, usize, usize)> = None;
        for i in 0..self.tails.len() {
            let Some((t, off, len)) = self.peek(i) else {
                continue;
            };
            if best.is_none_or(|b| t < b.0) {
                best = Some((t, i, off, len));
            }
        }
        let Some((_, ring, off, len)) = best else {
            // Drained: give the space back.
            for i in 0..self.tails.len() {
                self.publish(i);
            }
            return None;
        };
        Some(Event {
            events: self,
            ring,
            off,
            len,
        })
    }

    /// Timestamp, offset (in the mapping) and length of ring `i`'s next
    /// event.
    fn peek(&mut self, i: usize) -> Option<(u64, usize, usize)> {
        let tail = self.tails[i];
        if tail >= self.heads[i] {
            self.heads[i] = self.ctl(i, |c| &c.head).load(Ordering::Acquire);
        }
        let head = self.heads[i];
        if tail >= head {
            return None;
        }
        let off = i * ELEM + CTL + RING_DATA_OFF + (tail as usize & (RING_BYTES - 1));
        // SAFETY: the header is within the ring's data (the ring is
        // followed by slack of SCRATCH_BYTES, more than a header).
        let h =
            unsafe { std::ptr::read_unaligned(self.base.as_ptr().add(off) as *const EventHeader) };
        let len = record_len(h.data_len);
        if h.magic != EVENT_MAGIC || h.data_len as usize > SCRATCH_BYTES || tail + len as u64 > head
        {
            // Cannot happen with our kernel side; never loop on it.
            self.corrupt += 1;
            self.tails[i] = head;
            self.publish(i);
            return None;
        }
        Some((h.ktime_ns, off, len))
    }

    /// Tells the kernel side how far ring `i` is consumed.
    fn publish(&mut self, i: usize) {
        if self.published[i] != self.tails[i] {
            self.published[i] = self.tails[i];
            self.ctl(i, |c| &c.tail)
                .store(self.tails[i], Ordering::Release);
        }
    }
}

impl AsRawFd for Events {
    /// The doorbell's fd: readable when a ring passed half full.
    fn as_raw_fd(&self) -> RawFd {
        self.doorbell.as_raw_fd()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer referenced (events borrow `self`).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}

/// One event, in place in its ring; its space is given back on drop.
pub struct Event<'a> {
    events: &'a mut Events,
    ring: usize,
    off: usize,
    len: usize,
}

impl std::ops::Deref for Event<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: checked by `peek`: the record lies in the mapping (ring
        // plus slack) and the kernel does not write it until we consume it.
        unsafe { std::slice::from_raw_parts(self.events.base.as_ptr().add(self.off), self.len) }
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        let ev = &mut *self.events;
        ev.tails[self.ring] += self.len as u64;
        if ev.tails[self.ring] - ev.published[self.ring] >= PUBLISH_EVERY {
            ev.publish(self.ring);
        }
    }
}

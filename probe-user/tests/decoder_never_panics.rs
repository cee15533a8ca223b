//! Property test: the decoder is total. For the plans of real functions that
//! take every Go kind, arbitrary events (random registers, random chunks that
//! point at each other, random headers, raw garbage) decode without a panic,
//! and every parameter gets a value (possibly marked unavailable).

use std::path::PathBuf;

use probe::{
    capture::Limits,
    decode::{decode_args, RawEvent},
    resolve::Program,
};
use probe_common::{Chunk, EventHeader, EVENT_MAGIC, NUM_REGS};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn testdata(version: &str, program: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/testdata/go{version}/{program}"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup` first",
        p.display()
    );
    p
}

/// Addresses the random chunks live at; words in chunks point among them.
const POOL: [u64; 8] = [
    0x1000,
    0x1008,
    0x2000,
    0x2010,
    0x3000,
    0xc000_0000,
    0xc000_0100,
    0,
];

fn random_event(rng: &mut Rng, probe_id: u32) -> Vec<u8> {
    let mut data = vec![];
    let nchunks = rng.below(12);
    for _ in 0..nchunks {
        let len = rng.below(600) as u32;
        let addr = POOL[rng.below(POOL.len() as u64) as usize].wrapping_add(rng.below(3) * 8);
        let c = Chunk {
            addr,
            len,
            want: rng.next() as u32,
        };
        // SAFETY: Chunk is plain old data.
        data.extend_from_slice(unsafe {
            std::slice::from_raw_parts((&c as *const Chunk).cast::<u8>(), 16)
        });
        for _ in 0..len {
            // Mostly pointers into the pool and small numbers, some noise.
            data.push(match rng.below(4) {
                0 => rng.next() as u8,
                _ => 0,
            });
        }
        let words = len as usize / 8;
        let start = data.len() - len as usize;
        for w in 0..words {
            if rng.below(3) == 0 {
                let v = match rng.below(3) {
                    0 => POOL[rng.below(POOL.len() as u64) as usize],
                    1 => rng.below(40),
                    _ => rng.next(),
                };
                data[start + w * 8..start + w * 8 + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        data.resize(data.len().div_ceil(8) * 8, 0);
    }
    if rng.below(10) == 0 {
        // A lying length: the parser must not trust it.
        data.truncate(rng.below(data.len() as u64 + 1) as usize);
    }
    let mut regs = [0u64; NUM_REGS];
    for r in regs.iter_mut() {
        *r = match rng.below(3) {
            0 => POOL[rng.below(POOL.len() as u64) as usize],
            1 => rng.below(100),
            _ => rng.next(),
        };
    }
    regs[7] = POOL[rng.below(POOL.len() as u64) as usize]; // rsp
    let h = EventHeader {
        magic: EVENT_MAGIC,
        probe_id,
        pid: 1,
        tid: 1,
        ktime_ns: rng.next(),
        goid: rng.next(),
        g: 0,
        flags: rng.next() as u32,
        data_len: if rng.below(8) == 0 {
            rng.next() as u32
        } else {
            data.len() as u32
        },
        regs,
        read_errors: rng.next() as u32,
        steps: 0,
        kind: rng.below(2) as u32,
        nstack: rng.below(40) as u32,
        frame: rng.next(),
        entry_ktime: rng.next(),
    };
    // SAFETY: EventHeader is plain old data.
    let mut out = unsafe {
        std::slice::from_raw_parts(
            (&h as *const EventHeader).cast::<u8>(),
            std::mem::size_of::<EventHeader>(),
        )
    }
    .to_vec();
    out.extend_from_slice(&data);
    out
}

#[test]
fn decoder_is_total_on_arbitrary_events() {
    let funcs = [
        "main.scalars",
        "main.composite",
        "main.ifaces",
        "main.misc",
        "main.big",
        "main.snapshot",
        "main.Max",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for v in ["1.21.13", "1.27.3"] {
        let mut prog = Program::open(&testdata(v, "values")).unwrap();
        let mut plans = vec![];
        for f in funcs {
            plans.extend(prog.resolve(f, Limits::default()).unwrap());
        }
        prog.load_runtime_types();
        let mut decoded = 0;
        for _ in 0..3000 {
            for p in &plans {
                let bytes = random_event(&mut rng, 0);
                if let Some(ev) = RawEvent::parse(&bytes) {
                    let args = decode_args(&prog.debug, &prog.rtypes, &p.plan, &ev);
                    assert_eq!(args.len(), p.plan.params.len());
                    for (_, val) in &args {
                        let _ = val.to_json();
                        let _ = val.pretty();
                    }
                    decoded += 1;
                }
            }
        }
        assert!(decoded > 10_000, "go{v}: only {decoded} events decoded");
    }
    // Raw garbage of every length never parses into a panic.
    for len in 0..2048 {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = RawEvent::parse(&bytes);
        let mut with_magic = bytes.clone();
        if with_magic.len() >= 4 {
            with_magic[..4].copy_from_slice(&EVENT_MAGIC.to_le_bytes());
            let _ = RawEvent::parse(&with_magic).map(|e| e.describe());
        }
    }
}

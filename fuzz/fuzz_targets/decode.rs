//! The event decoder is total: arbitrary ring-buffer bytes decode (or are
//! rejected) without a panic, for the plans of functions taking every Go
//! kind (from `testdata/values` built by `cargo xtask setup`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use probe::{
    capture::Limits,
    decode::{decode_args, RawEvent},
    resolve::{Program, ResolvedProbe},
};

thread_local! {
    // libFuzzer calls the target on one thread; Program is not Sync.
    static P: (Program, Vec<ResolvedProbe>) = load();
}

fn load() -> (Program, Vec<ResolvedProbe>) {
    {
        let path = std::env::var("PROBE_FUZZ_BINARY")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/testdata/go1.27.3/values").into());
        let mut p = Program::open(std::path::Path::new(&path)).expect("run `cargo xtask setup` first");
        let mut plans = vec![];
        for f in ["main.scalars", "main.composite", "main.ifaces", "main.misc", "main.big", "main.Max"] {
            plans.extend(p.resolve(f, Limits::default()).unwrap());
        }
        p.load_runtime_types();
        (p, plans)
    }
}

fuzz_target!(|data: &[u8]| P.with(|(p, plans)| {
    if let Some(mut ev) = RawEvent::parse(data) {
        let _ = ev.describe();
        ev.bias = 0;
        let plan = &plans[ev.header.probe_id as usize % plans.len()].plan;
        for (_, v) in decode_args(&p.debug, &p.rtypes, plan, &ev) {
            let _ = v.to_json();
            let _ = v.pretty();
        }
    }
}));

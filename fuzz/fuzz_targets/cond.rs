//! The `--cond` parser and evaluator never panic on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        if let Ok(e) = probe::cond::parse(src) {
            let _ = probe::cond::render(&e);
        }
    }
});

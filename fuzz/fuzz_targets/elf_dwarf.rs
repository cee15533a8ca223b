//! The ELF, `.go.buildinfo`, build-id note, prologue and DWARF readers never
//! panic on arbitrary files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probe::binary::parse_buildinfo_version(data);
    let _ = probe::binary::parse_go_buildid_note(data);
    let _ = probe::prologue::after_stack_check(data);
    if let Ok(mut d) = probe::dwarf::DebugInfo::load(data, std::path::Path::new("fuzz")) {
        let names: Vec<String> = d.functions().iter().take(8).map(|f| f.name.clone()).collect();
        for n in names {
            if let Some(f) = d.function(&n).cloned() {
                let _ = d.params(&f, f.low_pc);
            }
        }
        let _ = d.runtime_layout();
        let _ = d.runtime_types();
    }
});

//! The ELF, `.go.buildinfo`, build-id note, prologue, DWARF and
//! `.gopclntab` (with argument info and runtime.g's type descriptor)
//! readers never panic on arbitrary files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = probe::binary::parse_buildinfo_version(data);
    let _ = probe::binary::parse_go_buildid_note(data);
    let _ = probe::prologue::after_stack_check(data);
    let _ = probe::pclntab::parse_arg_info(data);
    let _ = probe::pclntab::g_layout_from_type_info(data);
    if let Ok(p) = probe::pclntab::Pclntab::parse(data) {
        for f in p.functions().iter().take(8) {
            let _ = p.line_at(f, f.entry);
            let _ = p.arg_info(f, |_, _| None);
            let _ = p.funcdata(f, 5);
            let _ = p.start_line(f);
        }
        let _ = p.line_addresses("main.go", 1);
        let _ = p.function_at(0x401000);
    }
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

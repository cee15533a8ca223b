//! The `.gopclntab` reader against real Go binaries from `testdata/` (every
//! Go built by `cargo xtask setup`): functions, entries and lines must agree
//! with the DWARF of the same program, and `gofunc` found through
//! `runtime.firstmoduledata` must equal the `go:func.*` symbol.

use std::path::PathBuf;

use probe::{
    binary::Binary,
    dwarf::DebugInfo,
    pclntab::{gofunc_from_moduledata, ArgItem, Pclntab},
};

/// The 1-based line of `testdata/hot/main.go` holding `needle`, so editing
/// the program does not break the test.
fn hot_line(needle: &str) -> u64 {
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/hot/main.go"),
    )
    .unwrap();
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in hot/main.go")) as u64
        + 1
}

fn versions() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/testdata");
    let mut v: Vec<String> = std::fs::read_dir(&root)
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `cargo xtask setup` first",
                root.display()
            )
        })
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("go")
                .map(str::to_owned)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

fn testdata(version: &str, program: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/testdata/go{version}/{program}"));
    p.exists().then_some(p)
}

#[test]
fn functions_and_lines_match_dwarf() {
    for v in versions() {
        for prog in ["store", "hot"] {
            let path = testdata(&v, prog).unwrap();
            let bin = Binary::open(&path).unwrap();
            let debug = DebugInfo::load(&bin.data, &path).unwrap();
            let pcln = Pclntab::parse(&bin.data).unwrap();
            assert!(pcln.functions().len() > 1000, "go{v} {prog}");
            let mut checked = 0;
            for f in debug
                .functions()
                .iter()
                .filter(|f| f.name.starts_with("main."))
            {
                let p = pcln
                    .function(&f.name)
                    .unwrap_or_else(|| panic!("go{v} {prog}: {} not in pclntab", f.name));
                assert_eq!(p.entry, f.low_pc, "go{v} {prog} {}", f.name);
                // pclntab's end is the next function's entry (padding included).
                assert!(
                    p.end >= f.high_pc && p.end - f.high_pc < 64,
                    "go{v} {prog} {}",
                    f.name
                );
                assert_eq!(pcln.function_at(f.low_pc + 1), Some(p));
                // Line of every instruction start in DWARF's line table
                // equals pclntab's (sampled at each DWARF row of the function).
                for pc in [f.low_pc, f.low_pc + (f.high_pc - f.low_pc) / 2] {
                    let (Some((dfile, dline)), Some((pfile, pline))) =
                        (debug.line_at(pc), pcln.line_at(p, pc))
                    else {
                        continue;
                    };
                    assert_eq!(
                        (dfile, dline),
                        (pfile.as_str(), pline),
                        "go{v} {prog} {} {pc:#x}",
                        f.name
                    );
                    checked += 1;
                }
                if f.line != 0 {
                    assert_eq!(
                        pcln.start_line(p).map(u64::from),
                        Some(f.line),
                        "{}",
                        f.name
                    );
                }
            }
            assert!(checked >= 4, "go{v} {prog}: only {checked} lines compared");
        }
    }
}

#[test]
fn gofunc_from_moduledata_equals_symbol() {
    for v in versions() {
        for variant in ["hot", "hot-nodwarf", "store-pie"] {
            let Some(path) = testdata(&v, variant) else {
                continue;
            };
            let bin = Binary::open(&path).unwrap();
            let sym = bin
                .symbol("go:func.*")
                .unwrap_or_else(|| panic!("go{v} {variant}: no go:func.* symbol"));
            let pcln = Pclntab::parse(&bin.data).unwrap();
            assert_eq!(pcln.gofunc, Some(sym), "go{v} {variant}");
            if variant.ends_with("-pie") {
                continue; // a PIE's moduledata is filled by dynamic relocations
            }
            assert_eq!(
                gofunc_from_moduledata(&bin.data),
                Some(sym),
                "go{v} {variant}"
            );
        }
    }
}

#[test]
fn stripped_binary_has_same_functions_and_arg_info() {
    for v in versions() {
        let (Some(full), Some(stripped)) = (testdata(&v, "hot"), testdata(&v, "hot-stripped"))
        else {
            continue;
        };
        let a = Binary::open(&full).unwrap();
        let b = Binary::open(&stripped).unwrap();
        assert!(
            !b.has_dwarf && b.symbol("main.work").is_none(),
            "go{v}: not stripped"
        );
        let pa = Pclntab::parse(&a.data).unwrap();
        let pb = Pclntab::parse(&b.data).unwrap();
        assert_eq!(pb.gofunc_source, "runtime.firstmoduledata", "go{v}");
        let names = |p: &Pclntab| {
            p.functions()
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
        };
        let (na, nb) = (names(&pa), names(&pb));
        let only_a: Vec<_> = na.iter().filter(|n| !nb.contains(n)).collect();
        let only_b: Vec<_> = nb.iter().filter(|n| !na.contains(n)).collect();
        assert!(
            only_a.is_empty() && only_b.is_empty(),
            "go{v}: {only_a:?} vs {only_b:?}"
        );
        // main.work(n int, key string): n in a word, key as {ptr, len}.
        let f = pb.function("main.work").unwrap();
        let args = pb.arg_info(f, |at, n| b.read_virt(at, n)).unwrap();
        use ArgItem::*;
        assert_eq!(
            args,
            vec![
                Word { offset: 0, size: 8 },
                Agg(vec![
                    Word { offset: 8, size: 8 },
                    Word {
                        offset: 16,
                        size: 8
                    }
                ])
            ],
            "go{v}"
        );
        let (file, line) = pb.line_at(f, f.entry).unwrap();
        assert!(file.ends_with("testdata/hot/main.go"), "{file}");
        assert_eq!(line, hot_line("func work("), "go{v}");
        let body = hot_line("return inner(n) + len(key)");
        assert!(!pb.line_addresses("hot/main.go", body).is_empty(), "go{v}");
    }
}

#[test]
fn g_layout_from_type_info_matches_dwarf() {
    for v in versions() {
        let full = testdata(&v, "hot").unwrap();
        let a = Binary::open(&full).unwrap();
        let mut debug = DebugInfo::load(&a.data, &full).unwrap();
        let rt = debug.runtime_layout().unwrap();
        let want = Some((rt.goid_offset, rt.stack_hi_offset));
        assert_eq!(
            probe::pclntab::g_layout_from_type_info(&a.data),
            want,
            "go{v} hot"
        );
        for variant in ["hot-nodwarf", "hot-stripped", "store-stripped"] {
            let Some(p) = testdata(&v, variant) else {
                continue;
            };
            let b = Binary::open(&p).unwrap();
            assert_eq!(
                probe::pclntab::g_layout_from_type_info(&b.data),
                want,
                "go{v} {variant}"
            );
        }
    }
}

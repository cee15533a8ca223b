//! Resolution and decoding against real Go binaries from `testdata/`, built
//! by `cargo xtask setup` with every installed Go. No root needed: nothing is
//! loaded into the kernel; decoding runs on events assembled from the plan.

use std::path::PathBuf;

use probe::decode::RawEvent;
use probe::{
    decode::decode_args,
    dwarf::{Kind, Place},
    error::Error,
    resolve::{list_symbols, Program},
};
use probe_common::{desc, reg, Chunk, EventHeader, EVENT_MAGIC, EV_GOID, NUM_REGS};
use serde_json::json;

const GO_VERSIONS: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];

fn testdata(version: &str, program: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/testdata");
    let p = root.join(format!("go{version}/{program}"));
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup` first (it builds testdata/ with every Go)",
        p.display()
    );
    p
}

#[test]
fn resolves_put_with_receiver_string_slice_and_duration() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        assert_eq!(
            prog.binary.go_version.as_deref(),
            Some(format!("go{v}").as_str())
        );
        assert!(prog.binary.build_id.as_ref().is_some_and(|b| !b.is_empty()));
        let p = prog.resolve_func("main.(*Store).Put").unwrap();
        assert_eq!(p.function.line, 45, "go{v}");
        assert!(
            p.function.file.ends_with("testdata/store/main.go"),
            "{}",
            p.function.file
        );
        // The probe sits after the stack check, not on the first byte.
        assert!(
            p.pc > p.function.low_pc && p.pc < p.function.low_pc + 16,
            "go{v}: {:#x}",
            p.pc
        );
        let names: Vec<_> = p.plan.params.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["s", "key", "val", "ttl"]);
        // Register ABI: s=RAX, key=(RBX,RCX), val=(RDI,RSI,R8), ttl=R9.
        let regs: Vec<Vec<Place>> = p
            .plan
            .params
            .iter()
            .map(|x| x.pieces.iter().map(|pc| pc.place.clone()).collect())
            .collect();
        assert_eq!(regs[0], [Place::Reg(0)]);
        assert_eq!(regs[1], [Place::Reg(3), Place::Reg(2)]);
        assert_eq!(regs[2], [Place::Reg(5), Place::Reg(4), Place::Reg(8)]);
        assert_eq!(regs[3], [Place::Reg(9)]);
        assert_eq!(
            probe::decode::type_name(&prog.debug, p.plan.params[3].ty),
            "time.Duration"
        );
        // The walk starts from s (a pointer), key (a string) and val (a slice).
        let kinds: Vec<u8> = p.plan.roots.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [desc::PTR, desc::STRING, desc::SLICE],
            "go{v}: {:?}",
            p.plan.roots
        );
        let layout = prog.runtime.unwrap();
        assert!(
            layout.goid_offset > 0 && layout.stack_hi_offset == 8,
            "go{v}: {layout:?}"
        );
    }
}

#[test]
fn stack_assigned_arguments_follow_the_abi() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        let p = prog.resolve_func("main.kinds").unwrap();
        let place = |n: &str| {
            p.plan.params.iter().find(|x| x.name == n).unwrap().pieces[0]
                .place
                .clone()
        };
        // Nine integer registers take a..i; j, k, ok and name go to the stack
        // (offsets from RSP at entry: +8 skips the return address).
        assert_eq!(place("i"), Place::Reg(11));
        assert_eq!(place("j"), Place::Stack(8));
        assert_eq!(place("k"), Place::Stack(16));
        assert_eq!(place("ok"), Place::Stack(24));
        assert_eq!(place("name"), Place::Stack(32), "go{v}");
        assert_eq!(place("f32"), Place::Reg(17));
        assert_eq!(place("f64"), Place::Reg(18));
    }
}

#[test]
fn unknown_function_lists_near_matches() {
    let mut prog = Program::open(&testdata("1.27.3", "store")).unwrap();
    match prog.resolve_func("main.Store.Put") {
        Err(Error::UnknownFunction { near, .. }) => {
            assert_eq!(
                near.first().map(String::as_str),
                Some("main.(*Store).Put"),
                "{near:?}"
            )
        }
        other => panic!("expected UnknownFunction, got {:?}", other.map(|p| p.spec)),
    }
    let msg = prog
        .resolve_func("main.(*Store).Putt")
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("closest matches") && msg.contains("main.(*Store).Put"),
        "{msg}"
    );
}

#[test]
fn binaries_without_what_we_need_are_refused_with_the_reason() {
    // Without DWARF: opened from .gopclntab, with what is missing said.
    for v in GO_VERSIONS {
        for variant in ["store-nodwarf", "store-stripped"] {
            let Ok(path) = std::panic::catch_unwind(|| testdata(v, variant)) else {
                continue;
            };
            let mut prog = Program::open(&path).unwrap();
            assert!(prog.pcln.is_some(), "go{v} {variant}");
            assert!(prog.missing().unwrap().contains("-ldflags=-w"));
            let p = prog.resolve_func("main.(*Store).Put").unwrap();
            assert_eq!(p.line, 45, "go{v} {variant}");
            assert!(p.pc > p.function.low_pc, "after the stack check");
            // Put(s, key string, val []byte, ttl): words in RAX; RBX, RCX;
            // RDI, RSI, R8; R9, exactly as with DWARF.
            let regs: Vec<(String, Vec<Place>)> = p
                .plan
                .params
                .iter()
                .map(|x| {
                    (
                        x.name.clone(),
                        x.pieces.iter().map(|pc| pc.place.clone()).collect(),
                    )
                })
                .collect();
            let r = |n: &[u16]| n.iter().map(|&r| Place::Reg(r)).collect::<Vec<_>>();
            assert_eq!(
                regs,
                vec![
                    ("arg0".into(), r(&[0])),
                    ("arg1".into(), r(&[3, 2])),
                    ("arg2".into(), r(&[5, 4, 8])),
                    ("arg3".into(), r(&[9])),
                ],
                "go{v} {variant}"
            );
        }
    }
    let e = Program::open(std::path::Path::new("/bin/true"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotGo { .. }), "{e}");
    let e = Program::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .as_path(),
    )
    .err()
    .unwrap();
    assert!(matches!(e, Error::NotElf { .. }), "{e}");
}

#[test]
fn symbols_lists_methods_with_positions() {
    let prog = Program::open(&testdata("1.21.13", "store")).unwrap();
    let syms = list_symbols(&prog.debug, Some("(*store)"));
    let names: Vec<_> = syms.iter().map(|f| (f.name.as_str(), f.line)).collect();
    assert!(names.contains(&("main.(*Store).Put", 45)), "{names:?}");
    assert!(names.contains(&("main.(*Store).Get", 60)), "{names:?}");
}

#[test]
fn runtime_g_layout_comes_from_dwarf() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        let g = prog.debug.type_by_name("runtime.g").unwrap();
        let Kind::Struct { fields } = &prog.debug.underlying(g).kind else {
            panic!("runtime.g is a struct")
        };
        let goid = fields.iter().find(|f| f.name == "goid").unwrap().offset;
        assert_eq!(prog.runtime.unwrap().goid_offset, goid);
    }
}

/// A raw event as the kernel would submit it: header, then chunks.
fn event(regs: &[(u8, u64)], chunks: &[(u64, &[u8], u32)], flags: u32) -> Vec<u8> {
    let mut data = vec![];
    for (addr, bytes, want) in chunks {
        let c = Chunk {
            addr: *addr,
            len: bytes.len() as u32,
            want: *want,
        };
        // SAFETY: Chunk is plain old data.
        data.extend_from_slice(unsafe {
            std::slice::from_raw_parts((&c as *const Chunk).cast::<u8>(), 16)
        });
        data.extend_from_slice(bytes);
        data.resize(data.len().div_ceil(8) * 8, 0);
    }
    let mut h = EventHeader {
        magic: EVENT_MAGIC,
        probe_id: 0,
        pid: 1,
        tid: 1,
        ktime_ns: 0,
        goid: 1,
        g: 0,
        flags: flags | EV_GOID,
        data_len: data.len() as u32,
        regs: [0; NUM_REGS],
        read_errors: 0,
        steps: 0,
        kind: 0,
        nstack: 0,
        frame: 0,
        entry_ktime: 0,
    };
    for (r, v) in regs {
        h.regs[*r as usize] = *v;
    }
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

/// Byte offset of field `name` of struct type `ty`.
fn field(prog: &mut Program, ty: &str, name: &str) -> usize {
    let t = prog.debug.type_by_name(ty).unwrap();
    let Kind::Struct { fields } = &prog.debug.underlying(t).kind else {
        panic!()
    };
    fields.iter().find(|f| f.name == name).unwrap().offset as usize
}

fn args_json(
    prog: &Program,
    plan: &probe::capture::ProbePlan,
    bytes: &[u8],
) -> serde_json::Map<String, serde_json::Value> {
    let ev = RawEvent::parse(bytes).expect("a valid event");
    decode_args(&prog.debug, &prog.rtypes, plan, &ev)
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}

#[test]
fn decodes_captured_bytes_into_go_values() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        let p = prog.resolve_func("main.(*Store).Put").unwrap();
        let store = prog.debug.type_by_name("main.Store").unwrap();
        let size = prog.debug.ty(store).size as usize;
        let mut st = vec![0u8; size];
        let put =
            |st: &mut Vec<u8>, off: usize, b: &[u8]| st[off..off + b.len()].copy_from_slice(b);
        put(
            &mut st,
            field(&mut prog, "main.Store", "name"),
            &0x5000u64.to_le_bytes(),
        );
        put(
            &mut st,
            field(&mut prog, "main.Store", "name") + 8,
            &10u64.to_le_bytes(),
        );
        put(
            &mut st,
            field(&mut prog, "main.Store", "shard"),
            &7i32.to_le_bytes(),
        );
        put(
            &mut st,
            field(&mut prog, "main.Store", "puts"),
            &42u64.to_le_bytes(),
        );
        put(
            &mut st,
            field(&mut prog, "main.Store", "ratio"),
            &21.0f64.to_le_bytes(),
        );
        put(&mut st, field(&mut prog, "main.Store", "ready"), &[1]);
        put(
            &mut st,
            field(&mut prog, "main.Store", "level"),
            &(-3i16).to_le_bytes(),
        );
        put(
            &mut st,
            field(&mut prog, "main.Store", "data"),
            &0x9000u64.to_le_bytes(),
        );

        let regs = [
            (reg::RAX, 0x1000),
            (reg::RBX, 0x2000),
            (reg::RCX, 3),
            (reg::RDI, 0x3000),
            (reg::RSI, 3),
            (reg::R8, 8),
            (reg::R9, 42_000_000_000),
        ];
        let chunks: [(u64, &[u8], u32); 4] = [
            (0x1000, &st, size as u32),
            (0x5000, b"main-store", 10),
            (0x2000, b"k42", 3),
            (0x3000, &[42, 43, 44], 3),
        ];
        let j = args_json(&prog, &p.plan, &event(&regs, &chunks, 0));
        assert_eq!(j["key"], json!("k42"));
        assert_eq!(j["val"], json!([42, 43, 44]));
        assert_eq!(j["ttl"], json!(42_000_000_000i64));
        let s = &j["s"];
        assert_eq!(s["name"], json!("main-store"));
        assert_eq!(
            (s["shard"].clone(), s["puts"].clone(), s["ratio"].clone()),
            (json!(7), json!(42), json!(21.0))
        );
        assert_eq!(
            (s["ready"].clone(), s["level"].clone()),
            (json!(true), json!(-3))
        );
        // The map's memory is not in this event: marked, never invented.
        assert!(s["data"]["@unavailable"].is_string(), "{s}");

        // Cut short by a limit: marked, with the full length; memory that was
        // not captured because the budget ran out says so.
        let regs2 = [
            (reg::RAX, 0),
            (reg::RBX, 0x2000),
            (reg::RCX, 1000),
            (reg::RDI, 0x3000),
            (reg::RSI, 3),
            (reg::R8, 8),
            (reg::R9, 1),
        ];
        let long = vec![b'x'; 256];
        let j = args_json(
            &prog,
            &p.plan,
            &event(&regs2, &[(0x2000, &long, 1000)], probe_common::EV_BUDGET),
        );
        assert_eq!(j["s"], json!(null), "nil receiver");
        assert_eq!(j["key"]["@len"], json!(1000));
        assert_eq!(j["key"]["@truncated"].as_str().unwrap().len(), 256);
        assert!(
            j["val"]["@unavailable"]
                .as_str()
                .unwrap()
                .contains("--max-bytes"),
            "{}",
            j["val"]
        );
    }
}

#[test]
fn capture_plans_describe_maps_interfaces_and_arrays_per_go_release() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "values")).unwrap();
        let p = prog.resolve_func("main.composite").unwrap();
        // o (pointer), pts (slice) in registers; arr on the stack (an array
        // of 3 is never register-assigned): read where it lives; m, mp, nilm
        // (map headers) in registers; empty and nils no longer fit: stack;
        // nilp takes the last register.
        let kinds: Vec<(u8, u8)> = p.plan.roots.iter().map(|r| (r.kind, r.w0.kind)).collect();
        use desc::*;
        use probe_common::{SRC_REG as R, SRC_SP as S};
        assert_eq!(
            kinds,
            [
                (PTR, R),
                (SLICE, R),
                (PTR, S),
                (PTR, R),
                (PTR, R),
                (PTR, R),
                (PTR, S),
                (PTR, S),
                (PTR, R)
            ],
            "go{v}"
        );
        // The map header's walk depends on the release's map layout.
        let header = &prog.tables.types[p.plan.roots[3].target as usize];
        let hk = header.descs[0].kind;
        if v.starts_with("1.21") {
            assert_eq!(hk, ARRAY_POW2, "go{v}: hash<K,V>.buckets, 1 << B of them");
        } else {
            assert_eq!(hk, SWISS_DIR, "go{v}: Swiss directory or single group");
        }
        // [2]string inside Order: one descriptor repeated twice.
        let order = prog.debug.type_by_name("main.Order").unwrap();
        let t = prog.tables.tid(&prog.debug, order);
        let info = prog.tables.types[t as usize];
        assert!(
            info.descs[..info.n_descs as usize]
                .iter()
                .any(|d| d.kind == STRING && d.repeat == 2 && d.stride == 16),
            "go{v}: {info:?}"
        );
        let i = prog.resolve_func("main.ifaces").unwrap();
        let kinds: Vec<u8> = i.plan.roots.iter().map(|r| r.kind).collect();
        // Four interfaces fill eight registers; the other four are on the
        // stack and read where they live.
        assert_eq!(
            kinds,
            [EFACE, IFACE, IFACE, IFACE, PTR, PTR, PTR, PTR],
            "go{v}"
        );
        // Generic shape instantiations are found from the plain name; the
        // dictionary argument is hidden and accounted for in the ABI.
        let max = prog
            .resolve("main.Max", probe::capture::Limits::default())
            .unwrap();
        assert_eq!(max.len(), 2, "go{v}");
        for m in &max {
            let names: Vec<_> = m.plan.params.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["a", "b"], "go{v}: {}", m.function.name);
            assert_eq!(
                m.plan.params[0].pieces[0].place,
                Place::Reg(3),
                "go{v}: RAX carries the dictionary, a is in RBX"
            );
        }
    }
}

#[test]
fn runtime_types_fit_the_kernel_tables() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        prog.load_runtime_types();
        let (types, rtypes) = (prog.tables.types.len(), prog.tables.rtypes.len());
        assert!(rtypes > 100, "go{v}: runtime types registered: {rtypes}");
        assert!(
            types < probe_common::MAX_TYPES as usize && rtypes < probe_common::MAX_RTYPES as usize,
            "go{v}: {types} types, {rtypes} rtypes"
        );
        eprintln!(
            "go{v}: {types} kernel types, {rtypes} runtime types, {} overflowed",
            prog.tables.overflowed
        );
    }
}

/// A daemon policy's "no strings": no root or descriptor leads the kernel to
/// string or byte-slice contents, and the decoder says they were withheld
/// (with their lengths) even when bytes happen to be at their addresses.
#[test]
fn withheld_strings_are_not_planned_and_decode_as_withheld() {
    for v in GO_VERSIONS {
        let mut prog = Program::open(&testdata(v, "store")).unwrap();
        prog.tables.withhold_strings = true;
        let limits = probe::capture::Limits {
            strings: false,
            ..Default::default()
        };
        let p = prog.resolve("main.(*Store).Put", limits).unwrap().remove(0);
        // Only s (a pointer): key (a string) and val (a []byte) are not walked.
        let kinds: Vec<u8> = p.plan.roots.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [desc::PTR], "go{v}: {:?}", p.plan.roots);
        // Nor is Store.name, inside what s points to.
        for t in &prog.tables.types {
            for d in &t.descs[..t.n_descs as usize] {
                assert_ne!(d.kind, desc::STRING, "go{v}: a string descriptor");
            }
        }
        let store = prog.debug.type_by_name("main.Store").unwrap();
        let size = prog.debug.ty(store).size as usize;
        let mut st = vec![0u8; size];
        let name = field(&mut prog, "main.Store", "name");
        st[name..name + 8].copy_from_slice(&0x5000u64.to_le_bytes());
        st[name + 8..name + 16].copy_from_slice(&10u64.to_le_bytes());
        let regs = [
            (reg::RAX, 0x1000),
            (reg::RBX, 0x2000),
            (reg::RCX, 3),
            (reg::RDI, 0x3000),
            (reg::RSI, 3),
            (reg::R8, 8),
            (reg::R9, 5),
        ];
        // Even were the bytes there, they are not shown.
        let bytes = event(
            &regs,
            &[
                (0x1000, &st, 0),
                (0x2000, b"k42", 3),
                (0x3000, &[1, 2, 3], 0),
                (0x5000, b"main-store", 10),
            ],
            0,
        );
        let a = args_json(&prog, &p.plan, &bytes);
        assert_eq!(
            a["key"],
            json!({"@withheld": "strings", "@len": 3}),
            "go{v}"
        );
        assert_eq!(
            a["val"],
            json!({"@withheld": "strings", "@len": 3}),
            "go{v}"
        );
        assert_eq!(
            a["s"]["name"],
            json!({"@withheld": "strings", "@len": 10}),
            "go{v}"
        );
        assert_eq!(a["ttl"], 5, "go{v}");
    }
}

#[test]
fn constant_strings_are_read_from_the_binary_not_the_event() {
    for v in GO_VERSIONS {
        for (name, pie_bias) in [("store", 0u64), ("store-pie", 0x5555_0000_0000u64)] {
            let mut prog = Program::open(&testdata(v, name)).unwrap();
            let p = prog.resolve_func("main.(*Store).Put").unwrap();
            let (start, bytes) = prog
                .binary
                .rodata_bytes()
                .unwrap_or_else(|| panic!("go{v}/{name}: no read-only data segment"));
            let r = prog.binary.rodata.unwrap();
            assert!(r.len > 0 && prog.binary.read_virt(start, 16) == bytes.get(..16));
            // The segment must hold the string literals: the runtime's own
            // panic message is one.
            let lit = b"invalid memory address or nil pointer dereference";
            let off = bytes
                .windows(lit.len())
                .position(|w| w == lit)
                .expect("a runtime string literal in the read-only segment")
                as u64;
            // `key` points at the literal (as run, `pie_bias` further up);
            // the event has no chunk for it, as the kernel leaves it unread.
            let key = start + pie_bias + off;
            let regs = [
                (reg::RAX, 0),
                (reg::RBX, key),
                (reg::RCX, 22),
                (reg::RDI, 0),
                (reg::RSI, 0),
            ];
            let raw = event(&regs, &[], 0);
            let mut ev = RawEvent::parse(&raw).unwrap();
            ev.bias = pie_bias;
            let decode = |ev: &RawEvent| -> serde_json::Map<String, serde_json::Value> {
                decode_args(&prog.debug, &prog.rtypes, &p.plan, ev)
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect()
            };
            assert!(
                decode(&ev)["key"]["@unavailable"].is_string(),
                "without the binary's bytes it is not captured"
            );
            ev.rodata = prog.binary.rodata_bytes();
            assert_eq!(decode(&ev)["key"], json!("invalid memory address"));
            // The caps still hold: a string longer than --max-string (256)
            // is cut there, as a captured one would be.
            let raw = event(&[(reg::RBX, key), (reg::RCX, 5000)], &[], 0);
            let mut ev = RawEvent::parse(&raw).unwrap();
            (ev.bias, ev.rodata) = (pie_bias, prog.binary.rodata_bytes());
            let j = decode(&ev);
            assert_eq!(j["key"]["@len"], json!(5000), "{}", j["key"]);
            let t = j["key"]["@truncated"].as_str().unwrap();
            assert!(t.starts_with(std::str::from_utf8(lit).unwrap()), "{t}");
            assert!(t.chars().count() <= 256, "{t}");
            // Past the segment's end nothing is invented.
            let raw = event(
                &[(reg::RBX, start + pie_bias + r.len as u64), (reg::RCX, 3)],
                &[],
                0,
            );
            let mut ev = RawEvent::parse(&raw).unwrap();
            (ev.bias, ev.rodata) = (pie_bias, prog.binary.rodata_bytes());
            assert!(decode(&ev)["key"]["@unavailable"].is_string());
        }
    }
}

//! Golden files of `probe attach --dry-run` (resolved PCs, where each uprobe
//! is placed and why, variable locations, the capture plan's size, the
//! kernel path, the condition's split between kernel and userspace) for
//! every function of every testdata program, on every default Go version:
//! what the resolver, the plan compiler and the condition compiler decide,
//! pinned, so that moving code around cannot change it unnoticed.
//! Needs no root (a dry run attaches nothing). `PROBE_UPDATE_GOLDEN=1`
//! rewrites them under `integration/golden/dryrun/`.

use std::{path::PathBuf, process::Command};

use probe_integration::{go_versions, probe_bin, testdata};

/// The Go releases whose goldens must exist (`cargo xtask test`'s default
/// set); others (`--go all`) are checked where a golden exists.
const REQUIRED: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];

/// Extra runs beyond "every function at entry": returns, a condition split
/// between kernel and userspace, a line probe.
const EXTRA: &[(&str, &str, &[&str])] = &[
    (
        "calls",
        "returns",
        &[
            "--func",
            "main.divide",
            "--func",
            "main.mayPanic",
            "--returns",
        ],
    ),
    (
        "store",
        "cond",
        &[
            "--func",
            "main.(*Store).Put",
            "--cond",
            "key == \"k7\" && len(val) > 2",
        ],
    ),
    (
        "store",
        "line",
        &["--line", "main.go:49", "--capture", "args,locals"],
    ),
];

fn golden(version: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden/dryrun")
        .join(format!("go{version}"))
        .join(format!("{name}.txt"))
}

/// The project root in source paths, and the kernel-dependent walk line,
/// left out: the rest depends only on the binary.
fn normalize(out: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    out.replace(root.to_str().unwrap(), "$ROOT")
        .lines()
        .filter(|l| !l.trim_start().starts_with("walk loop:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The `main.` functions of `bin` that have source (not compiler wrappers).
fn main_functions(bin: &std::path::Path) -> Vec<String> {
    let out = Command::new(probe_bin())
        .arg("symbols")
        .arg(bin)
        .arg("main.")
        .output()
        .expect("run probe symbols");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with("<generated>"))
        .filter_map(|l| l.split('\t').next())
        .map(str::to_owned)
        .collect()
}

fn dry_run(bin: &std::path::Path, args: &[String]) -> String {
    let out = Command::new(probe_bin())
        .args(["attach", "--binary"])
        .arg(bin)
        .args(args)
        .arg("--dry-run")
        .output()
        .expect("run probe attach --dry-run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {all}");
    normalize(&all)
}

#[test]
fn dry_runs_match_golden_on_every_go_version() {
    let update = std::env::var_os("PROBE_UPDATE_GOLDEN").is_some();
    let mut checked = 0;
    let mut differ = vec![];
    for v in go_versions() {
        let mut runs: Vec<(String, PathBuf, Vec<String>)> = vec![];
        for prog in ["calls", "hot", "store", "values"] {
            let bin = testdata(&v, prog);
            let args = main_functions(&bin)
                .into_iter()
                .flat_map(|f| ["--func".to_owned(), f])
                .collect();
            runs.push((prog.to_owned(), bin, args));
        }
        for (prog, name, args) in EXTRA {
            let args = args.iter().map(|a| a.to_string()).collect();
            runs.push((format!("{prog}-{name}"), testdata(&v, prog), args));
        }
        for (name, bin, args) in runs {
            let got = dry_run(&bin, &args);
            let path = golden(&v, &name);
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let Ok(want) = std::fs::read_to_string(&path) else {
                assert!(
                    !REQUIRED.contains(&v.as_str()),
                    "{} missing: run with PROBE_UPDATE_GOLDEN=1",
                    path.display()
                );
                continue;
            };
            checked += 1;
            if got != want {
                differ.push(format!(
                    "{}:\n{}",
                    path.display(),
                    first_difference(&want, &got)
                ));
            }
        }
    }
    assert!(differ.is_empty(), "dry runs differ from their goldens (PROBE_UPDATE_GOLDEN=1 rewrites them after a reviewed change):\n{}", differ.join("\n"));
    assert!(update || checked > 0, "no golden checked");
}

/// The first line that differs, with its number.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (w.get(i), g.get(i));
        if a != b {
            return format!(
                "  line {}: want {:?}\n  line {}: got  {:?}",
                i + 1,
                a.unwrap_or(&"<end>"),
                i + 1,
                b.unwrap_or(&"<end>")
            );
        }
    }
    "  (equal)".into()
}

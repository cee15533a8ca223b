//! `cargo xtask vm-test`: Probe's core end-to-end tests inside Debian's real
//! amd64 kernels, each booted under QEMU (TCG: nested KVM hangs on the
//! machines this runs on) from a busybox initramfs.
//!
//! This module owns the kernel matrix ([`KERNELS`]), the core set of
//! integration tests run in every VM ([`CORE`]), the downloads (Debian kernel
//! packages, cached under `target/tools/vm/`), the initramfs, the `/init`
//! script that runs the checks and prints `@@VM` markers on the serial
//! console, running the VMs (serial logs under `target/vm-logs/`) and the
//! report. The checks are the existing integration tests, built by cargo and
//! copied in: nothing here re-implements what they check.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{clean, ebpf_object, ensure_debian, step, tools};

mod initrd;
mod kernels;
mod run;

/// Go releases inside the VMs: the oldest supported and the newest (each
/// more adds ~15 MB of test programs to the initramfs and a run per test).
const VM_GO: &[&str] = &["1.21.13", "1.27.3"];

/// Where the Debian archive for a kernel comes from.
#[derive(Clone, Copy, PartialEq)]
enum Suite {
    /// The machine's own apt sources (Debian 12).
    Bookworm,
    /// Debian 11, through a private sources list under `target/tools/vm/`:
    /// the machine's apt configuration is never touched.
    Bullseye,
}

/// What a kernel must do.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    /// Pass the core set (and `probe selftest programs`, where it exists).
    Core,
    /// Refuse to attach, saying what the kernel lacks (not a verifier dump).
    TooOld,
}

/// How `probe` runs in a VM.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// `PROBE_FORCE_NO_BPF_LOOP=1`: the kernel-side walk without `bpf_loop`.
    NoBpfLoop,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::NoBpfLoop => "no-bpf-loop",
        }
    }
}

/// A kernel of the matrix: the package `prefix<N>suffix` with the highest N
/// the archive has (the first run picks it; later runs reuse the cache).
struct Kernel {
    label: &'static str,
    suite: Suite,
    prefix: &'static str,
    suffix: &'static str,
    plan: Plan,
    modes: &'static [Mode],
}

/// The kernel matrix. A kernel is added here (and, if it needs another
/// archive, as a [`Suite`]).
const KERNELS: &[Kernel] = &[
    // Debian 12's default kernel: the oldest kernel Probe supports.
    Kernel {
        label: "6.1",
        suite: Suite::Bookworm,
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64",
        plan: Plan::Core,
        modes: &[Mode::Normal, Mode::NoBpfLoop],
    },
    // Debian 12's backported LTS kernel.
    Kernel {
        label: "6.12",
        suite: Suite::Bookworm,
        prefix: "linux-image-6.12.",
        suffix: "+deb12-amd64",
        plan: Plan::Core,
        modes: &[Mode::Normal, Mode::NoBpfLoop],
    },
    // Debian 11's kernel: no attach cookies (5.15) nor bpf_loop (5.17), so
    // Probe must refuse it clearly. One mode: the fallback walk does not
    // make up for the missing cookies.
    Kernel {
        label: "5.10",
        suite: Suite::Bullseye,
        prefix: "linux-image-5.10.0-",
        suffix: "-amd64",
        plan: Plan::TooOld,
        modes: &[Mode::Normal],
    },
];

/// One integration test of the core set: its test binary (the file name
/// under `integration/tests/`), its name, and the `testdata` programs it
/// runs (only those are copied into the initramfs).
struct CoreTest {
    bin: &'static str,
    name: &'static str,
    programs: &'static [&'static str],
}

/// The core set run in every supported kernel, in both modes. Left out, to
/// stay within `cargo xtask test`'s time budget (every test runs ~10x slower
/// under TCG): the load and overhead tests (timing-bound, meaningless under
/// emulation), the etcd fleet and OTLP tests (they test Probe's userspace,
/// which the kernel does not change), and the rest of each file, whose
/// kernel-side paths the tests below already take.
const CORE: &[CoreTest] = &[
    // Attach by function to a running process; every field of a struct,
    // map, slice and string argument decoded.
    CoreTest {
        bin: "attach",
        name: "put_is_decoded_on_every_go_version",
        programs: &["store"],
    },
    // Attach by source line: arguments and locals in mid-function.
    CoreTest {
        bin: "lines",
        name: "line_probe_shows_args_and_locals",
        programs: &["store"],
    },
    // Values of every Go kind (scalars, composites, interfaces, maps of both
    // layouts, generics) against the golden files.
    CoreTest {
        bin: "values",
        name: "every_kind_matches_golden_on_every_go_version",
        programs: &["values"],
    },
    // Conditions evaluated in the kernel, in userspace and split between both.
    CoreTest {
        bin: "breakpoints",
        name: "condition_selects_exactly_the_matching_hits",
        programs: &["calls"],
    },
    // `--returns`: the return probe, named results, errors and durations.
    CoreTest {
        bin: "breakpoints",
        name: "returns_report_named_results_errors_and_durations",
        programs: &["calls"],
    },
    // `--stack` with the raw stack window read in the kernel.
    CoreTest {
        bin: "attach",
        name: "stack_window_shows_the_raw_stack_at_the_hit",
        programs: &["store"],
    },
    // A position-independent executable (loaded at a random address).
    CoreTest {
        bin: "compat",
        name: "pie_binaries_decode_like_static_ones",
        programs: &["values-pie"],
    },
    // Binaries without DWARF and without symbols: `.gopclntab` only.
    CoreTest {
        bin: "stripped",
        name: "func_on_binaries_without_dwarf_shows_argument_words",
        programs: &["hot-nodwarf", "hot-stripped"],
    },
    // Every eBPF program variant loads; `probe doctor` on this kernel.
    CoreTest {
        bin: "kernels",
        name: "every_program_variant_loads_on_this_kernel",
        programs: &[],
    },
    CoreTest {
        bin: "kernels",
        name: "doctor_reports_this_kernel_and_its_features",
        programs: &[],
    },
    // Receiver, string, []byte and Duration of `main.(*Store).Put` (Go 1.21
    // and 1.27) decoded alike by the walk with bpf_loop and its fallback.
    CoreTest {
        bin: "kernels",
        name: "fallback_walk_decodes_put_like_bpf_loop",
        programs: &["store"],
    },
    // The daemon adds a breakpoint for a client and removes it (and its
    // uprobe in the kernel) when the client exits.
    CoreTest {
        bin: "daemon",
        name: "a_clean_watch_exit_detaches_at_once_and_max_hits_stops_it",
        programs: &["store"],
    },
];

/// Labels of the two checks that are not integration tests (those are
/// `BIN::NAME`, or `BIN::*` with filters).
const SELFTEST: &str = "probe-selftest-programs";
const TOO_OLD: &str = "probe-refuses-old-kernel";

/// What `cargo xtask vm-test` was asked for.
pub(crate) struct Options {
    /// Kernel labels (empty: all of [`KERNELS`]).
    pub kernels: Vec<String>,
    /// Test name filters: when given, every integration test binary runs
    /// with them in place of the core set.
    pub filters: Vec<String>,
    /// Seconds a VM may run before it is killed.
    pub timeout: u64,
    /// VMs run at the same time.
    pub jobs: usize,
    pub memory_mib: u32,
    pub cpus: u32,
}

/// Measured on 2 host cores (6.12, both modes, the core set, under a
/// concurrent build): one VM at a time with 2 vCPUs 135 s; two at a time
/// with 1 vCPU each 92 s, with 2 vCPUs each 100 s. The tests wait on their
/// targets more than they compute, so two VMs overlap well. A VM takes
/// 65-100 s: 300 s means it hangs.
pub(crate) const DEFAULTS: Options = Options {
    kernels: vec![],
    filters: vec![],
    timeout: 300,
    jobs: 2,
    memory_mib: 1024,
    cpus: 1,
};

fn vm_dir(root: &Path) -> PathBuf {
    tools(root).join("vm")
}

/// Runs the matrix and prints the report; fails if any expectation failed.
pub(crate) fn run_matrix(root: &Path, probe: &Path, opts: &Options) -> Result<()> {
    let kernels = select_kernels(&opts.kernels)?;
    ensure_debian(
        "the VM tests",
        &[
            ("qemu-system-x86", "qemu-system-x86_64"),
            ("busybox-static", "busybox"),
            ("cpio", "cpio"),
            ("binutils", "objcopy"),
        ],
    )?;
    let started = Instant::now();
    let mut fetched = vec![];
    for k in &kernels {
        fetched.push((*k, kernels::fetch_kernel(root, k)?));
    }
    let tests = build_test_binaries(root)?;
    let initrd = initrd::build(root, probe, &tests, &opts.filters)?;
    eprintln!(
        "VM set-up (downloads, test binaries, initramfs) took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let mut jobs = vec![];
    for (k, f) in &fetched {
        for m in k.modes {
            jobs.push(run::Job {
                kernel: k,
                vmlinuz: f.vmlinuz.clone(),
                release: f.release.clone(),
                mode: *m,
            });
        }
    }
    let results = run::run_jobs(root, &initrd, &jobs, opts);
    run::report(&results)
}

fn select_kernels(labels: &[String]) -> Result<Vec<&'static Kernel>> {
    if labels.is_empty() {
        return Ok(KERNELS.iter().collect());
    }
    labels
        .iter()
        .map(|l| {
            KERNELS.iter().find(|k| k.label == l).with_context(|| {
                let known: Vec<_> = KERNELS.iter().map(|k| k.label).collect();
                format!(
                    "no kernel {l:?} in the matrix (known: {})",
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// Builds the integration test binaries (a no-op after `cargo xtask test`
/// built them) and returns them by test target name.
fn build_test_binaries(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    step("building the integration test binaries");
    let out = clean("cargo")
        .current_dir(root)
        .args([
            "test",
            "-p",
            "probe-integration",
            "--no-run",
            "--message-format=json",
        ])
        // As `cargo xtask test` sets it: another value would rebuild probe-user.
        .env("PROBE_EBPF_OBJECT", ebpf_object(root))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the integration tests failed");
    }
    let mut bins = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(exe)) = (
            is_test,
            msg["target"]["name"].as_str(),
            msg["executable"].as_str(),
        ) {
            bins.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    for t in CORE {
        if !bins.contains_key(t.bin) {
            bail!(
                "no integration test binary {:?} (core set entry {})",
                t.bin,
                t.name
            );
        }
    }
    Ok(bins)
}

/// The test binaries and testdata programs the initramfs needs: the core
/// set's, or, with filters, every binary and every static program.
fn needed(
    tests: &BTreeMap<String, PathBuf>,
    filters: &[String],
) -> (Vec<(String, PathBuf)>, Option<Vec<&'static str>>) {
    if !filters.is_empty() {
        return (tests.clone().into_iter().collect(), None);
    }
    let mut bins: Vec<(String, PathBuf)> = vec![];
    let mut programs: Vec<&'static str> = vec![];
    for t in CORE {
        if !bins.iter().any(|(b, _)| b == t.bin) {
            bins.push((t.bin.to_owned(), tests[t.bin].clone()));
        }
        for p in t.programs {
            if !programs.contains(p) {
                programs.push(p);
            }
        }
    }
    // The too-old check starts `store`.
    if !programs.contains(&"store") {
        programs.push("store");
    }
    (bins, Some(programs))
}

fn vm_go() -> &'static [&'static str] {
    VM_GO
}

/// The `/init` script's checks: `check LABEL COMMAND…` lines, selected at
/// boot by the `vm_plan` variable the kernel command line sets.
fn checks_script(bins: &[(String, PathBuf)], filters: &[String]) -> String {
    let mut core = String::new();
    if filters.is_empty() {
        for t in CORE {
            let _ = writeln!(
                core,
                "  check {bin}::{name} /probe/tests/{bin} --exact {name} --test-threads 1",
                bin = t.bin,
                name = t.name
            );
        }
    } else {
        let quoted: Vec<String> = filters.iter().map(|f| shell_quote(f)).collect();
        for (bin, _) in bins {
            let _ = writeln!(
                core,
                "  check {bin}::* /probe/tests/{bin} {} --test-threads 1",
                quoted.join(" ")
            );
        }
    }
    format!(
        "case \"$vm_plan\" in\ncore)\n{core}  selftest\n  ;;\ntoo-old)\n  check {TOO_OLD} too_old\n  selftest\n  ;;\nesac\n"
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

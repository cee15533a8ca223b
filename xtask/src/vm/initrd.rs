//! The VMs' initramfs: busybox, `probe`, the integration test binaries and
//! the testdata programs they run, the shared libraries the dynamic ones
//! need, and the `/init` script that runs the checks. One uncompressed newc
//! archive serves every kernel and mode (the kernel command line picks the
//! plan and mode). Uncompressed because it is faster: measured with a
//! 212 MiB archive, boot to power-off took 8.9 s against 10.5 s for
//! `gzip -1` (the emulated CPU inflates slowly), which also took 5 s to
//! compress.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{run, step, which};

/// Builds `target/vm/initramfs.cpio` and returns its path.
pub(super) fn build(
    root: &Path,
    probe: &Path,
    tests: &BTreeMap<String, PathBuf>,
    filters: &[String],
) -> Result<PathBuf> {
    step("building the VM initramfs");
    let out = root.join("target/vm");
    let stage = out.join("initramfs");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "proc", "sys", "dev", "tmp", "probe/tests"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    let busybox = which("busybox").context("no busybox on PATH")?;
    install(&busybox, &stage.join("bin/busybox"), false)?;
    install(probe, &stage.join("probe/probe"), true)?;
    let (bins, programs) = super::needed(tests, filters);
    for (name, exe) in &bins {
        install(exe, &stage.join("probe/tests").join(name), true)?;
    }
    copy_testdata(root, &stage, programs.as_deref())?;
    // The tests read Go sources (`source_line`) and golden files at the
    // absolute paths they were compiled with: the project's directory.
    let src = stage.join(root.strip_prefix("/").unwrap_or(root));
    copy_tree(
        &root.join("integration/golden"),
        &src.join("integration/golden"),
    )?;
    copy_tree(&root.join("testdata"), &src.join("testdata"))?;
    let init = stage.join("init");
    std::fs::write(&init, init_script(&bins, filters))?;
    set_executable(&init)?;
    let cpio = out.join("initramfs.cpio");
    run(Command::new("sh")
        .current_dir(&stage)
        .arg("-c")
        .arg(format!(
            "find . | cpio -o -H newc -R 0:0 --quiet > '{}'",
            cpio.display()
        )))?;
    let mib = std::fs::metadata(&cpio)?.len() as f64 / (1 << 20) as f64;
    eprintln!("initramfs: {} ({mib:.0} MiB)", cpio.display());
    Ok(cpio)
}

/// Copies a binary into the initramfs with the libraries `ldd` lists (and
/// the ELF interpreter) at their own paths. `strip`: without debug info,
/// which the VMs never read and which is most of a debug build's size.
fn install(src: &Path, dst: &Path, strip: bool) -> Result<()> {
    if strip {
        run(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(src)
            .arg(dst))?;
    } else {
        std::fs::copy(src, dst).with_context(|| format!("copy {}", src.display()))?;
    }
    let stage = dst
        .ancestors()
        .find(|a| a.join("init").exists() || a.join("bin/busybox").exists())
        .context("initramfs root not found")?;
    let out = Command::new("ldd").arg(src).output()?;
    // A static binary: ldd exits non-zero ("not a dynamic executable").
    if !out.status.success() {
        return Ok(());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/…/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)";
        // linux-vdso has no file.
        let path = match line.split_once("=> ") {
            Some((_, r)) => r.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else {
            continue;
        };
        let to = stage.join(&path[1..]);
        if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap())?;
            // Follows symlinks: the file itself lands under the listed name.
            std::fs::copy(path, &to).with_context(|| format!("copy {path}"))?;
        }
    }
    Ok(())
}

/// The testdata programs, for the VMs' Go releases: those named, or every
/// static one (the `-cgo` variants need the C library's resolver set up:
/// left out).
fn copy_testdata(root: &Path, stage: &Path, programs: Option<&[&str]>) -> Result<()> {
    for v in super::vm_go() {
        let from = root.join(format!("target/testdata/go{v}"));
        let to = stage.join(format!("probe/testdata/go{v}"));
        std::fs::create_dir_all(&to)?;
        let names: Vec<String> = match programs {
            Some(p) => p.iter().map(|s| s.to_string()).collect(),
            None => std::fs::read_dir(&from)
                .with_context(|| format!("{}: run `cargo xtask setup`", from.display()))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with("-cgo"))
                .collect(),
        };
        for n in names {
            let src = from.join(&n);
            if !src.exists() {
                bail!("{} missing: run `cargo xtask setup`", src.display());
            }
            std::fs::copy(&src, to.join(&n))?;
        }
    }
    Ok(())
}

/// Copies a directory's files (recursively).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `/init`: mounts what Probe and the tests need, runs the checks between
/// `@@VM begin`/`@@VM end` markers on the console, then powers off.
fn init_script(bins: &[(String, PathBuf)], filters: &[String]) -> String {
    let go = super::vm_go().join(",");
    let store = format!("/probe/testdata/go{}/store", super::vm_go()[0]);
    let checks = super::checks_script(bins, filters);
    let selftest = super::SELFTEST;
    format!(
        r#"#!/bin/busybox sh
# Written by xtask/src/vm/initrd.rs. vm_plan and vm_mode come from the
# kernel command line.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
# The daemon tests talk TCP on 127.0.0.1.
ip link set lo up
export HOME=/tmp RUST_BACKTRACE=1
export PROBE_BIN=/probe/probe PROBE_TESTDATA=/probe/testdata PROBE_GO_VERSIONS={go}
if [ "$vm_mode" = no-bpf-loop ]; then export PROBE_FORCE_NO_BPF_LOOP=1; fi
echo "@@VM start kernel=$(uname -r) cpus=$(nproc) plan=$vm_plan mode=$vm_mode"

check() {{
  label=$1; shift
  echo "@@VM begin $label"
  read t0 _ < /proc/uptime
  "$@" </dev/null 2>&1
  rc=$?
  read t1 _ < /proc/uptime
  echo "@@VM end $label rc=$rc t0=$t0 t1=$t1"
}}

# Attaching on a kernel Probe does not support must fail and say why.
too_old() {{
  {store} -interval 20ms >/dev/null 2>&1 &
  pid=$!
  sleep 1
  /probe/probe attach --pid $pid --func 'main.(*Store).Put' --duration 2s
  rc=$?
  kill $pid
  return $rc
}}

# Loads every eBPF program variant Probe can generate.
selftest() {{
  check {selftest} /probe/probe selftest programs
}}

{checks}
echo "@@VM done"
poweroff -f
"#
    )
}

//! Debian's kernel packages for the VMs: the newest of each series the
//! archive has, downloaded with `apt-get download` (Debian 11's through a
//! private sources list), only the kernel image unpacked, all cached under
//! `target/tools/vm/kernels/<label>/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{vm_dir, Kernel, Suite};
use crate::{run, step};

/// A kernel image on disk and its release (`uname -r`).
pub(super) struct Fetched {
    pub(super) vmlinuz: PathBuf,
    pub(super) release: String,
}

/// Downloads and unpacks a kernel unless `target/tools/vm/kernels/<label>/`
/// already holds it: the second run does not even ask apt which is newest.
pub(super) fn fetch_kernel(root: &Path, k: &Kernel) -> Result<Fetched> {
    let dir = vm_dir(root).join("kernels").join(k.label);
    let vmlinuz = dir.join("vmlinuz");
    let release_file = dir.join("release");
    if let (true, Ok(release)) = (vmlinuz.exists(), std::fs::read_to_string(&release_file)) {
        return Ok(Fetched {
            vmlinuz,
            release: release.trim().to_owned(),
        });
    }
    let apt = match k.suite {
        Suite::Bookworm => vec![],
        Suite::Bullseye => bullseye_apt(root)?,
    };
    let package = newest_package(&apt, k)?;
    step(&format!("downloading {package} (the {} kernel)", k.label));
    let tmp = dir.join("download");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    run(Command::new("apt-get")
        .current_dir(&tmp)
        .args(&apt)
        // As root into a directory `_apt` cannot write: say so instead of
        // warning that the download is not sandboxed.
        .args(["-o", "APT::Sandbox::User=root", "download", "-qq", &package]))?;
    let deb = std::fs::read_dir(&tmp)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    // Only the kernel image is unpacked: the modules are not needed (what
    // the tests use is built in) and would add 400 MB to the cache.
    let unpack = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*'",
        deb.display(),
        tmp.display()
    );
    run(Command::new("sh").arg("-c").arg(unpack))?;
    let image = std::fs::read_dir(tmp.join("boot"))?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
        .context("no boot/vmlinuz-* in the package")?;
    let release = image.file_name().to_string_lossy()["vmlinuz-".len()..].to_owned();
    std::fs::rename(image.path(), &vmlinuz)?;
    std::fs::write(&release_file, format!("{release}\n"))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(Fetched { vmlinuz, release })
}

/// The newest `prefix<N>suffix` package apt knows. The machine's own lists
/// are refreshed once if they have none (a fresh machine has no lists).
fn newest_package(apt: &[String], k: &Kernel) -> Result<String> {
    for attempt in 0..2 {
        let out = Command::new("apt-cache")
            .args(apt)
            .args(["pkgnames", k.prefix])
            .output()
            .context("cannot run apt-cache")?;
        let best = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|name| {
                let n = name.strip_prefix(k.prefix)?.strip_suffix(k.suffix)?;
                Some((n.parse::<u64>().ok()?, name.to_owned()))
            })
            .max();
        if let Some((_, name)) = best {
            return Ok(name);
        }
        if attempt == 0 && k.suite == Suite::Bookworm {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
        }
    }
    bail!(
        "apt knows no package {}<N>{}: is this Debian 12 with its main archive?",
        k.prefix,
        k.suffix
    )
}

/// apt options that read Debian 11's archive from a private sources list,
/// package lists and cache under `target/tools/vm/apt-bullseye/` (updated on
/// first use), leaving the machine's apt sources and lists alone.
fn bullseye_apt(root: &Path) -> Result<Vec<String>> {
    let dir = vm_dir(root).join("apt-bullseye");
    let lists = dir.join("lists");
    let cache = dir.join("cache");
    std::fs::create_dir_all(lists.join("partial"))?;
    std::fs::create_dir_all(cache.join("archives/partial"))?;
    let list = dir.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} bullseye main\n",
            debian_mirror()
        ),
    )?;
    let opts: Vec<String> = [
        format!("Dir::Etc::sourcelist={}", list.display()),
        "Dir::Etc::sourceparts=-".to_owned(),
        format!("Dir::State::Lists={}", lists.display()),
        format!("Dir::Cache={}", cache.display()),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect();
    let has_lists = std::fs::read_dir(&lists)?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"));
    if !has_lists {
        step("fetching Debian 11 (bullseye) package lists into a private apt directory");
        run(Command::new("apt-get").args(&opts).args(["update", "-qq"]))?;
    }
    Ok(opts)
}

/// The Debian mirror the machine's own apt sources use (so a proxy or a
/// local mirror set up there is used for bullseye too).
fn debian_mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    for e in std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    for t in &texts {
        for l in t.lines() {
            // deb822 ("URIs: …") and one-line ("deb [opts] URI suite …") forms.
            let uri = match l.strip_prefix("URIs:") {
                Some(u) => u.split_whitespace().next(),
                None if l.starts_with("deb ") => {
                    l.split_whitespace().skip(1).find(|w| w.contains("://"))
                }
                None => None,
            };
            if let Some(u) = uri.filter(|u| u.trim_end_matches('/').ends_with("/debian")) {
                return u.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

//! The traced executable as a file: ELF checks, Go identification (version,
//! build id), and the translation from virtual addresses to the file offsets
//! that uprobes are attached at.
//!
//! Owns the bytes of the file; [`crate::dwarf`] parses debug info out of it.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::error::Error;

/// An opened executable.
pub struct Binary {
    pub path: PathBuf,
    pub data: Vec<u8>,
    /// `go1.27.3` as the runtime reports it, when the binary is Go.
    pub go_version: Option<String>,
    /// The Go build id (`.note.go.buildid`), when present.
    pub build_id: Option<String>,
    pub has_dwarf: bool,
    pub is_go: bool,
    /// The read-only data segment, when there is one (see [`Rodata`]).
    pub rodata: Option<Rodata>,
}

/// The segment holding `.rodata` (string literals, constant tables) when
/// the ELF maps it read-only and not executable, as Go's linker does: the
/// process's bytes there are the file's for as long as it runs, so the
/// kernel skips reading pointer-free values there and the decoder takes
/// them from the file (see `ProbeParams::rodata_start`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rodata {
    /// Virtual address as linked.
    pub addr: u64,
    /// Where its bytes start in the file.
    pub offset: usize,
    pub len: usize,
}

impl Binary {
    /// Reads and checks `path`. Any ELF opens; [`Binary::require_go_dwarf`]
    /// is the check for function probes.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let data = std::fs::read(path).map_err(|source| Error::Io {
            what: format!("cannot read {}", path.display()),
            source,
        })?;
        let file = object::File::parse(&*data).map_err(|e| Error::NotElf {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(Error::NotElf {
                path: path.to_owned(),
                reason: format!("it is {:?}, not ELF", file.format()),
            });
        }
        if file.architecture() != object::Architecture::X86_64 {
            return Err(Error::Unsupported(format!(
                "{} is built for {:?}; Probe supports x86-64 only for now",
                path.display(),
                file.architecture()
            )));
        }
        let has_section = |n: &str| file.section_by_name(n).is_some();
        let is_go = has_section(".go.buildinfo")
            || has_section(".gopclntab")
            || has_section(".note.go.buildid");
        let has_dwarf = has_section(".debug_info") || has_section(".zdebug_info");
        let go_version = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .and_then(parse_buildinfo_version);
        let build_id = file
            .section_by_name(".note.go.buildid")
            .and_then(|s| s.data().ok())
            .and_then(parse_go_buildid_note);
        let rodata = find_rodata(&file, data.len());
        drop(file);
        Ok(Self {
            path: path.to_owned(),
            data,
            go_version,
            build_id,
            has_dwarf,
            is_go,
            rodata,
        })
    }

    /// Function probes need Go's DWARF: say exactly what is missing.
    pub fn require_go_dwarf(&self) -> Result<(), Error> {
        if !self.is_go {
            return Err(Error::NotGo {
                path: self.path.clone(),
            });
        }
        if !self.has_dwarf {
            return Err(Error::NoDwarf {
                path: self.path.clone(),
                go_version: self
                    .go_version
                    .clone()
                    .unwrap_or_else(|| "unknown Go".into()),
            });
        }
        Ok(())
    }

    /// A separate debug-info file for this binary, the way GDB finds one
    /// (<https://sourceware.org/gdb/current/onlinedocs/gdb.html/Separate-Debug-Files.html>):
    /// by `.gnu_debuglink` (its name, in the binary's directory, in its
    /// `.debug/` subdirectory, or under `/usr/lib/debug/` + that directory;
    /// the CRC-32 of the file must match) or by GNU build id
    /// (`/usr/lib/debug/.build-id/xx/rest.debug`). Only a file that has
    /// DWARF counts.
    pub fn find_debug_file(&self) -> Option<PathBuf> {
        let file = self.object();
        let has_dwarf = |p: &Path| -> bool {
            std::fs::read(p).ok().is_some_and(|d| {
                object::File::parse(&*d).is_ok_and(|f| {
                    f.section_by_name(".debug_info")
                        .or_else(|| f.section_by_name(".zdebug_info"))
                        .is_some_and(|s| {
                            s.size() > 0 && s.kind() != object::SectionKind::UninitializedData
                        })
                })
            })
        };
        if let Ok(Some((name, crc))) = file.gnu_debuglink() {
            let name = String::from_utf8_lossy(name).into_owned();
            let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
            let dir = real.parent().unwrap_or(Path::new("/"));
            let rel = dir.strip_prefix("/").unwrap_or(dir);
            let candidates = [
                dir.join(&name),
                dir.join(".debug").join(&name),
                Path::new("/usr/lib/debug").join(rel).join(&name),
            ];
            for c in candidates {
                if c != real && std::fs::read(&c).is_ok_and(|d| crc32(&d) == crc) && has_dwarf(&c) {
                    return Some(c);
                }
            }
        }
        if let Ok(Some(id)) = file.build_id() {
            if id.len() >= 2 {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                let c = PathBuf::from(format!(
                    "/usr/lib/debug/.build-id/{}/{}.debug",
                    &hex[..2],
                    &hex[2..]
                ));
                if has_dwarf(&c) {
                    return Some(c);
                }
            }
        }
        None
    }

    pub fn object(&self) -> object::File<'_> {
        object::File::parse(&*self.data).expect("parsed in Binary::open")
    }

    /// The file's bytes of the read-only data segment.
    pub fn rodata_bytes(&self) -> Option<(u64, &[u8])> {
        let r = self.rodata?;
        Some((r.addr, self.data.get(r.offset..r.offset + r.len)?))
    }

    /// `len` bytes of the file's initialised data at virtual address `addr`.
    pub fn read_virt(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let off = self.file_offset(addr)?;
        self.data.get(off as usize..(off + len) as usize)
    }

    /// The address of symbol `name` in the ELF symbol table.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.object()
            .symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    }

    /// `symbol+0xoff` for the function symbol containing `addr`.
    pub fn symbol_at(&self, addr: u64) -> Option<String> {
        let file = self.object();
        let s = file
            .symbols()
            .filter(|s| {
                s.kind() == object::SymbolKind::Text
                    && s.address() <= addr
                    && (s.size() == 0 || addr < s.address() + s.size())
            })
            .max_by_key(|s| s.address())?;
        let name = s.name().ok()?;
        Some(if addr == s.address() {
            name.to_owned()
        } else {
            format!("{name}+{:#x}", addr - s.address())
        })
    }

    /// The file offset of virtual address `addr`, where the kernel places a
    /// uprobe (`uprobe_register` takes an inode and an offset, see
    /// kernel/events/uprobes.c).
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        let file = self.object();
        for seg in file.segments() {
            let (start, size) = (seg.address(), seg.size());
            let (foff, fsize) = seg.file_range();
            if addr >= start && addr < start + size && addr - start < fsize {
                return Some(foff + (addr - start));
            }
        }
        None
    }
}

/// The PT_LOAD segment holding `.rodata`, if it is mapped read-only (no
/// write, no execute: neither relocated at load nor code that a debugger
/// could patch) and wholly backed by the file.
fn find_rodata(file: &object::File, file_len: usize) -> Option<Rodata> {
    const PF_X: u32 = 1;
    const PF_W: u32 = 2;
    let at = file.section_by_name(".rodata")?.address();
    file.segments().find_map(|seg| {
        let object::SegmentFlags::Elf { p_flags } = seg.flags() else {
            return None;
        };
        let (addr, size) = (seg.address(), seg.size());
        let (off, fsize) = seg.file_range();
        let inside = addr <= at && at < addr + size;
        let plain = p_flags & (PF_X | PF_W) == 0 && fsize == size && off + fsize <= file_len as u64;
        (inside && plain).then_some(Rodata {
            addr,
            offset: off as usize,
            len: size as usize,
        })
    })
}

/// Reads the Go version from `.go.buildinfo` (format since Go 1.18: a 32-byte
/// header, then varint-prefixed version and module-info strings; see
/// debug/buildinfo in the Go standard library).
pub fn parse_buildinfo_version(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if data.len() < 32 || !data.starts_with(MAGIC) {
        return None;
    }
    let flags = data[15];
    if flags & 2 == 0 {
        return None; // pre-1.18 pointer-based format: not supported (Go < 1.21 anyway)
    }
    let (len, n) = read_uvarint(&data[32..])?;
    let start = 32 + n;
    let s = data.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// CRC-32 (IEEE 802.3, reflected, as `.gnu_debuglink` uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Reads the ELF note `Go\0\0` type 4 (see cmd/link's `addgonote`).
pub fn parse_go_buildid_note(data: &[u8]) -> Option<String> {
    if data.len() < 16 {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as usize;
    let (namesz, descsz, typ) = (u32_at(0), u32_at(4), u32_at(8));
    if typ != 4 || namesz != 4 || &data[12..16] != b"Go\0\0" {
        return None;
    }
    let desc = data.get(16..16usize.checked_add(descsz)?)?;
    Some(
        String::from_utf8_lossy(desc)
            .trim_end_matches('\0')
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildinfo_inline_format() {
        let mut d = b"\xff Go buildinf:".to_vec();
        d.push(8);
        d.push(2);
        d.resize(32, 0);
        d.push(9);
        d.extend_from_slice(b"go1.27.3x");
        assert_eq!(parse_buildinfo_version(&d).as_deref(), Some("go1.27.3x"));
        assert_eq!(parse_buildinfo_version(b"nope"), None);
    }

    #[test]
    fn huge_lengths_are_rejected_not_overflowed() {
        // Found by the elf_dwarf fuzz target: a descriptor size near usize::MAX.
        let mut d = vec![];
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(&u32::MAX.to_le_bytes());
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(b"Go\0\0");
        assert_eq!(parse_go_buildid_note(&d), None);
        let mut b = b"\xff Go buildinf:".to_vec();
        b.push(8);
        b.push(2);
        b.resize(32, 0);
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(parse_buildinfo_version(&b), None);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn buildid_note() {
        let mut d = vec![];
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(&5u32.to_le_bytes());
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(b"Go\0\0abcde\0\0\0");
        assert_eq!(parse_go_buildid_note(&d).as_deref(), Some("abcde"));
    }
}

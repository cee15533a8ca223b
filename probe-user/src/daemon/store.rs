//! The daemon's embedded store, under `--state-dir`: breakpoint definitions
//! and a bounded history of recent hits per breakpoint.
//!
//! Crash safety (a SIGKILL at any point leaves a loadable store):
//! - `breakpoints.pb` (a protobuf [`StoreFile`]) is only ever replaced
//!   whole: written to a temporary file, fsynced, renamed over the old one,
//!   and the directory fsynced. A reader sees the old or the new file.
//! - `history/<bp>.jsonl` is append-only, one hit (the JSON line `probe
//!   attach` prints) per line. A kill mid-append leaves at most one partial
//!   last line, which loading skips. When a file holds twice the limit it is
//!   rewritten (same temp+rename) with the most recent `limit` lines, so it
//!   stays bounded. Hits are not fsynced one by one: a crash may lose the
//!   last few, never the file.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use prost::Message;

use super::proto::{Event, StoreFile};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Probe store file: {source}")]
    Corrupt {
        path: PathBuf,
        source: prost::DecodeError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An open history file and how many lines it holds.
struct HistFile {
    file: File,
    lines: usize,
}

pub struct Store {
    dir: PathBuf,
    /// Hits kept per breakpoint.
    limit: usize,
    open: Mutex<HashMap<String, HistFile>>,
}

/// Breakpoint ids are made by the daemon (`bp-N`); anything else is refused
/// before it becomes a file name.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path, limit: usize) -> Result<Self, StoreError> {
        let hist = dir.join("history");
        std::fs::create_dir_all(&hist).map_err(io(&hist))?;
        Ok(Self {
            dir: dir.to_owned(),
            limit: limit.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("breakpoints.pb")
    }

    /// The stored breakpoints (none yet: an empty file).
    pub fn load(&self) -> Result<StoreFile, StoreError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => StoreFile::decode(bytes.as_slice())
                .map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Replaces the stored breakpoints atomically.
    pub fn save(&self, state: &StoreFile) -> Result<(), StoreError> {
        replace(&self.state_path(), &state.encode_to_vec())
    }

    /// Appends one hit to `bp`'s history, compacting it when it is over twice the limit.
    pub fn append(&self, bp: &str, json: &str) -> Result<(), StoreError> {
        if !valid_id(bp) {
            return Ok(());
        }
        let path = self.history_path(bp);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !open.contains_key(bp) {
            let lines = read_lines(&path).len();
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            // A line torn by a kill must not swallow the next one.
            let torn = std::fs::read(&path)
                .map(|b| b.last().is_some_and(|&c| c != b'\n'))
                .unwrap_or(false);
            if torn {
                file.write_all(b"\n").map_err(io(&path))?;
            }
            open.insert(bp.to_owned(), HistFile { file, lines });
        }
        let h = open.get_mut(bp).expect("inserted above");
        // One write per line: a kill tears at most this line.
        let mut line = String::with_capacity(json.len() + 1);
        line.push_str(json);
        line.push('\n');
        h.file.write_all(line.as_bytes()).map_err(io(&path))?;
        h.lines += 1;
        if h.lines >= 2 * self.limit {
            let all = read_lines(&path);
            let keep = &all[all.len().saturating_sub(self.limit)..];
            let mut text = keep.join("\n");
            text.push('\n');
            replace(&path, text.as_bytes())?;
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            *h = HistFile {
                file,
                lines: keep.len(),
            };
        }
        Ok(())
    }

    /// The most recent `limit` hits of `bp` (or of every breakpoint), oldest first.
    pub fn history(&self, bp: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let ids: Vec<String> = match bp {
            Some(id) if valid_id(id) => vec![id.to_owned()],
            Some(_) => vec![],
            None => {
                let dir = self.dir.join("history");
                let rd = std::fs::read_dir(&dir).map_err(io(&dir))?;
                rd.filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_suffix(".jsonl")
                        .map(str::to_owned)
                })
                .collect()
            }
        };
        let mut all = vec![];
        for id in ids {
            for json in read_lines(&self.history_path(&id)) {
                all.push(Event {
                    bp_id: id.clone(),
                    json,
                });
            }
        }
        // Every hit has a fixed-width RFC 3339 "time": as text it sorts in time order.
        let time = |e: &Event| {
            serde_json::from_str::<serde_json::Value>(&e.json)
                .ok()
                .and_then(|v| v["time"].as_str().map(str::to_owned))
        };
        let mut keyed: Vec<(Option<String>, Event)> =
            all.into_iter().map(|e| (time(&e), e)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let skip = keyed.len().saturating_sub(limit);
        Ok(keyed.into_iter().skip(skip).map(|(_, e)| e).collect())
    }

    fn history_path(&self, bp: &str) -> PathBuf {
        self.dir.join("history").join(format!("{bp}.jsonl"))
    }
}

/// The complete lines of a history file (a torn last line is skipped: it
/// does not parse as JSON).
fn read_lines(path: &Path) -> Vec<String> {
    let Ok(f) = File::open(path) else {
        return vec![];
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .collect()
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable only once the directory is.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("probe-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn breakpoints_round_trip_and_missing_file_is_empty() {
        let d = tmpdir("bp");
        let s = Store::open(&d, 10).unwrap();
        assert_eq!(s.load().unwrap(), StoreFile::default());
        let mut f = StoreFile {
            next_id: 7,
            ..Default::default()
        };
        f.breakpoints.push(super::super::proto::BreakpointInfo {
            id: "bp-3".into(),
            ..Default::default()
        });
        s.save(&f).unwrap();
        assert_eq!(Store::open(&d, 10).unwrap().load().unwrap(), f);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn history_is_bounded_and_skips_a_torn_line() {
        let d = tmpdir("hist");
        let s = Store::open(&d, 3).unwrap();
        for i in 0..10 {
            s.append(
                "bp-1",
                &format!(r#"{{"time":"2026-01-01T00:00:{i:02}.000000000Z","n":{i}}}"#),
            )
            .unwrap();
        }
        // A kill in the middle of a write.
        OpenOptions::new()
            .append(true)
            .open(d.join("history/bp-1.jsonl"))
            .unwrap()
            .write_all(b"{\"time\":\"20")
            .unwrap();
        let lines = read_lines(&d.join("history/bp-1.jsonl"));
        assert!(lines.len() <= 6, "bounded: {}", lines.len());
        let h = Store::open(&d, 3)
            .unwrap()
            .history(Some("bp-1"), 3)
            .unwrap();
        let ns: Vec<u64> = h
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.json).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ns, vec![7, 8, 9]);
        assert!(s.history(Some("../etc"), 3).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! Fleet mode (`probe daemon --etcd URL`): breakpoints shared by many
//! daemons through one etcd key prefix. This module owns the fleet
//! breakpoints this daemon applies, the watch that keeps them in step with
//! etcd, and the per-host status it publishes.
//!
//! Keys under the prefix (default `/probe/`):
//! - `bp/<id>`: a fleet breakpoint, a protobuf `BreakpointInfo` (id, spec,
//!   selector, owner, created_ms, expires_at_ms). Written by the daemon
//!   that received `probe bp add --fleet`, deleted by `probe bp rm` on any
//!   daemon; one with an expiry is attached to an etcd lease of that TTL,
//!   so etcd deletes it and every daemon sees the delete.
//! - `status/<host>/<id>`: a `HostStatus`, this breakpoint on that host,
//!   attached to the host's own lease (20 s, kept alive while the daemon
//!   runs), so a dead daemon's statuses vanish by themselves.
//! - `ids`: written only to obtain a fresh store revision: fleet ids are
//!   `fleet-<revision>`, unique across the cluster without a transaction.
//!
//! Watch semantics: list `bp/` (which gives the store revision R), apply
//! that set, then watch `bp/` from R+1, so no change between the list and
//! the watch is missed. A PUT replaces the breakpoint (the old probes are
//! detached, the new definition attached); a DELETE detaches it. Any watch
//! error — etcd down, the connection cut, the history compacted past the
//! revision we asked for — starts over with a fresh list, after a backoff
//! (250 ms doubling to 5 s) unless it was a compaction. While etcd is
//! unreachable the breakpoints already applied stay attached: a fleet must
//! not lose its probes because its store blinked. The fresh list is diffed
//! against what is applied: unchanged breakpoints (same mod revision) are
//! left alone.
//!
//! Applying: a breakpoint whose selector's labels are not all among this
//! daemon's `--label`s is "skipped". Otherwise its executables are found:
//! an absolute path without wildcards is that file; a base name, a glob or
//! a build id matches the executables of running processes (`/proc/*/exe`,
//! rescanned every 2 s, so a process started later is picked up). Each
//! executable gets a `--binary` breakpoint of its own (a `Breakpoint`: its
//! own thread and kernel objects), named `<id>` for the first and
//! `<id>-2`, `<id>-3`… for more. This daemon's policy is checked for each,
//! with the breakpoint's owner as the identity; a refusal is recorded as
//! that breakpoint's error on this host (and published), never dropped
//! silently. One breakpoint's failure never touches another.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prost::Message;

use super::{
    breakpoint::{now_ms, Breakpoint, Shared, State},
    etcd::{pb, Etcd, EtcdError},
    policy::{glob, Policy},
    proto::{BreakpointInfo, BreakpointSpec, HostStatus, Selector},
    server::MAX_BREAKPOINTS,
    store::valid_id,
};

/// How often running processes are scanned for new matching executables.
const RESCAN: Duration = Duration::from_secs(2);
/// The lease of this daemon's status keys.
const STATUS_LEASE: Duration = Duration::from_secs(20);
/// Hit counts are republished at most this often (state changes at once).
const HITS_EVERY: Duration = Duration::from_secs(3);

/// `probe daemon --etcd …` settings.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Comma-separated `http://HOST:PORT`.
    pub endpoints: String,
    /// Ends with `/`.
    pub prefix: String,
    /// This daemon's name in status keys.
    pub host: String,
    pub labels: BTreeMap<String, String>,
}

impl FleetConfig {
    pub fn bp_prefix(&self) -> String {
        format!("{}bp/", self.prefix)
    }
    pub fn bp_key(&self, id: &str) -> String {
        format!("{}bp/{id}", self.prefix)
    }
    pub fn status_prefix(&self) -> String {
        format!("{}status/", self.prefix)
    }
    fn status_key(&self, id: &str) -> String {
        format!("{}status/{}/{id}", self.prefix, self.host)
    }
}

/// The host name the kernel reports (the default `--host-name`).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is ours and its length is passed.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// One executable's breakpoint.
struct Instance {
    exe: PathBuf,
    bp: Breakpoint,
}

/// A fleet breakpoint as this daemon applies it.
struct Entry {
    def: BreakpointInfo,
    mod_rev: i64,
    /// Why this host does not apply it (its labels).
    skipped: Option<String>,
    /// Why it cannot be applied at all (an undecodable or invalid definition).
    invalid: Option<String>,
    instances: Vec<Instance>,
    /// Executables it matched but may not attach to here, and why.
    refused: BTreeMap<PathBuf, (&'static str, String)>,
}

impl Entry {
    fn spec(&self) -> BreakpointSpec {
        self.def.spec.clone().unwrap_or_default()
    }
    fn selector(&self) -> Selector {
        self.def.selector.clone().unwrap_or_default()
    }

    /// This host's view: the status it publishes and `bp ls` shows.
    fn status(&self, host: &str) -> HostStatus {
        let mut st = HostStatus {
            host: host.to_owned(),
            ..Default::default()
        };
        if let Some(why) = &self.invalid {
            st.state = "error".into();
            st.error_kind = "invalid".into();
            st.error = why.clone();
            return st;
        }
        if let Some(why) = &self.skipped {
            st.state = "skipped".into();
            st.error = why.clone();
            return st;
        }
        let (mut attached, mut pending, mut targets, mut errors) = (0, 0, vec![], vec![]);
        let mut suspended = 0;
        for i in &self.instances {
            st.hits += i.bp.hits.load(std::sync::atomic::Ordering::Relaxed);
            match &*i.bp.state.borrow() {
                State::Attached { probes, target } => {
                    attached += 1;
                    st.probes += probes;
                    targets.push(target.clone());
                }
                State::Suspended {
                    probes,
                    target,
                    why,
                } => {
                    suspended += 1;
                    st.probes += probes;
                    targets.push(target.clone());
                    errors.push(("cpu_budget", why.clone()));
                }
                State::Pending => pending += 1,
                State::Error { kind, message } => errors.push((*kind, message.clone())),
                State::Detached { why } => errors.push(("detached", why.clone())),
            }
        }
        for (exe, (kind, why)) in &self.refused {
            errors.push((kind, format!("{}: {why}", exe.display())));
        }
        st.target = targets.join("; ");
        st.state = if attached > 0 {
            "attached"
        } else if suspended > 0 {
            "suspended"
        } else if pending > 0 {
            "pending"
        } else if !errors.is_empty() {
            "error"
        } else {
            "waiting"
        }
        .into();
        if let Some((kind, _)) = errors.first() {
            st.error_kind = (*kind).into();
            st.error = errors
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; ");
        } else if st.state == "waiting" {
            st.error = format!(
                "no running executable matches {}",
                describe_selector(&self.selector())
            );
        }
        st
    }
}

/// `binary=api build_id=… labels: env=prod`, for messages.
pub fn describe_selector(s: &Selector) -> String {
    let mut parts = vec![];
    if !s.binary.is_empty() {
        parts.push(format!("binary={}", s.binary));
    }
    if !s.build_id.is_empty() {
        parts.push(format!("build_id={}", s.build_id));
    }
    for (k, v) in &s.labels {
        parts.push(format!("{k}={v}"));
    }
    if parts.is_empty() {
        "every host".into()
    } else {
        parts.join(" ")
    }
}

/// Does a daemon with `labels` apply a breakpoint with this selector?
/// `Err`: why not.
pub fn labels_match(s: &Selector, labels: &BTreeMap<String, String>) -> Result<(), String> {
    let missing: Vec<String> = s
        .labels
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "this host's labels lack {} (it has: {})",
            missing.join(", "),
            if labels.is_empty() {
                "none".into()
            } else {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    }
}

/// Does `exe` match the selector's binary pattern (a base name, or with a
/// `/` a path glob)? An empty pattern matches.
pub fn binary_matches(pattern: &str, exe: &Path) -> bool {
    if pattern.is_empty() {
        return true;
    }
    if pattern.contains('/') {
        glob(pattern, &exe.to_string_lossy())
    } else {
        exe.file_name()
            .is_some_and(|n| glob(pattern, &n.to_string_lossy()))
    }
}

/// An absolute path without wildcards names one file: it is probed even
/// when no process runs it yet.
fn exact_path(pattern: &str) -> Option<PathBuf> {
    (pattern.starts_with('/') && !pattern.contains(['*', '?'])).then(|| pattern.into())
}

/// The build ids of an ELF file: Go's (`.note.go.buildid`) and GNU's (hex).
pub fn build_ids(path: &Path) -> Vec<String> {
    use object::{Object, ObjectSection};
    let Ok(data) = std::fs::read(path) else {
        return vec![];
    };
    let Ok(file) = object::File::parse(&*data) else {
        return vec![];
    };
    let mut ids = vec![];
    if let Some(id) = file
        .section_by_name(".note.go.buildid")
        .and_then(|s| s.data().ok())
        .and_then(crate::binary::parse_go_buildid_note)
    {
        ids.push(id);
    }
    if let Ok(Some(gnu)) = file.build_id() {
        ids.push(gnu.iter().map(|b| format!("{b:02x}")).collect());
    }
    ids
}

/// Executables of running processes (not this daemon's own, not deleted files).
fn running_executables() -> BTreeSet<PathBuf> {
    let me = std::process::id().to_string();
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if n == me || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(p) = std::fs::read_link(e.path().join("exe")) {
            // A replaced or removed binary's processes: their file is gone.
            if !p.to_string_lossy().ends_with(" (deleted)") {
                out.insert(p);
            }
        }
    }
    out
}

/// (device, inode, mtime): a file, and its version.
type FileStamp = (u64, u64, i64);

/// The fleet side of a daemon.
pub struct Fleet {
    pub cfg: FleetConfig,
    pub etcd: Etcd,
    shared: Shared,
    policy: Arc<Policy>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Build ids per executable, with the file they were read from.
    build_ids: Mutex<HashMap<PathBuf, (FileStamp, Vec<String>)>>,
}

impl Fleet {
    pub fn new(
        cfg: FleetConfig,
        shared: Shared,
        policy: Arc<Policy>,
    ) -> Result<Arc<Self>, EtcdError> {
        let etcd = Etcd::new(&cfg.endpoints)?;
        Ok(Arc::new(Fleet {
            cfg,
            etcd,
            shared,
            policy,
            entries: Mutex::default(),
            build_ids: Mutex::default(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is `id` a fleet breakpoint this daemon knows?
    pub fn knows(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Fleet breakpoint instances attached or being attached here.
    pub fn instance_count(&self) -> usize {
        self.lock().values().map(|e| e.instances.len()).sum()
    }

    fn cached_build_ids(&self, exe: &Path) -> Vec<String> {
        let Ok(m) = std::fs::metadata(exe) else {
            return vec![];
        };
        let stamp = (m.dev(), m.ino(), m.mtime());
        let mut cache = self.build_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, ids)) = cache.get(exe) {
            if *s == stamp {
                return ids.clone();
            }
        }
        let ids = build_ids(exe);
        cache.insert(exe.to_owned(), (stamp, ids.clone()));
        ids
    }

    /// The executables `sel` names on this host now.
    fn executables(&self, sel: &Selector, running: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match exact_path(&sel.binary) {
            Some(p) => p.exists().then_some(p).into_iter().collect(),
            None => running
                .iter()
                .filter(|exe| binary_matches(&sel.binary, exe))
                .cloned()
                .collect(),
        };
        if !sel.build_id.is_empty() {
            out.retain(|exe| self.cached_build_ids(exe).contains(&sel.build_id));
        }
        out
    }

    /// Starts breakpoints for the executables `e` matches that have none yet.
    fn reconcile(&self, id: &str, e: &mut Entry, running: &BTreeSet<PathBuf>, total: &mut usize) {
        if e.invalid.is_some() || e.skipped.is_some() {
            return;
        }
        let sel = e.selector();
        for exe in self.executables(&sel, running) {
            if e.instances.iter().any(|i| i.exe == exe) || e.refused.contains_key(&exe) {
                continue;
            }
            let mut spec = BreakpointSpec {
                binary: exe.to_string_lossy().into_owned(),
                pid: 0,
                pid_start: 0,
                ..e.spec()
            };
            if let Err(why) = self.policy.check(std::slice::from_ref(&e.def.owner), &spec) {
                eprintln!(
                    "probe daemon: {id}: refused on this host for {}: {why}",
                    exe.display()
                );
                e.refused.insert(exe, ("policy", why));
                continue;
            }
            self.policy.narrow(&e.def.owner, &mut spec);
            if *total >= MAX_BREAKPOINTS {
                e.refused.insert(
                    exe,
                    (
                        "resource_exhausted",
                        format!("this daemon holds {MAX_BREAKPOINTS} fleet breakpoints already"),
                    ),
                );
                continue;
            }
            let iid = match e.instances.len() {
                0 => id.to_owned(),
                n => format!("{id}-{}", n + 1),
            };
            eprintln!(
                "probe daemon: {id}: applying to {} as {iid} ({})",
                exe.display(),
                spec.describe()
            );
            let info = BreakpointInfo {
                id: iid,
                spec: Some(spec),
                created_ms: e.def.created_ms,
                owner: e.def.owner.clone(),
                fleet: true,
                ..Default::default()
            };
            let bp = Breakpoint::start(info, &self.shared);
            e.instances.push(Instance { exe, bp });
            *total += 1;
        }
    }

    /// A new entry for the definition in `kv` (not yet reconciled).
    fn entry(&self, id: &str, kv: &pb::KeyValue) -> Entry {
        let mut e = Entry {
            def: BreakpointInfo {
                id: id.to_owned(),
                ..Default::default()
            },
            mod_rev: kv.mod_revision,
            skipped: None,
            invalid: None,
            instances: vec![],
            refused: BTreeMap::new(),
        };
        match BreakpointInfo::decode(kv.value.as_slice()) {
            Ok(mut def) => {
                def.id = id.to_owned();
                e.def = def;
                let spec = e.spec();
                if !valid_id(id) {
                    e.invalid = Some(format!("{id:?} is not a valid breakpoint id"));
                } else if spec.funcs.is_empty() && spec.lines.is_empty() && spec.addrs.is_empty() {
                    e.invalid = Some("it probes nothing (no funcs, lines or addrs)".into());
                } else if let Err(why) = labels_match(&e.selector(), &self.cfg.labels) {
                    e.skipped = Some(why);
                }
            }
            Err(err) => {
                e.invalid = Some(format!(
                    "the value of {} is not a Probe breakpoint: {err}",
                    self.cfg.bp_key(id)
                ))
            }
        }
        e
    }

    fn id_of<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.cfg.bp_prefix().as_str())
    }

    /// A PUT of `bp/<id>`: applies it, replacing an older version.
    fn put(&self, kv: &pb::KeyValue, running: &BTreeSet<PathBuf>) {
        let Some(id) = self.id_of(&kv.key) else {
            return;
        };
        let mut t = self.lock();
        if t.get(id).is_some_and(|e| e.mod_rev == kv.mod_revision) {
            return; // unchanged (a re-list after a reconnect)
        }
        if let Some(old) = t.remove(id) {
            eprintln!("probe daemon: {id}: changed: detaching the old version");
            drop(old); // each instance's thread detaches its uprobes
        }
        let mut e = self.entry(id, kv);
        if let Some(why) = &e.skipped {
            eprintln!("probe daemon: {id}: not for this host: {why}");
        }
        if let Some(why) = &e.invalid {
            eprintln!("probe daemon: {id}: invalid: {why}");
        }
        let mut total = t.values().map(|e| e.instances.len()).sum();
        self.reconcile(id, &mut e, running, &mut total);
        t.insert(id.to_owned(), e);
    }

    /// A DELETE of `bp/<id>`: detaches it.
    fn delete(&self, key: &[u8]) {
        let Some(id) = self.id_of(key) else { return };
        if let Some(e) = self.lock().remove(id) {
            eprintln!(
                "probe daemon: {id}: removed from etcd: detaching {} breakpoint(s)",
                e.instances.len()
            );
        }
    }

    /// After a (re-)list: exactly the breakpoints in `kvs`, unchanged ones untouched.
    fn replace_all(&self, kvs: &[pb::KeyValue], running: &BTreeSet<PathBuf>) {
        let ids: BTreeSet<&str> = kvs.iter().filter_map(|kv| self.id_of(&kv.key)).collect();
        let gone: Vec<String> = self
            .lock()
            .keys()
            .filter(|id| !ids.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.delete(self.cfg.bp_key(&id).as_bytes());
        }
        for kv in kvs {
            self.put(kv, running);
        }
    }

    /// Attaches every breakpoint to executables that started running since.
    fn rescan(&self) {
        let running = running_executables();
        let mut t = self.lock();
        let mut total = t.values().map(|e| e.instances.len()).sum();
        for (id, e) in t.iter_mut() {
            self.reconcile(id, e, &running, &mut total);
        }
    }

    /// Every fleet breakpoint's status on this host.
    pub fn statuses(&self) -> BTreeMap<String, HostStatus> {
        self.lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.status(&self.cfg.host)))
            .collect()
    }

    /// Every fleet breakpoint as `bp ls` shows it: this host's status, and
    /// (from etcd's status keys, when reachable) every host's.
    pub async fn infos(&self) -> Vec<BreakpointInfo> {
        let mut hosts: BTreeMap<String, Vec<HostStatus>> = BTreeMap::new();
        let sp = self.cfg.status_prefix();
        // `bp ls` must answer while etcd is away: this host's view then.
        let remote = tokio::time::timeout(Duration::from_secs(2), self.etcd.list(&sp))
            .await
            .unwrap_or_else(|_| {
                Err(EtcdError::Rpc {
                    endpoints: self.etcd.endpoints().to_owned(),
                    message: "no answer".into(),
                })
            });
        if let Ok((kvs, _)) = &remote {
            for kv in kvs {
                let Some(rest) = std::str::from_utf8(&kv.key)
                    .ok()
                    .and_then(|k| k.strip_prefix(sp.as_str()))
                else {
                    continue;
                };
                let Some((_, id)) = rest.rsplit_once('/') else {
                    continue;
                };
                if let Ok(st) = HostStatus::decode(kv.value.as_slice()) {
                    hosts.entry(id.to_owned()).or_default().push(st);
                }
            }
        }
        let t = self.lock();
        t.iter()
            .map(|(id, e)| {
                let st = HostStatus {
                    updated_ms: now_ms(),
                    ..e.status(&self.cfg.host)
                };
                let mut all = hosts.remove(id).unwrap_or_default();
                // This host's own view is the freshest; etcd's copy may lag.
                all.retain(|h| h.host != self.cfg.host);
                all.push(st.clone());
                all.sort_by(|a, b| a.host.cmp(&b.host));
                BreakpointInfo {
                    id: id.clone(),
                    spec: e.def.spec.clone(),
                    expires_at_ms: e.def.expires_at_ms,
                    state: st.state,
                    error_kind: st.error_kind,
                    error: st.error,
                    probes: st.probes,
                    target: st.target,
                    hits: st.hits,
                    created_ms: e.def.created_ms,
                    owner: e.def.owner.clone(),
                    fleet: true,
                    selector: e.def.selector.clone(),
                    hosts: all,
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Stops every fleet breakpoint and waits until its uprobes are detached.
    pub fn shutdown(&self) {
        let entries = std::mem::take(&mut *self.lock());
        for (_, e) in entries {
            for i in e.instances {
                i.bp.join();
            }
        }
    }

    /// Keeps the applied breakpoints in step with etcd, forever: list,
    /// watch, and on any error list again (see the module documentation).
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().publish_forever());
        let mut tick = tokio::time::interval(RESCAN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let first = Duration::from_millis(250);
        let mut backoff = first;
        let mut reported: Option<String> = None;
        loop {
            let err = self.sync(&mut tick, &mut backoff, first).await;
            let text = err.to_string();
            // One line per kind of trouble, not one per retry.
            if reported.as_deref() != Some(text.as_str()) {
                eprintln!(
                    "probe daemon: fleet: {text}; retrying (the breakpoints already applied stay attached)"
                );
                reported = Some(text);
            }
            if !matches!(err, EtcdError::Compacted { .. }) {
                // Still rescan while etcd is away: new processes of applied
                // breakpoints' binaries are attached regardless.
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => {}
                        _ = tick.tick() => self.rescan_blocking().await,
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    async fn rescan_blocking(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.rescan()).await;
    }

    /// One list + watch; returns the error that ended it.
    async fn sync(
        self: &Arc<Self>,
        tick: &mut tokio::time::Interval,
        backoff: &mut Duration,
        first: Duration,
    ) -> EtcdError {
        let prefix = self.cfg.bp_prefix();
        let (kvs, rev) = match self.etcd.list(&prefix).await {
            Ok(l) => l,
            Err(e) => return e,
        };
        let me = self.clone();
        let n = kvs.len();
        let _ =
            tokio::task::spawn_blocking(move || me.replace_all(&kvs, &running_executables())).await;
        let mut w = match self.etcd.watch(&prefix, rev + 1).await {
            Ok(w) => w,
            Err(e) => return e,
        };
        eprintln!(
            "probe daemon: fleet: {n} breakpoint(s) under {prefix} at etcd {} (revision {rev}); watching as host {:?}",
            self.etcd.endpoints(),
            self.cfg.host
        );
        *backoff = first;
        loop {
            tokio::select! {
                r = w.next() => match r {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => {
                        let me = self.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let running = running_executables();
                            for ev in events {
                                let Some(kv) = ev.kv else { continue };
                                if ev.r#type == pb::EVENT_DELETE {
                                    me.delete(&kv.key);
                                } else {
                                    me.put(&kv, &running);
                                }
                            }
                        })
                        .await;
                    }
                    Err(e) => return e,
                },
                _ = tick.tick() => self.rescan_blocking().await,
            }
        }
    }

    /// Publishes this host's statuses under its own lease, forever.
    async fn publish_forever(self: Arc<Self>) {
        loop {
            let lease = match self.etcd.grant(STATUS_LEASE).await {
                Ok(l) => l,
                Err(_) => {
                    // The watch loop reports etcd trouble.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let keep = self.etcd.keep_alive(lease, STATUS_LEASE / 4);
            let publish = async {
                let mut published: BTreeMap<String, (HostStatus, Instant)> = BTreeMap::new();
                loop {
                    self.publish(lease, &mut published).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            let _: Result<(), EtcdError> = tokio::select! {
                r = keep => r,
                r = publish => r,
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn publish(
        &self,
        lease: i64,
        published: &mut BTreeMap<String, (HostStatus, Instant)>,
    ) -> Result<(), EtcdError> {
        let now = self.statuses();
        for (id, st) in &now {
            let due = match published.get(id) {
                None => true,
                Some((old, at)) => {
                    let same_but_hits = HostStatus {
                        hits: old.hits,
                        updated_ms: old.updated_ms,
                        ..st.clone()
                    } == *old;
                    !same_but_hits || (old.hits != st.hits && at.elapsed() >= HITS_EVERY)
                }
            };
            if due {
                let st = HostStatus {
                    updated_ms: now_ms(),
                    ..st.clone()
                };
                self.etcd
                    .put(&self.cfg.status_key(id), st.encode_to_vec(), lease)
                    .await?;
                published.insert(id.clone(), (st, Instant::now()));
            }
        }
        let gone: Vec<String> = published
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.etcd.delete(&self.cfg.status_key(&id)).await?;
            published.remove(&id);
        }
        Ok(())
    }

    /// Stores a new fleet breakpoint (already checked by the caller);
    /// returns its id. With an expiry, the key carries a lease of that TTL.
    pub async fn add(
        &self,
        mut def: BreakpointInfo,
        expires_in: Option<Duration>,
    ) -> Result<String, EtcdError> {
        // A fresh revision names it: unique across the cluster.
        let rev = self
            .etcd
            .put(&format!("{}ids", self.cfg.prefix), vec![], 0)
            .await?;
        let id = format!("fleet-{rev}");
        let lease = match expires_in {
            Some(d) => self.etcd.grant(d).await?,
            None => 0,
        };
        def.id = id.clone();
        def.fleet = true;
        self.etcd
            .put(&self.cfg.bp_key(&id), def.encode_to_vec(), lease)
            .await?;
        Ok(id)
    }

    /// The stored definition of fleet breakpoint `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<BreakpointInfo>, EtcdError> {
        Ok(self
            .etcd
            .get(&self.cfg.bp_key(id))
            .await?
            .and_then(|kv| BreakpointInfo::decode(kv.value.as_slice()).ok()))
    }

    /// Deletes fleet breakpoint `id` from etcd; `false` if there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, EtcdError> {
        Ok(self.etcd.delete(&self.cfg.bp_key(id)).await? > 0)
    }

    /// This host's view of `id` once it has applied it (or after `timeout`).
    pub async fn settled(&self, id: &str, timeout: Duration) -> Option<HostStatus> {
        let start = Instant::now();
        loop {
            let st = self.lock().get(id).map(|e| e.status(&self.cfg.host));
            match st {
                Some(st) if st.state != "pending" => return Some(st),
                _ if start.elapsed() >= timeout => return st,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_names_globs_and_labels() {
        let exe = Path::new("/srv/api/bin/server");
        assert!(binary_matches("", exe));
        assert!(binary_matches("server", exe));
        assert!(binary_matches("serv*", exe));
        assert!(!binary_matches("api", exe));
        assert!(binary_matches("/srv/*/server", exe));
        assert!(!binary_matches("/srv/*/other", exe));
        assert_eq!(exact_path("/srv/api"), Some(PathBuf::from("/srv/api")));
        assert_eq!(exact_path("/srv/*"), None);
        assert_eq!(exact_path("api"), None);

        let labels: BTreeMap<String, String> = [
            ("env".to_owned(), "prod".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]
        .into();
        let sel = |l: &[(&str, &str)]| Selector {
            labels: l
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        assert!(labels_match(&sel(&[]), &labels).is_ok());
        assert!(labels_match(&sel(&[("env", "prod")]), &labels).is_ok());
        let e = labels_match(&sel(&[("env", "prod"), ("zone", "b")]), &labels).unwrap_err();
        assert!(
            e.contains("lack zone=b") && e.contains("env=prod, zone=a"),
            "{e}"
        );
        assert!(labels_match(&sel(&[("env", "prod")]), &BTreeMap::new())
            .unwrap_err()
            .contains("has: none"));
        assert_eq!(describe_selector(&Selector::default()), "every host");
    }

    #[test]
    fn build_ids_of_a_real_go_binary() {
        // The test programs are built by `cargo xtask setup`; skip without them.
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/testdata/go1.27.3/store");
        if !p.exists() {
            eprintln!("skipped: {} not built", p.display());
            return;
        }
        let ids = build_ids(&p);
        let go = crate::binary::Binary::open(&p).unwrap().build_id.unwrap();
        assert_eq!(ids.first(), Some(&go), "{ids:?}");
        assert!(build_ids(Path::new("/nonexistent")).is_empty());
    }
}

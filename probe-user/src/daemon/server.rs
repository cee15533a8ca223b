//! `probe daemon`: the gRPC service (`probe.v1.Daemon`), the breakpoint and
//! session tables, the reaper that expires sessions and breakpoints, and
//! restoring stored breakpoints at start.
//!
//! Session lifecycle: a client opens a bidirectional `Session` stream with
//! `OpenSession{ttl}`; every message it sends (heartbeats every TTL/3 from
//! the CLI) refreshes `last_seen`. When the stream ends (the client exited,
//! was killed, or the connection broke) the session stays, disconnected,
//! and the TTL clock starts from that moment: a client may reconnect with
//! `OpenSession{resume}`. The reaper detaches every breakpoint of a
//! session not heard from for longer than its TTL, connected or not (a hung
//! client holds nothing forever). Breakpoints outside sessions live until
//! removed or until their `expires_in`.
//!
//! Only breakpoints outside sessions are stored (a session's breakpoints
//! die with it, and a daemon restart ends every session); on start every
//! stored, unexpired breakpoint is resolved and attached again.
//!
//! With `--etcd`, fleet breakpoints (`AddRequest.fleet`) go to etcd instead
//! and come back through the daemon's watch, like everyone else's
//! ([`super::fleet`]); `ListBreakpoints` shows them with every host's status
//! and `RemoveBreakpoint` of a fleet id deletes it from etcd.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

use super::{
    breakpoint::{now_ms, Breakpoint, Shared, State},
    fleet::{Fleet, FleetConfig},
    policy::Policy,
    proto::{
        client_msg, daemon_server, server_msg, AddRequest, BreakpointInfo, BreakpointList,
        BreakpointSpec, ClientMsg, HistoryReply, HistoryRequest, ListRequest, RemoveReply,
        RemoveRequest, ServerMsg, SessionInfo, SessionList, SessionOpened, StoreFile,
    },
    store::{Store, StoreError},
    tls::{identities, ServerTls},
    Listen,
};

/// A session's TTL when the client names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How long an add waits for its breakpoint to be attached (or to fail)
/// before answering "pending".
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages queued to one session's client; beyond that events are dropped
/// and counted, so a slow client never grows the daemon's memory.
const SESSION_QUEUE: usize = 1024;
/// Breakpoints at once: each holds a BPF object with its event rings (2 MiB
/// per CPU, up to 16 rings).
pub const MAX_BREAKPOINTS: usize = 64;

type Out = mpsc::Sender<Result<ServerMsg, Status>>;

struct Session {
    ttl: Duration,
    last_seen: Instant,
    /// The open stream to the client, if any.
    out: Option<Out>,
    bps: Vec<String>,
    dropped: Arc<AtomicU64>,
    /// The client's identities: only the same client may resume it.
    who: Vec<String>,
}

#[derive(Default)]
struct Tables {
    bps: BTreeMap<String, Breakpoint>,
    sessions: BTreeMap<String, Session>,
    next_bp: u64,
    next_session: u64,
}

/// The daemon's state, shared by the API handlers and the reaper.
#[derive(Clone)]
pub struct Daemon {
    tables: Arc<Mutex<Tables>>,
    store: Arc<Store>,
    /// What every breakpoint gets: store, redaction, CPU budget, exporter.
    shared: Shared,
    policy: Arc<Policy>,
    /// With `--etcd`: the fleet breakpoints this daemon applies.
    fleet: Option<Arc<Fleet>>,
}

/// Options of `probe daemon`.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    pub listen: Listen,
    pub state_dir: PathBuf,
    /// Hits kept per breakpoint in the history.
    pub history: usize,
    pub policy: Policy,
    /// mTLS on the TCP listener.
    pub tls: Option<ServerTls>,
    /// Fleet mode: the etcd cluster and this daemon's place in it.
    pub fleet: Option<FleetConfig>,
    /// Percent of one CPU each breakpoint's probes may use before they are
    /// suspended (also the most a client may ask for).
    pub cpu_budget: f64,
    /// Export every breakpoint's hits over OTLP (resource attributes are
    /// filled in by `serve`).
    pub otlp: Option<crate::otlp::Config>,
    /// `--service-name` of exported telemetry.
    pub service_name: Option<String>,
}

fn msg(m: server_msg::Msg) -> ServerMsg {
    ServerMsg { msg: Some(m) }
}

/// Queues a control reply without waiting: a client that does not read
/// must not stall its session's inbound loop (and so its heartbeats).
fn reply(out: &Out, m: server_msg::Msg) {
    let _ = out.try_send(Ok(msg(m)));
}

impl Daemon {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panicked handler must not take the daemon down with it.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the store and starts every stored, unexpired breakpoint again
    /// (if the policy still allows its owner to have it).
    pub fn restore(
        state_dir: &std::path::Path,
        history: usize,
        policy: Policy,
        cpu_budget: f64,
        exporter: Option<Arc<crate::otlp::Exporter>>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(Store::open(state_dir, history)?);
        let stored = store.load()?;
        let shared = Shared {
            store: store.clone(),
            redact: policy.redact.clone(),
            cpu_budget,
            exporter,
        };
        let d = Daemon {
            tables: Arc::default(),
            store,
            shared,
            policy: Arc::new(policy),
            fleet: None,
        };
        let now = now_ms();
        {
            let mut t = d.lock();
            t.next_bp = stored.next_id.max(1);
            for b in stored.breakpoints {
                if b.expires_at_ms != 0 && b.expires_at_ms <= now {
                    continue;
                }
                let mut b = b;
                let mut spec = b.spec.clone().unwrap_or_default();
                eprintln!("probe daemon: restoring {} ({})", b.id, spec.describe());
                if let Err(why) = d.policy.check(std::slice::from_ref(&b.owner), &spec) {
                    eprintln!("probe daemon: {} dropped: {why}", b.id);
                    continue;
                }
                d.policy.narrow(&b.owner, &mut spec);
                b.spec = Some(spec);
                let id = b.id.clone();
                t.bps.insert(id, Breakpoint::start(b, &d.shared));
            }
        }
        d.persist();
        Ok(d)
    }

    /// Writes the breakpoints outside sessions to the store.
    fn persist(&self) {
        let file = {
            let t = self.lock();
            let breakpoints = t
                .bps
                .values()
                .filter(|b| b.session.is_none())
                .map(|b| BreakpointInfo {
                    id: b.id.clone(),
                    spec: Some(b.spec.clone()),
                    expires_at_ms: b.expires_at_ms,
                    created_ms: b.created_ms,
                    owner: b.owner.clone(),
                    ..Default::default()
                })
                .collect();
            StoreFile {
                breakpoints,
                next_id: t.next_bp,
            }
        };
        if let Err(e) = self.store.save(&file) {
            eprintln!("probe daemon: cannot save breakpoints: {e}");
        }
    }

    /// Creates and starts a breakpoint for a client known as `who`; returns its id.
    fn add(
        &self,
        mut spec: BreakpointSpec,
        session: Option<&str>,
        expires_at_ms: u64,
        who: &[String],
    ) -> Result<String, Status> {
        spec.to_options().map_err(Status::invalid_argument)?;
        if spec.pid != 0 {
            spec.pid_start = crate::target::start_time(spec.pid).unwrap_or(0);
        }
        let owner = self.policy.check(who, &spec).map_err(|why| {
            eprintln!(
                "probe daemon: refused {} to {who:?}: {why}",
                spec.describe()
            );
            Status::permission_denied(why)
        })?;
        self.policy.narrow(&owner, &mut spec);
        if spec.cpu_budget.is_nan() || spec.cpu_budget < 0.0 {
            return Err(Status::invalid_argument(
                "--cpu-budget must be a positive percentage",
            ));
        }
        let id = {
            let mut t = self.lock();
            if let Some(s) = session {
                if !t.sessions.contains_key(s) {
                    return Err(Status::not_found(format!("no session {s}")));
                }
            }
            if t.bps.len() >= MAX_BREAKPOINTS {
                return Err(Status::resource_exhausted(format!(
                    "the daemon holds {MAX_BREAKPOINTS} breakpoints already (each holds 2 MiB of event ring per CPU); remove some first"
                )));
            }
            let id = format!("bp-{}", t.next_bp.max(1));
            t.next_bp = t.next_bp.max(1) + 1;
            let info = BreakpointInfo {
                id: id.clone(),
                spec: Some(spec),
                session: session.unwrap_or_default().to_owned(),
                expires_at_ms,
                created_ms: now_ms(),
                owner,
                ..Default::default()
            };
            let bp = Breakpoint::start(info, &self.shared);
            t.bps.insert(id.clone(), bp);
            if let Some(s) = session.and_then(|s| t.sessions.get_mut(s)) {
                s.bps.push(id.clone());
            }
            id
        };
        eprintln!(
            "probe daemon: {id}: added{}",
            session
                .map(|s| format!(" in session {s}"))
                .unwrap_or_default()
        );
        if session.is_none() {
            self.persist();
        }
        Ok(id)
    }

    /// The breakpoint's info once it is attached or has failed.
    async fn settled_info(&self, id: &str) -> Option<BreakpointInfo> {
        let mut rx = self.lock().bps.get(id).map(|b| b.state.clone())?;
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, rx.wait_for(|s| *s != State::Pending)).await;
        self.lock().bps.get(id).map(Breakpoint::info)
    }

    /// Removes a breakpoint (detaching it); `false` if there was none.
    fn remove(&self, id: &str) -> bool {
        let bp = {
            let mut t = self.lock();
            let bp = t.bps.remove(id);
            if let Some(s) = bp.as_ref().and_then(|b| b.session.clone()) {
                if let Some(s) = t.sessions.get_mut(&s) {
                    s.bps.retain(|b| b != id);
                }
            }
            bp
        };
        let Some(bp) = bp else { return false };
        let stored = bp.session.is_none();
        drop(bp); // its thread detaches it
        eprintln!("probe daemon: {id}: removed");
        if stored {
            self.persist();
        }
        true
    }

    /// Ends sessions not heard from within their TTL and breakpoints past
    /// their expiry, detaching their breakpoints.
    fn reap(&self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let (expired_sessions, expired_bps) = {
            let t = self.lock();
            let sessions: Vec<(String, Duration)> = t
                .sessions
                .iter()
                .filter(|(_, s)| now.duration_since(s.last_seen) > s.ttl)
                .map(|(id, s)| (id.clone(), now.duration_since(s.last_seen)))
                .collect();
            let bps: Vec<String> = t
                .bps
                .values()
                .filter(|b| b.expires_at_ms != 0 && b.expires_at_ms <= now_ms)
                .map(|b| b.id.clone())
                .collect();
            (sessions, bps)
        };
        for (sid, idle) in expired_sessions {
            let Some(s) = self.lock().sessions.remove(&sid) else {
                continue;
            };
            eprintln!(
                "probe daemon: session {sid} expired (not heard from for {:.1}s, TTL {:.1}s): detaching {}",
                idle.as_secs_f64(),
                s.ttl.as_secs_f64(),
                if s.bps.is_empty() { "nothing".to_owned() } else { s.bps.join(", ") }
            );
            for id in &s.bps {
                self.remove(id);
            }
        }
        for id in expired_bps {
            eprintln!("probe daemon: {id} expired");
            self.remove(&id);
        }
    }

    /// Sends `bp`'s events to a session's client until either goes away,
    /// and its status when it is suspended or detached.
    fn forward(&self, bp_id: &str, out: Out, dropped: Arc<AtomicU64>) {
        let Some((mut rx, mut state)) = self
            .lock()
            .bps
            .get(bp_id)
            .map(|b| (b.events.subscribe(), b.state.clone()))
        else {
            return;
        };
        let (me, id) = (self.clone(), bp_id.to_owned());
        tokio::spawn(async move {
            state.mark_unchanged();
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    changed = state.changed() => {
                        if changed.is_err() {
                            break; // the breakpoint is gone
                        }
                        // Attached (or failed) is answered to the Add itself.
                        let tell = matches!(
                            *state.borrow_and_update(),
                            State::Suspended { .. } | State::Detached { .. }
                        );
                        let info = me.lock().bps.get(&id).map(Breakpoint::info);
                        if let (true, Some(info)) = (tell, info) {
                            reply(&out, server_msg::Msg::Breakpoint(info));
                        }
                        continue;
                    }
                };
                match ev {
                    Ok(ev) => match out.try_send(Ok(msg(server_msg::Msg::Event((*ev).clone())))) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        dropped.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }

    /// Handles one message of session `sid`.
    async fn on_message(
        &self,
        sid: &str,
        who: &[String],
        m: client_msg::Msg,
        out: &Out,
        dropped: &Arc<AtomicU64>,
        reported: &mut u64,
    ) {
        match m {
            client_msg::Msg::Open(_) => {
                reply(
                    out,
                    server_msg::Msg::Error("the session is already open".into()),
                );
            }
            client_msg::Msg::Heartbeat(_) => {
                let d = dropped.load(Ordering::Relaxed);
                if d != *reported {
                    *reported = d;
                    reply(
                        out,
                        server_msg::Msg::Dropped(super::proto::Dropped { count: d }),
                    );
                }
                reply(out, server_msg::Msg::HeartbeatAck(Default::default()));
            }
            client_msg::Msg::Add(spec) => match self.add(spec, Some(sid), 0, who) {
                Ok(id) => {
                    // Subscribed before it can attach: no first hit is missed.
                    self.forward(&id, out.clone(), dropped.clone());
                    let (me, out) = (self.clone(), out.clone());
                    // Resolving can take seconds: answer when done, without
                    // holding up the session's heartbeats.
                    tokio::spawn(async move {
                        if let Some(info) = me.settled_info(&id).await {
                            let _ = out.send(Ok(msg(server_msg::Msg::Breakpoint(info)))).await;
                        }
                    });
                }
                Err(e) => reply(out, server_msg::Msg::Error(e.message().to_owned())),
            },
            client_msg::Msg::Remove(id) => {
                let mine = self
                    .lock()
                    .sessions
                    .get(sid)
                    .is_some_and(|s| s.bps.contains(&id));
                let reply = if mine && self.remove(&id) {
                    server_msg::Msg::Removed(id)
                } else {
                    server_msg::Msg::Error(format!("no breakpoint {id} in session {sid}"))
                };
                self::reply(out, reply);
            }
        }
    }

    /// Opens (or resumes) a session for a new stream.
    fn open_session(
        &self,
        open: super::proto::OpenSession,
        out: &Out,
        who: &[String],
    ) -> Result<(String, Arc<AtomicU64>, Duration, Vec<BreakpointInfo>), String> {
        let mut t = self.lock();
        if !open.resume.is_empty() {
            let s = t
                .sessions
                .get_mut(&open.resume)
                .ok_or_else(|| format!("no session {} (expired?)", open.resume))?;
            if s.who != who {
                return Err(format!("session {} belongs to another client", open.resume));
            }
            if let Some(old) = s.out.as_ref().filter(|o| !o.is_closed()) {
                // Its old stream may be a half-dead connection: this client
                // takes over, the old one is told.
                let _ = old.try_send(Err(Status::aborted(format!(
                    "session {} was resumed by another connection",
                    open.resume
                ))));
            }
            s.out = Some(out.clone());
            s.last_seen = Instant::now();
            let (bps, dropped, ttl) = (s.bps.clone(), s.dropped.clone(), s.ttl);
            let infos: Vec<BreakpointInfo> = bps
                .iter()
                .filter_map(|b| t.bps.get(b).map(Breakpoint::info))
                .collect();
            drop(t);
            return Ok((open.resume, dropped, ttl, infos));
        }
        t.next_session += 1;
        let id = format!("s-{}-{}", std::process::id(), t.next_session);
        let ttl = if open.ttl_ms == 0 {
            DEFAULT_TTL
        } else {
            Duration::from_millis(open.ttl_ms)
        };
        let dropped = Arc::new(AtomicU64::new(0));
        t.sessions.insert(
            id.clone(),
            Session {
                ttl,
                last_seen: Instant::now(),
                out: Some(out.clone()),
                bps: vec![],
                dropped: dropped.clone(),
                who: who.to_vec(),
            },
        );
        Ok((id, dropped, ttl, vec![]))
    }

    /// Drives one session stream until the client goes away.
    async fn run_session(self, mut inbound: Streaming<ClientMsg>, out: Out, who: Vec<String>) {
        let first = match inbound.message().await {
            Ok(Some(ClientMsg {
                msg: Some(client_msg::Msg::Open(o)),
            })) => o,
            Ok(_) => {
                let _ = out
                    .send(Err(Status::invalid_argument(
                        "a session starts with OpenSession",
                    )))
                    .await;
                return;
            }
            Err(_) => return,
        };
        let resumed = !first.resume.is_empty();
        let (sid, dropped, ttl, held) = match self.open_session(first, &out, &who) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Err(Status::not_found(e))).await;
                return;
            }
        };
        eprintln!(
            "probe daemon: session {sid} {} (TTL {:.1}s)",
            if resumed { "resumed" } else { "opened" },
            ttl.as_secs_f64()
        );
        let opened = SessionOpened {
            id: sid.clone(),
            ttl_ms: ttl.as_millis() as u64,
        };
        let _ = out.send(Ok(msg(server_msg::Msg::Opened(opened)))).await;
        // A resumed session: what it holds, then its hits from now on
        // (those in between are in the history, not replayed).
        for info in held {
            let id = info.id.clone();
            let _ = out.send(Ok(msg(server_msg::Msg::Breakpoint(info)))).await;
            self.forward(&id, out.clone(), dropped.clone());
        }
        let mut reported = 0;
        loop {
            match inbound.message().await {
                Ok(Some(ClientMsg { msg: Some(m) })) => {
                    let alive = self
                        .lock()
                        .sessions
                        .get_mut(&sid)
                        .map(|s| s.last_seen = Instant::now())
                        .is_some();
                    if !alive {
                        let _ = out
                            .send(Err(Status::not_found(format!("session {sid} expired"))))
                            .await;
                        return;
                    }
                    self.on_message(&sid, &who, m, &out, &dropped, &mut reported)
                        .await;
                }
                Ok(Some(ClientMsg { msg: None })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        // The TTL clock starts again now: the client may reconnect and resume
        // (unless another connection has resumed it already).
        if let Some(s) = self.lock().sessions.get_mut(&sid) {
            if s.out.as_ref().is_none_or(|o| o.same_channel(&out)) {
                s.out = None;
                s.last_seen = Instant::now();
            }
        }
        eprintln!("probe daemon: session {sid}: client disconnected; its breakpoints expire after the TTL unless it resumes");
    }

    /// Every breakpoint, stopped and joined (uprobes detached) at shutdown.
    fn shutdown(&self) {
        let bps = std::mem::take(&mut self.lock().bps);
        for (_, b) in bps {
            b.join();
        }
        if let Some(f) = &self.fleet {
            f.shutdown();
        }
    }

    /// `AddBreakpoint` with `fleet`: checks it, stores it in etcd, and
    /// answers with this daemon's own view once it has applied it (or
    /// skipped it: the selector may not match this host).
    async fn add_fleet(&self, r: AddRequest, who: &[String]) -> Result<BreakpointInfo, Status> {
        let Some(fleet) = self.fleet.clone() else {
            return Err(Status::failed_precondition(
                "this daemon runs without --etcd: fleet breakpoints need `probe daemon --etcd http://HOST:2379`",
            ));
        };
        let mut spec = r
            .spec
            .ok_or_else(|| Status::invalid_argument("no breakpoint spec"))?;
        let mut sel = r.selector.unwrap_or_default();
        if spec.pid != 0 {
            return Err(Status::invalid_argument(
                "a fleet breakpoint selects executables, not a process: use --binary PATH or --select-binary NAME",
            ));
        }
        // `--binary PATH` of a fleet breakpoint is its selector: the same
        // path on every host.
        if !spec.binary.is_empty() {
            if !sel.binary.is_empty() {
                return Err(Status::invalid_argument(
                    "--binary and --select-binary exclude each other (--binary PATH selects that path on every host)",
                ));
            }
            sel.binary = std::mem::take(&mut spec.binary);
        }
        if sel.binary.is_empty() && sel.build_id.is_empty() {
            return Err(Status::invalid_argument(
                "a fleet breakpoint needs --binary PATH, --select-binary NAME or --select-build-id ID",
            ));
        }
        // The same checks as a local breakpoint, with a stand-in target.
        BreakpointSpec {
            binary: "/".into(),
            ..spec.clone()
        }
        .to_options()
        .map_err(Status::invalid_argument)?;
        // An early answer from this daemon's policy; every daemon checks
        // its own again for each executable it attaches to.
        let as_path = if sel.binary.starts_with('/') {
            sel.binary.clone()
        } else if sel.binary.is_empty() {
            "*".into()
        } else {
            format!("*/{}", sel.binary)
        };
        let owner = self
            .policy
            .check(
                who,
                &BreakpointSpec {
                    binary: as_path,
                    ..spec.clone()
                },
            )
            .map_err(|why| {
                eprintln!("probe daemon: refused a fleet breakpoint to {who:?}: {why}");
                Status::permission_denied(why)
            })?;
        let expires = (r.expires_in_ms != 0).then(|| Duration::from_millis(r.expires_in_ms));
        let def = BreakpointInfo {
            spec: Some(spec),
            selector: Some(sel),
            owner,
            created_ms: now_ms(),
            expires_at_ms: expires.map_or(0, |d| now_ms() + d.as_millis() as u64),
            fleet: true,
            ..Default::default()
        };
        let id = fleet
            .add(def.clone(), expires)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        eprintln!("probe daemon: {id}: stored in etcd");
        fleet.settled(&id, SETTLE_TIMEOUT).await;
        // Stored is what counts: if this daemon's own watch has not caught
        // up (etcd trouble right after the put), say just that.
        Ok(fleet
            .infos()
            .await
            .into_iter()
            .find(|b| b.id == id)
            .unwrap_or(BreakpointInfo {
                id,
                state: "stored".into(),
                ..def
            }))
    }

    /// `RemoveBreakpoint` of a fleet breakpoint: deletes it from etcd (every
    /// daemon detaches it when its watch sees the delete).
    async fn remove_fleet(&self, fleet: &Fleet, id: &str, who: &[String]) -> Result<(), Status> {
        let unavailable = |e: super::etcd::EtcdError| Status::unavailable(e.to_string());
        let Some(def) = fleet.get(id).await.map_err(unavailable)? else {
            return Err(Status::not_found(format!(
                "no breakpoint {id} (see `probe bp ls`)"
            )));
        };
        if self.policy.enforced() && !who.contains(&def.owner) {
            return Err(Status::permission_denied(format!(
                "{id} belongs to {:?}",
                def.owner
            )));
        }
        if !fleet.remove(id).await.map_err(unavailable)? {
            return Err(Status::not_found(format!("no breakpoint {id}")));
        }
        eprintln!("probe daemon: {id}: deleted from etcd");
        Ok(())
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ServerMsg, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl daemon_server::Daemon for Daemon {
    type SessionStream = EventStream;

    async fn session(
        &self,
        req: Request<Streaming<ClientMsg>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (out, rx) = mpsc::channel(SESSION_QUEUE);
        let who = identities(&req);
        tokio::spawn(self.clone().run_session(req.into_inner(), out, who));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn add_breakpoint(
        &self,
        req: Request<AddRequest>,
    ) -> Result<Response<BreakpointInfo>, Status> {
        let who = identities(&req);
        let r = req.into_inner();
        if r.fleet {
            return self.add_fleet(r, &who).await.map(Response::new);
        }
        let spec = r
            .spec
            .ok_or_else(|| Status::invalid_argument("no breakpoint spec"))?;
        let expires = if r.expires_in_ms == 0 {
            0
        } else {
            now_ms() + r.expires_in_ms
        };
        let id = self.add(spec, None, expires, &who)?;
        let info = self
            .settled_info(&id)
            .await
            .ok_or_else(|| Status::not_found(format!("{id} was removed")))?;
        Ok(Response::new(info))
    }

    async fn remove_breakpoint(
        &self,
        req: Request<RemoveRequest>,
    ) -> Result<Response<RemoveReply>, Status> {
        let who = identities(&req);
        let id = req.into_inner().id;
        if let Some(fleet) = self.fleet.clone() {
            let local = self.lock().bps.contains_key(&id);
            if !local && (fleet.knows(&id) || id.starts_with("fleet-")) {
                return self
                    .remove_fleet(&fleet, &id, &who)
                    .await
                    .map(|()| Response::new(RemoveReply {}));
            }
        }
        // Under a policy, a client removes only what it added.
        let owner = self.lock().bps.get(&id).map(|b| b.owner.clone());
        if let Some(owner) = owner.filter(|o| self.policy.enforced() && !who.contains(o)) {
            return Err(Status::permission_denied(format!(
                "{id} belongs to {owner:?}"
            )));
        }
        if self.remove(&id) {
            Ok(Response::new(RemoveReply {}))
        } else {
            Err(Status::not_found(format!(
                "no breakpoint {id} (see `probe bp ls`)"
            )))
        }
    }

    async fn list_breakpoints(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<BreakpointList>, Status> {
        let mut breakpoints: Vec<BreakpointInfo> =
            self.lock().bps.values().map(Breakpoint::info).collect();
        if let Some(f) = &self.fleet {
            breakpoints.extend(f.infos().await);
        }
        Ok(Response::new(BreakpointList { breakpoints }))
    }

    async fn list_sessions(
        &self,
        _: Request<ListRequest>,
    ) -> Result<Response<SessionList>, Status> {
        let now = Instant::now();
        let sessions = self
            .lock()
            .sessions
            .iter()
            .map(|(id, s)| SessionInfo {
                id: id.clone(),
                ttl_ms: s.ttl.as_millis() as u64,
                connected: s.out.as_ref().is_some_and(|o| !o.is_closed()),
                idle_ms: now.duration_since(s.last_seen).as_millis() as u64,
                breakpoints: s.bps.clone(),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect();
        Ok(Response::new(SessionList { sessions }))
    }

    async fn history(
        &self,
        req: Request<HistoryRequest>,
    ) -> Result<Response<HistoryReply>, Status> {
        let r = req.into_inner();
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let bp = (!r.bp_id.is_empty()).then_some(r.bp_id.as_str());
        let hits = self
            .store
            .history(bp, limit)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(HistoryReply { hits }))
    }
}

/// Runs `probe daemon` until SIGINT/SIGTERM.
pub async fn serve(opts: DaemonOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{signal, SignalKind};
    // One exporter for the daemon: its resource is the daemon's host; each
    // record says which breakpoint, session, owner and process it is from.
    let exporter = opts.otlp.clone().map(|cfg| {
        let cfg = cfg.with_resource(
            opts.service_name.clone(),
            "probe-daemon",
            crate::session::probe_resource(),
        );
        eprintln!(
            "probe daemon: exporting every breakpoint's hits to {} (OTLP {:?})",
            cfg.endpoint, cfg.protocol
        );
        Arc::new(crate::otlp::Exporter::start(cfg))
    });
    let mut daemon = Daemon::restore(
        &opts.state_dir,
        opts.history,
        opts.policy.clone(),
        opts.cpu_budget,
        exporter.clone(),
    )?;
    if let Some(cfg) = opts.fleet.clone() {
        eprintln!(
            "probe daemon: fleet mode: etcd {} prefix {} host {:?} labels {:?}",
            cfg.endpoints, cfg.prefix, cfg.host, cfg.labels
        );
        let fleet = Fleet::new(cfg, daemon.shared.clone(), daemon.policy.clone())?;
        tokio::spawn(fleet.clone().run());
        daemon.fleet = Some(fleet);
    }
    let reaper = daemon.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            reaper.reap();
        }
    });
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        let _ = stopping.send(());
    };
    // A graceful shutdown waits for open streams, and a `probe watch`
    // stream never ends by itself: give them a moment, then cut them.
    let grace = async move {
        let _ = stopped.await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!("probe daemon: closing the sessions still open");
    };
    let mut server = tonic::transport::Server::builder();
    match (&opts.tls, &opts.listen) {
        (Some(tls), Listen::Tcp(_)) => server = server.tls_config(tls.config()?)?,
        (Some(_), Listen::Unix(_)) => anyhow::bail!("--tls-* applies to a tcp: listener (the unix socket is root-only)"),
        (None, Listen::Tcp(_)) => eprintln!(
            "probe daemon: warning: plain TCP without --tls-cert: anyone who can reach it can read the memory of any traced process"
        ),
        (None, Listen::Unix(_)) => {}
    }
    let router = server.add_service(daemon_server::DaemonServer::new(daemon.clone()));
    match &opts.listen {
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            // A socket left by a daemon that was killed; a live daemon's
            // socket answers, and then we refuse to steal it.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!(
                    "another probe daemon is already listening on unix:{}",
                    path.display()
                );
            }
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            // Whoever can connect can read any traced process's memory: root only.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            eprintln!(
                "probe daemon: listening on unix:{} (state in {})",
                path.display(),
                opts.state_dir.display()
            );
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, stop) => r?,
                _ = grace => {}
            }
            let _ = std::fs::remove_file(path);
        }
        Listen::Tcp(addr) => {
            let addr: SocketAddr = tokio::net::lookup_host(addr)
                .await
                .with_context(|| format!("cannot resolve {addr}"))?
                .next()
                .with_context(|| format!("{addr} resolves to nothing"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on tcp:{addr}"))?;
            eprintln!(
                "probe daemon: listening on tcp:{}{} (state in {})",
                listener.local_addr()?,
                if opts.tls.is_some() { " with mTLS" } else { "" },
                opts.state_dir.display()
            );
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, stop) => r?,
                _ = grace => {}
            }
        }
    }
    eprintln!("probe daemon: stopping: detaching every breakpoint (they are kept in the store)");
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.shutdown()).await?;
    if let Some(x) = exporter {
        // Every breakpoint has stopped: send what is still queued.
        x.flush(Duration::from_secs(5)).await;
    }
    Ok(())
}

//! The CLI's side of `probe daemon`: connecting (unix socket or TCP) and the
//! client commands `probe bp add|rm|ls`, `probe watch`, `probe sessions`
//! and `probe history`, which print what the daemon answers.

use std::{io::Write, process::ExitCode, time::Duration};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::error::chain;

use super::{
    breakpoint::now_ms,
    proto::{
        client_msg, daemon_client::DaemonClient, server_msg, AddRequest, BreakpointInfo,
        BreakpointSpec, ClientMsg, HistoryRequest, HostStatus, ListRequest, OpenSession,
        RemoveRequest, Selector,
    },
    tls::ClientTls,
    Listen,
};

/// Where a client finds the daemon, and how it proves who it is.
#[derive(Clone, Debug)]
pub struct Connect {
    pub addr: Listen,
    /// mTLS (tcp: only).
    pub tls: Option<ClientTls>,
}

/// Connects to the daemon.
pub async fn connect(to: &Connect) -> anyhow::Result<DaemonClient<Channel>> {
    let addr = &to.addr;
    let unreachable = |e: &dyn std::error::Error| {
        anyhow!(
            "cannot reach the probe daemon at {addr}: is `probe daemon` running? ({})",
            chain(e)
        )
    };
    let channel = match (addr, &to.tls) {
        (Listen::Unix(_), Some(_)) => {
            bail!("--tls-* is for a tcp: daemon address; the unix socket needs none")
        }
        (Listen::Unix(path), None) => {
            let path = path.clone();
            // The URI is required by the API and unused: the connector dials the socket.
            Endpoint::from_static("http://probe.local")
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| unreachable(&e))?
        }
        (Listen::Tcp(a), None) => Endpoint::from_shared(format!("http://{a}"))?
            .connect()
            .await
            .map_err(|e| unreachable(&e))?,
        (Listen::Tcp(a), Some(tls)) => {
            // The daemon's certificate must name the host we dial.
            let host = a
                .rsplit_once(':')
                .map_or(a.as_str(), |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            Endpoint::from_shared(format!("https://{a}"))?
                .tls_config(tls.config(host)?)?
                .connect()
                .await
                .map_err(|e| unreachable(&e))?
        }
    };
    Ok(DaemonClient::new(channel))
}

/// A daemon's refusal, as the user should read it.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow!("the daemon refused: {}", s.message())
}

/// One line describing a breakpoint.
pub fn describe(b: &BreakpointInfo) -> String {
    let spec = b
        .spec
        .as_ref()
        .map(BreakpointSpec::describe)
        .unwrap_or_default();
    let mut s = format!("{}\t{}\t{spec}", b.id, b.state);
    match b.state.as_str() {
        "attached" => s.push_str(&format!(
            "\t{} probe(s) on {}\thits={}",
            b.probes, b.target, b.hits
        )),
        "suspended" => s.push_str(&format!(
            "\t{} probe(s) on {}\thits={} suspended_hits={}\t{}: {}",
            b.probes, b.target, b.hits, b.suspended_hits, b.error_kind, b.error
        )),
        // One line per breakpoint: a multi-line message (closest matches) is folded.
        "error" | "detached" => s.push_str(&format!(
            "\t{}: {}",
            b.error_kind,
            b.error.replace("\n    ", " ").replace('\n', " ")
        )),
        _ => {}
    }
    if let Some(r) = b.spec.as_ref().map(BreakpointSpec::restrictions) {
        if !r.is_empty() {
            s.push_str(&format!("\t{} (policy)", r.join(", ")));
        }
    }
    if !b.session.is_empty() {
        s.push_str(&format!("\tsession={}", b.session));
    }
    if b.fleet {
        let sel = b.selector.clone().unwrap_or_default();
        s.push_str(&format!(
            "\tfleet: {}",
            super::fleet::describe_selector(&sel)
        ));
        if !b.hosts.is_empty() {
            let hosts: Vec<String> = b
                .hosts
                .iter()
                .map(|h| match h.state.as_str() {
                    "attached" => format!("{}=attached(hits={})", h.host, h.hits),
                    st => format!("{}={st}", h.host),
                })
                .collect();
            s.push_str(&format!("\thosts: {}", hosts.join(" ")));
        }
    }
    if b.expires_at_ms != 0 {
        let left = Duration::from_millis(b.expires_at_ms.saturating_sub(now_ms()) / 1000 * 1000);
        s.push_str(&format!(
            "\texpires in {}",
            humantime::format_duration(left)
        ));
    }
    s
}

fn info_json(b: &BreakpointInfo) -> serde_json::Value {
    let spec = b.spec.clone().unwrap_or_default();
    json!({
        "id": b.id, "state": b.state, "probes": b.probes, "target": b.target, "hits": b.hits,
        "funcs": spec.funcs, "lines": spec.lines, "addrs": spec.addrs, "cond": spec.cond,
        "binary": spec.binary, "pid": spec.pid,
        "session": b.session, "expires_at_ms": b.expires_at_ms, "owner": b.owner,
        "error_kind": b.error_kind, "error": b.error,
        "suspended_hits": b.suspended_hits,
        "cpu_budget": (spec.cpu_budget > 0.0).then_some(spec.cpu_budget),
        "strings": !spec.withhold_strings,
        "fleet": b.fleet,
        "selector": b.selector.as_ref().map(|s| json!({
            "binary": s.binary, "build_id": s.build_id, "labels": s.labels,
        })),
        "hosts": b.hosts.iter().map(host_json).collect::<Vec<_>>(),
    })
}

fn host_json(h: &HostStatus) -> serde_json::Value {
    json!({
        "host": h.host, "state": h.state, "error_kind": h.error_kind, "error": h.error,
        "probes": h.probes, "target": h.target, "hits": h.hits, "updated_ms": h.updated_ms,
    })
}

/// `probe bp add`: a breakpoint outside sessions; with a selector, a
/// fleet breakpoint (stored in etcd by the daemon).
pub async fn bp_add(
    to: &Connect,
    spec: BreakpointSpec,
    expires: Option<Duration>,
    fleet: Option<Selector>,
) -> anyhow::Result<ExitCode> {
    let mut c = connect(to).await?;
    let req = AddRequest {
        spec: Some(spec),
        expires_in_ms: expires.map_or(0, |d| d.as_millis().max(1) as u64),
        fleet: fleet.is_some(),
        selector: fleet,
    };
    let b = c.add_breakpoint(req).await.map_err(status)?.into_inner();
    println!("{}", describe(&b));
    if b.fleet {
        // This daemon's own state is one host's: the breakpoint is stored
        // whatever it is here.
        eprintln!(
            "probe: {} is stored in etcd: every daemon whose selector matches applies it; `probe bp ls` shows where; `probe bp rm {}` removes it everywhere",
            b.id, b.id
        );
        return Ok(ExitCode::SUCCESS);
    }
    if b.state == "error" {
        eprintln!("probe: {} could not be attached ({}); it stays defined and is retried when the daemon restarts; `probe bp rm {}` removes it", b.id, b.error_kind, b.id);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `probe bp rm`.
pub async fn bp_rm(to: &Connect, ids: &[String]) -> anyhow::Result<ExitCode> {
    let mut c = connect(to).await?;
    for id in ids {
        c.remove_breakpoint(RemoveRequest { id: id.clone() })
            .await
            .map_err(status)?;
        println!("{id}\tremoved");
    }
    Ok(ExitCode::SUCCESS)
}

/// `probe bp ls`.
pub async fn bp_ls(to: &Connect, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut c = connect(to).await?;
    let list = c
        .list_breakpoints(ListRequest {})
        .await
        .map_err(status)?
        .into_inner();
    for b in &list.breakpoints {
        println!(
            "{}",
            if as_json {
                info_json(b).to_string()
            } else {
                describe(b)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `probe sessions`.
pub async fn sessions(to: &Connect, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut c = connect(to).await?;
    let list = c
        .list_sessions(ListRequest {})
        .await
        .map_err(status)?
        .into_inner();
    for s in &list.sessions {
        if as_json {
            let j = json!({"id": s.id, "ttl_ms": s.ttl_ms, "connected": s.connected, "idle_ms": s.idle_ms, "breakpoints": s.breakpoints, "dropped": s.dropped});
            println!("{j}");
        } else {
            println!(
                "{}\t{}\tidle {:.1}s of TTL {:.1}s\tbreakpoints: {}\tdropped: {}",
                s.id,
                if s.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                s.idle_ms as f64 / 1000.0,
                s.ttl_ms as f64 / 1000.0,
                if s.breakpoints.is_empty() {
                    "none".into()
                } else {
                    s.breakpoints.join(",")
                },
                s.dropped
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `probe history`: stored hits as JSON lines, each with its breakpoint as `"bp"`.
pub async fn history(to: &Connect, bp: Option<String>, limit: u32) -> anyhow::Result<ExitCode> {
    let mut c = connect(to).await?;
    let r = c
        .history(HistoryRequest {
            bp_id: bp.unwrap_or_default(),
            limit,
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut out = std::io::stdout().lock();
    for h in r.hits {
        let mut v: serde_json::Value =
            serde_json::from_str(&h.json).context("the daemon sent a hit that is not JSON")?;
        if let Some(o) = v.as_object_mut() {
            o.insert("bp".into(), json!(h.bp_id));
        }
        if writeln!(out, "{v}").is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `probe watch`: a session with one breakpoint (or, with `resume`, an
/// existing session taken over with its breakpoints); prints its hits (the
/// JSON lines of `probe attach --format json`) until Ctrl-C or `max_hits`.
/// A clean exit removes the breakpoints at once; a killed client's
/// breakpoints are detached by the daemon after the TTL, unless a `probe
/// watch --resume` takes the session over before.
pub async fn watch(
    to: &Connect,
    spec: Option<BreakpointSpec>,
    resume: Option<String>,
    ttl: Duration,
    max_hits: Option<u64>,
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut c = connect(to).await?;
    let (tx, rx) = mpsc::channel::<ClientMsg>(16);
    let send = |m: client_msg::Msg| ClientMsg { msg: Some(m) };
    tx.send(send(client_msg::Msg::Open(OpenSession {
        ttl_ms: ttl.as_millis() as u64,
        resume: resume.clone().unwrap_or_default(),
    })))
    .await?;
    if let Some(spec) = spec {
        tx.send(send(client_msg::Msg::Add(spec))).await?;
    }
    let mut inbound = c
        .session(ReceiverStream::new(rx))
        .await
        .map_err(status)?
        .into_inner();
    let hb = tx.clone();
    // A resumed session keeps its own TTL: learned from `Opened` below, so
    // beat often enough for any TTL until then.
    let beat = (ttl / 3).max(Duration::from_millis(100));
    let beat = if resume.is_some() {
        beat.min(Duration::from_secs(1))
    } else {
        beat
    };
    tokio::spawn(async move {
        let mut t = tokio::time::interval(beat);
        t.tick().await;
        loop {
            t.tick().await;
            if hb
                .send(ClientMsg {
                    msg: Some(client_msg::Msg::Heartbeat(Default::default())),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut out = std::io::stdout().lock();
    let (mut shown, mut bps, mut failed) = (0u64, Vec::<String>::new(), false);
    loop {
        let m = tokio::select! {
            m = inbound.message() => m,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        };
        let m = match m {
            Ok(Some(m)) => m,
            Ok(None) => bail!("the daemon closed the session"),
            Err(s) => bail!("the session ended: {}", s.message()),
        };
        match m.msg {
            Some(server_msg::Msg::Opened(o)) => eprintln!(
                "probe: session {} {}(TTL {:.1}s; `probe watch --resume {}` takes it over within the TTL)",
                o.id,
                if resume.is_some() { "resumed " } else { "" },
                o.ttl_ms as f64 / 1000.0,
                o.id
            ),
            Some(server_msg::Msg::Breakpoint(b)) => {
                if !bps.contains(&b.id) {
                    bps.push(b.id.clone());
                }
                if let Some(r) = b.spec.as_ref().map(BreakpointSpec::restrictions) {
                    if !r.is_empty() {
                        eprintln!("probe: {}: {} by the daemon's policy", b.id, r.join(", "));
                    }
                }
                match b.state.as_str() {
                    "attached" => eprintln!(
                        "probe: {} attached {} probe(s) to {}; Ctrl-C to stop",
                        b.id, b.probes, b.target
                    ),
                    // Still attached: it may be removed, nothing else to do.
                    "suspended" => eprintln!(
                        "probe: {} suspended ({}): {}",
                        b.id, b.error_kind, b.error
                    ),
                    _ => {
                        eprintln!("probe: {} {}: {}: {}", b.id, b.state, b.error_kind, b.error);
                        failed = true;
                        break;
                    }
                }
            }
            Some(server_msg::Msg::Event(e)) => {
                shown += 1;
                if writeln!(out, "{}", e.json)
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    break; // stdout closed
                }
                if max_hits.is_some_and(|n| shown >= n) {
                    break;
                }
            }
            Some(server_msg::Msg::Dropped(d)) => {
                eprintln!(
                    "probe: {} events dropped so far (this client read too slowly)",
                    d.count
                )
            }
            Some(server_msg::Msg::Error(e)) => {
                eprintln!("probe: the daemon refused: {e}");
                failed = true;
                break;
            }
            Some(server_msg::Msg::Removed(_) | server_msg::Msg::HeartbeatAck(_)) | None => {}
        }
    }
    // Leaving on purpose: detach now rather than after the TTL.
    for id in &bps {
        let _ = tx.send(send(client_msg::Msg::Remove(id.clone()))).await;
    }
    let want = bps.len();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut answered = 0;
        while answered < want {
            match inbound.message().await {
                Ok(Some(m))
                    if matches!(
                        m.msg,
                        Some(server_msg::Msg::Removed(_) | server_msg::Msg::Error(_))
                    ) =>
                {
                    answered += 1
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    })
    .await;
    eprintln!("probe: {shown} hits shown");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

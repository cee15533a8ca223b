//! OTLP export of hits: logs (events `probe.hit` / `probe.return` with
//! structured values), spans (entry/return pairs) and Probe's own health as
//! metrics, to any OpenTelemetry collector over gRPC or HTTP/protobuf.
//!
//! Export never slows capture: hits are offered to a bounded queue
//! (`try_send`; a full queue drops and counts), a background task batches
//! and sends them with retries and backoff, and a failed batch is dropped
//! and counted. Memory is bounded by the queue and one batch in flight.
//! Configuration follows the OpenTelemetry specification's environment
//! variables (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`), flags taking precedence.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
        metrics::v1::{metrics_service_client::MetricsServiceClient, ExportMetricsServiceRequest},
        trace::v1::{trace_service_client::TraceServiceClient, ExportTraceServiceRequest},
    },
    common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    },
    resource::v1::Resource,
    trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status},
};
use prost::Message;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, sync::mpsc};

/// Items queued for export.
const QUEUE: usize = 4096;
/// Records per request.
const BATCH: usize = 512;

/// `--otlp-protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    Http,
}

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct Config {
    /// Base endpoint, e.g. `http://collector:4317`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub resource: Vec<(String, AnyValue)>,
}

impl Config {
    /// From flags, else the standard environment variables; `None` when
    /// neither asks for export.
    pub fn from_flags_and_env(
        endpoint: Option<String>,
        protocol: Option<Protocol>,
    ) -> Option<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let protocol = protocol.unwrap_or(match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            Some(p) if p.starts_with("http") => Protocol::Http,
            _ => Protocol::Grpc,
        });
        let endpoint = endpoint.or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("http://{endpoint}")
        };
        Some(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            protocol,
            resource: vec![],
        })
    }

    /// Resource attributes: ours, then `OTEL_RESOURCE_ATTRIBUTES`, with
    /// `service.name` from the flag, `OTEL_SERVICE_NAME`, or `default_service`.
    pub fn with_resource(
        mut self,
        service: Option<String>,
        default_service: &str,
        ours: Vec<(String, AnyValue)>,
    ) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut attrs: Vec<(String, AnyValue)> = ours;
        if let Some(list) = env("OTEL_RESOURCE_ATTRIBUTES") {
            for kv in list.split(',') {
                if let Some((k, v)) = kv.split_once('=') {
                    attrs.retain(|(a, _)| a != k.trim());
                    attrs.push((k.trim().to_owned(), str_value(&percent_decode(v.trim()))));
                }
            }
        }
        let has_env_service = attrs.iter().any(|(k, _)| k == "service.name");
        let service = service.or_else(|| env("OTEL_SERVICE_NAME"));
        match service {
            Some(s) => {
                attrs.retain(|(k, _)| k != "service.name");
                attrs.insert(0, ("service.name".into(), str_value(&s)));
            }
            None if !has_env_service => {
                attrs.insert(0, ("service.name".into(), str_value(default_service)))
            }
            None => {}
        }
        self.resource = attrs;
        self
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn str_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

pub fn int_value(i: i64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(i)),
    }
}

pub fn kv(k: &str, v: AnyValue) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(v),
    }
}

/// A JSON value (the event contract) as an OTLP `AnyValue`, keeping its
/// structure: objects become key-value lists, arrays arrays.
pub fn any_from_json(j: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match j {
        J::Null => None,
        J::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        J::Number(n) => Some(match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => any_value::Value::IntValue(i),
            (None, _) if n.is_u64() => any_value::Value::StringValue(n.to_string()),
            (None, Some(f)) => any_value::Value::DoubleValue(f),
            _ => any_value::Value::StringValue(n.to_string()),
        }),
        J::String(s) => Some(any_value::Value::StringValue(s.clone())),
        J::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.iter().map(any_from_json).collect(),
        })),
        J::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o.iter().map(|(k, v)| kv(k, any_from_json(v))).collect(),
        })),
    };
    AnyValue { value }
}

/// One export item.
pub enum Item {
    Log(LogRecord),
    Span(Span),
    Metrics(Vec<Metric>),
}

/// Export counters, shared with the session.
#[derive(Default, Debug)]
pub struct Stats {
    pub logs_sent: AtomicU64,
    pub spans_sent: AtomicU64,
    /// Dropped because the queue was full (a slow or absent collector).
    pub dropped_queue_full: AtomicU64,
    /// Dropped because sending failed after retries.
    pub dropped_failed: AtomicU64,
    pub failed_requests: AtomicU64,
}

/// The exporter handle: offer items, then shut down to flush.
pub struct Exporter {
    tx: mpsc::Sender<Item>,
    pub stats: Arc<Stats>,
    /// Fires when the export thread has sent what was queued and ended.
    done: tokio::sync::oneshot::Receiver<()>,
    pub endpoint: String,
}

impl Exporter {
    /// Starts the export on a thread of its own, with its own runtime:
    /// `probe attach` drains the ring on a single-threaded runtime, and a
    /// saturated reader never yielded to an export task sharing it (the
    /// bench saw exports stall at 4096 records while hits kept coming).
    pub fn start(cfg: Config) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let endpoint = cfg.endpoint.clone();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let s = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("probe-otlp".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(run(cfg, rx, s)),
                    Err(e) => eprintln!("probe: OTLP export not started: {e}"),
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            eprintln!("probe: OTLP export not started: {e}");
        }
        Self {
            tx,
            stats,
            done,
            endpoint,
        }
    }

    /// Queues an item without ever waiting; a full queue drops and counts.
    pub fn offer(&self, item: Item) {
        let n = match &item {
            Item::Log(_) | Item::Span(_) => 1,
            Item::Metrics(_) => 0,
        };
        if self.tx.try_send(item).is_err() {
            self.stats.dropped_queue_full.fetch_add(n, Relaxed);
        }
    }

    /// Waits (at most `timeout`) until the queue is empty and one batch
    /// period has passed, so what was queued has been sent; for a shared
    /// exporter (the daemon's) that cannot be [`Exporter::shutdown`].
    pub async fn flush(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, async {
            while self.tx.capacity() < self.tx.max_capacity() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
        })
        .await;
    }

    /// Flushes what is queued (waiting at most `timeout`) and stops.
    pub async fn shutdown(self, timeout: Duration) {
        drop(self.tx);
        // Past the timeout the thread is abandoned (a collector that does
        // not answer must not hold up the exit).
        let _ = tokio::time::timeout(timeout, self.done).await;
    }
}

#[allow(clippy::large_enum_variant)] // one client per exporter
enum Client {
    Grpc {
        logs: LogsServiceClient<tonic::transport::Channel>,
        traces: TraceServiceClient<tonic::transport::Channel>,
        metrics: MetricsServiceClient<tonic::transport::Channel>,
    },
    Http {
        host: String,
        port: u16,
    },
}

impl Client {
    fn new(cfg: &Config) -> Result<Self, String> {
        match cfg.protocol {
            Protocol::Grpc => {
                let ch = tonic::transport::Channel::from_shared(cfg.endpoint.clone())
                    .map_err(|e| format!("bad endpoint {}: {e}", cfg.endpoint))?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(3))
                    .connect_lazy();
                Ok(Client::Grpc {
                    logs: LogsServiceClient::new(ch.clone()),
                    traces: TraceServiceClient::new(ch.clone()),
                    metrics: MetricsServiceClient::new(ch),
                })
            }
            Protocol::Http => {
                let rest = cfg
                    .endpoint
                    .strip_prefix("http://")
                    .ok_or("OTLP/HTTP export supports http:// endpoints")?;
                let hostport = rest.split('/').next().unwrap_or(rest);
                let (host, port) = match hostport.rsplit_once(':') {
                    Some((h, p)) => (
                        h.to_owned(),
                        p.parse()
                            .map_err(|_| format!("bad port in {}", cfg.endpoint))?,
                    ),
                    None => (hostport.to_owned(), 4318),
                };
                Ok(Client::Http { host, port })
            }
        }
    }

    async fn send(&mut self, req: Request) -> Result<(), String> {
        match self {
            Client::Grpc {
                logs,
                traces,
                metrics,
            } => match req {
                Request::Logs(r) => logs
                    .export(r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_owned()),
                Request::Traces(r) => traces
                    .export(r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_owned()),
                Request::Metrics(r) => metrics
                    .export(r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_owned()),
            },
            Client::Http { host, port } => {
                let (path, body) = match req {
                    Request::Logs(r) => ("/v1/logs", r.encode_to_vec()),
                    Request::Traces(r) => ("/v1/traces", r.encode_to_vec()),
                    Request::Metrics(r) => ("/v1/metrics", r.encode_to_vec()),
                };
                let post = async {
                    let mut s = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .map_err(|e| e.to_string())?;
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    s.write_all(head.as_bytes())
                        .await
                        .map_err(|e| e.to_string())?;
                    s.write_all(&body).await.map_err(|e| e.to_string())?;
                    let mut resp = vec![0u8; 64];
                    let n = s.read(&mut resp).await.map_err(|e| e.to_string())?;
                    let status = String::from_utf8_lossy(&resp[..n]);
                    let code = status.split_whitespace().nth(1).unwrap_or("");
                    if code.starts_with('2') {
                        Ok(())
                    } else {
                        Err(format!("HTTP {code}"))
                    }
                };
                tokio::time::timeout(Duration::from_secs(5), post)
                    .await
                    .map_err(|_| "timed out".to_owned())?
            }
        }
    }
}

enum Request {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "probe".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

async fn run(cfg: Config, mut rx: mpsc::Receiver<Item>, stats: Arc<Stats>) {
    let resource = Resource {
        attributes: cfg.resource.iter().map(|(k, v)| kv(k, v.clone())).collect(),
        ..Default::default()
    };
    let mut client = match Client::new(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("probe: OTLP export disabled: {e}");
            while let Some(item) = rx.recv().await {
                if matches!(item, Item::Log(_) | Item::Span(_)) {
                    stats.dropped_failed.fetch_add(1, Relaxed);
                }
            }
            return;
        }
    };
    let (mut logs, mut spans, mut metrics): (Vec<LogRecord>, Vec<Span>, Vec<Metric>) =
        (vec![], vec![], vec![]);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut warned = false;
    let mut health = Health::default();
    loop {
        let (closed, ticked) = tokio::select! {
            item = rx.recv() => match item {
                Some(Item::Log(l)) => { logs.push(l); (false, false) }
                Some(Item::Span(s)) => { spans.push(s); (false, false) }
                Some(Item::Metrics(m)) => { metrics = m; (false, false) }
                None => (true, false),
            },
            _ = tick.tick() => (false, true),
        };
        // Batches go out when full, every 500 ms, and at shutdown.
        if !(closed || ticked || logs.len() >= BATCH || spans.len() >= BATCH) {
            continue;
        }
        if logs.is_empty() && spans.is_empty() && metrics.is_empty() && !closed {
            continue;
        }
        let sent = flush(
            &mut client,
            &resource,
            &mut logs,
            &mut spans,
            &mut metrics,
            &stats,
            &mut health,
        )
        .await;
        if !sent && !warned {
            warned = true;
            eprintln!("probe: cannot reach the OTLP collector at {}; exports are dropped and counted until it is back", cfg.endpoint);
        }
        if sent {
            warned = false;
        }
        if closed {
            return;
        }
    }
}

/// Sends what is batched; `false` if any request failed (that data is dropped).
async fn flush(
    client: &mut Client,
    resource: &Resource,
    logs: &mut Vec<LogRecord>,
    spans: &mut Vec<Span>,
    metrics: &mut Vec<Metric>,
    stats: &Stats,
    health: &mut Health,
) -> bool {
    let mut ok = true;
    while !logs.is_empty() {
        let batch: Vec<LogRecord> = logs.drain(..logs.len().min(BATCH)).collect();
        let n = batch.len() as u64;
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: batch,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        if retry(client, Request::Logs(req), stats, health).await {
            stats.logs_sent.fetch_add(n, Relaxed);
        } else {
            stats.dropped_failed.fetch_add(n, Relaxed);
            ok = false;
        }
    }
    if !spans.is_empty() {
        let batch: Vec<Span> = std::mem::take(spans);
        let n = batch.len() as u64;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans: batch,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        if retry(client, Request::Traces(req), stats, health).await {
            stats.spans_sent.fetch_add(n, Relaxed);
        } else {
            stats.dropped_failed.fetch_add(n, Relaxed);
            ok = false;
        }
    }
    if !metrics.is_empty() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics: std::mem::take(metrics),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        ok &= retry(client, Request::Metrics(req), stats, health).await;
    }
    ok
}

/// Up to three attempts with backoff (100 ms, 400 ms). The queue keeps
/// filling meanwhile; it is bounded, so a dead collector costs drops, not
/// memory.
async fn retry(client: &mut Client, req: Request, stats: &Stats, health: &mut Health) -> bool {
    // While the collector is down, try once a second and drop in between,
    // so an outage never stalls the queue behind long timeouts.
    if let Some(since) = health.down_since {
        if since.elapsed() < Duration::from_secs(1) {
            return false;
        }
    }
    let attempts = if health.down_since.is_some() { 1 } else { 3 };
    let mut delay = Duration::from_millis(100);
    for attempt in 0..attempts {
        let r = match &req {
            Request::Logs(r) => Request::Logs(r.clone()),
            Request::Traces(r) => Request::Traces(r.clone()),
            Request::Metrics(r) => Request::Metrics(r.clone()),
        };
        match client.send(r).await {
            Ok(()) => {
                health.down_since = None;
                return true;
            }
            Err(_) => {
                stats.failed_requests.fetch_add(1, Relaxed);
                if attempt + 1 < attempts {
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
    }
    health.down_since = Some(std::time::Instant::now());
    false
}

/// Whether the collector is reachable.
#[derive(Default)]
struct Health {
    down_since: Option<std::time::Instant>,
}

/// A log record for one hit.
pub fn log_record(event_name: &str, time_ns: u64, body: String, attrs: Vec<KeyValue>) -> LogRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    LogRecord {
        time_unix_nano: time_ns,
        observed_time_unix_nano: now,
        severity_number: 9, // INFO
        severity_text: "INFO".into(),
        body: Some(str_value(&body)),
        attributes: attrs,
        event_name: event_name.into(),
        ..Default::default()
    }
}

/// A span for an entry/return pair.
pub fn span(
    name: &str,
    start_ns: u64,
    end_ns: u64,
    error: Option<String>,
    attrs: Vec<KeyValue>,
    ids: (u128, u64),
) -> Span {
    Span {
        trace_id: ids.0.to_be_bytes().to_vec(),
        span_id: ids.1.to_be_bytes().to_vec(),
        name: name.to_owned(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        attributes: attrs,
        status: Some(match error {
            Some(m) => Status {
                message: m,
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        }),
        ..Default::default()
    }
}

/// A cumulative monotonic counter with one data point per attribute set.
pub fn counter(
    name: &str,
    description: &str,
    start_ns: u64,
    now_ns: u64,
    points: Vec<(Vec<KeyValue>, u64)>,
) -> Metric {
    Metric {
        name: name.to_owned(),
        description: description.to_owned(),
        unit: "1".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points
                .into_iter()
                .map(|(attributes, v)| NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start_ns,
                    time_unix_nano: now_ns,
                    value: Some(number_data_point::Value::AsInt(v as i64)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

/// Random-enough ids for spans (no dependency on a RNG crate).
pub fn ids(seed: u64) -> (u128, u64) {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let t = ((next() as u128) << 64) | next() as u128;
    (t, next() | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_structure() {
        let j = serde_json::json!({"s": {"name": "x", "n": 3}, "v": [1, 2], "f": 1.5, "b": true, "nil": null});
        let a = any_from_json(&j);
        let Some(any_value::Value::KvlistValue(l)) = a.value else {
            panic!()
        };
        let s = &l.values[0];
        assert_eq!(s.key, "s");
        assert!(matches!(
            s.value.as_ref().unwrap().value,
            Some(any_value::Value::KvlistValue(_))
        ));
        assert!(matches!(
            l.values[1].value.as_ref().unwrap().value,
            Some(any_value::Value::ArrayValue(_))
        ));
        assert!(
            matches!(l.values[2].value.as_ref().unwrap().value, Some(any_value::Value::DoubleValue(f)) if f == 1.5)
        );
    }

    #[test]
    fn config_from_env_and_flags() {
        let c = Config::from_flags_and_env(Some("localhost:4318".into()), Some(Protocol::Http))
            .unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.protocol),
            ("http://localhost:4318", Protocol::Http)
        );
        assert_eq!(percent_decode("a%2Cb"), "a,b");
        let c = c.with_resource(
            Some("svc".into()),
            "bin",
            vec![("process.pid".into(), int_value(7))],
        );
        assert_eq!(c.resource[0].0, "service.name");
        assert_eq!(c.resource[0].1, str_value("svc"));
    }
}

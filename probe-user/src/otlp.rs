//! OTLP export of hits: logs (events `probe.hit` / `probe.return` with
//! structured values), spans (entry/return pairs) and Probe's own health as
//! metrics, to any OpenTelemetry collector over gRPC or HTTP/protobuf.
//!
//! Export never slows capture: hits are offered to a bounded queue
//! (`try_send`; a full queue drops and counts), a background task batches
//! and sends them with retries and backoff, a few requests in flight at
//! once, and a failed batch is dropped and counted. Memory is bounded by the
//! queue and the requests in flight.
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
        logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
        trace::v1::ExportTraceServiceRequest,
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

/// Records (logs and spans) queued for export at most.
const QUEUE: usize = 8192;
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
    /// Items travel in batches: one message (and at most one wakeup of the
    /// export thread) per batch, not per record (perf: waking the export
    /// runtime per record was a sixth of the reader's CPU).
    tx: mpsc::Sender<Vec<Item>>,
    /// Records queued and not yet taken by the export thread.
    queued: Arc<std::sync::atomic::AtomicUsize>,
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
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stats = Arc::new(Stats::default());
        let endpoint = cfg.endpoint.clone();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let s = stats.clone();
        let q = queued.clone();
        let spawned = std::thread::Builder::new()
            .name("probe-otlp".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(run(cfg, rx, q, s)),
                    Err(e) => eprintln!("probe: OTLP export not started: {e}"),
                }
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            eprintln!("probe: OTLP export not started: {e}");
        }
        Self {
            tx,
            queued,
            stats,
            done,
            endpoint,
        }
    }

    /// Queues an item without ever waiting; a full queue drops and counts.
    pub fn offer(&self, item: Item) {
        self.offer_all(vec![item]);
    }

    /// Queues items, all or none, without ever waiting; a full queue drops
    /// and counts them.
    pub fn offer_all(&self, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        let n = records(&items);
        let before = self.queued.fetch_add(n, Relaxed);
        if before + n > QUEUE && n > 0 || self.tx.try_send(items).is_err() {
            self.queued.fetch_sub(n, Relaxed);
            self.stats.dropped_queue_full.fetch_add(n as u64, Relaxed);
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
/// Where requests go. Requests are encoded once (see [`Encoded`]) and sent
/// as bytes, so a retry re-sends them without re-encoding or cloning the
/// records (perf: cloning each batch for the attempt was a quarter of the
/// export thread's CPU).
#[derive(Clone)]
enum Client {
    Grpc(tonic::transport::Channel),
    Http { host: String, port: u16 },
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
                Ok(Client::Grpc(ch))
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

    async fn send(&self, req: &Encoded) -> Result<(), String> {
        match self {
            Client::Grpc(ch) => {
                let mut grpc = tonic::client::Grpc::new(ch.clone());
                grpc.ready().await.map_err(|e| e.to_string())?;
                let path =
                    tonic::codegen::http::uri::PathAndQuery::from_static(req.kind.grpc_path());
                grpc.unary(tonic::Request::new(req.body.clone()), path, RawCodec)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_owned())
            }
            Client::Http { host, port } => {
                let path = req.kind.http_path();
                let body = &req.body;
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
                    s.write_all(body).await.map_err(|e| e.to_string())?;
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

/// Which OTLP service a request is for.
#[derive(Clone, Copy)]
enum Kind {
    Logs,
    Traces,
    Metrics,
}

impl Kind {
    /// The gRPC method (opentelemetry-proto's `collector/*/v1/*_service.proto`).
    fn grpc_path(self) -> &'static str {
        match self {
            Kind::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Kind::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Kind::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    fn http_path(self) -> &'static str {
        match self {
            Kind::Logs => "/v1/logs",
            Kind::Traces => "/v1/traces",
            Kind::Metrics => "/v1/metrics",
        }
    }
}

/// An export request, protobuf-encoded once.
struct Encoded {
    kind: Kind,
    /// Records it carries (logs or spans; 0 for metrics), for the counters.
    records: u64,
    body: bytes::Bytes,
}

impl Encoded {
    fn new(kind: Kind, records: u64, msg: &impl Message) -> Self {
        Self {
            kind,
            records,
            body: msg.encode_to_vec().into(),
        }
    }
}

/// A gRPC codec for bodies already encoded: sends the bytes as they are
/// and skips the response (an `Export*ServiceResponse`, whose optional
/// partial-success counts Probe does not act on).
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        use bytes::BufMut;
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        use bytes::Buf;
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "probe".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Requests in flight at once: one at a time left the export waiting on
/// each round trip with CPU to spare (the bench exported ~34k records/s
/// with the machine half idle).
const IN_FLIGHT: usize = 4;

/// State shared by the requests in flight.
struct Shared {
    client: Client,
    stats: Arc<Stats>,
    endpoint: String,
    /// When the collector was last found unreachable (`None`: reachable).
    down_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The "cannot reach" warning was printed and not yet cleared.
    warned: std::sync::atomic::AtomicBool,
}

/// Logs and spans among `items` (metrics are not counted as records).
fn records(items: &[Item]) -> usize {
    items
        .iter()
        .filter(|i| matches!(i, Item::Log(_) | Item::Span(_)))
        .count()
}

async fn run(
    cfg: Config,
    mut rx: mpsc::Receiver<Vec<Item>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    stats: Arc<Stats>,
) {
    let resource = Resource {
        attributes: cfg.resource.iter().map(|(k, v)| kv(k, v.clone())).collect(),
        ..Default::default()
    };
    let client = match Client::new(&cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("probe: OTLP export disabled: {e}");
            while let Some(items) = rx.recv().await {
                let n = records(&items);
                queued.fetch_sub(n, Relaxed);
                stats.dropped_failed.fetch_add(n as u64, Relaxed);
            }
            return;
        }
    };
    let shared = Arc::new(Shared {
        client,
        stats,
        endpoint: cfg.endpoint.clone(),
        down_since: std::sync::Mutex::new(None),
        warned: Default::default(),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let (mut logs, mut spans, mut metrics): (Vec<LogRecord>, Vec<Span>, Vec<Metric>) =
        (vec![], vec![], vec![]);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        let (closed, ticked) = tokio::select! {
            items = rx.recv() => match items {
                Some(items) => {
                    queued.fetch_sub(records(&items), Relaxed);
                    for item in items {
                        match item {
                            Item::Log(l) => logs.push(l),
                            Item::Span(s) => spans.push(s),
                            Item::Metrics(m) => metrics = m,
                        }
                    }
                    (false, false)
                }
                None => (true, false),
            },
            _ = tick.tick() => (false, true),
        };
        // Batches go out when full, every 500 ms, and at shutdown.
        if closed || ticked || logs.len() >= BATCH || spans.len() >= BATCH {
            for req in requests(&resource, &mut logs, &mut spans, &mut metrics) {
                // Waits for a free slot: meanwhile the queue fills, and
                // drops (counted) once it is full; memory stays bounded.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    send(&shared, req).await;
                    drop(slot);
                });
            }
        }
        if closed {
            // Every request sent (or given up on) before the thread ends.
            let _ = slots.acquire_many(IN_FLIGHT as u32).await;
            return;
        }
    }
}

/// What is batched, as encoded requests (logs and spans in batches of
/// [`BATCH`], the latest metrics).
fn requests(
    resource: &Resource,
    logs: &mut Vec<LogRecord>,
    spans: &mut Vec<Span>,
    metrics: &mut Vec<Metric>,
) -> Vec<Encoded> {
    let mut out = vec![];
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
        out.push(Encoded::new(Kind::Logs, n, &req));
    }
    while !spans.is_empty() {
        let batch: Vec<Span> = spans.drain(..spans.len().min(BATCH)).collect();
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
        out.push(Encoded::new(Kind::Traces, n, &req));
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
        out.push(Encoded::new(Kind::Metrics, 0, &req));
    }
    out
}

/// Sends one request (with retries) and counts the outcome.
async fn send(shared: &Shared, req: Encoded) {
    let stats = &shared.stats;
    let sent = retry(shared, &req).await;
    let counter = match (req.kind, sent) {
        (Kind::Logs, true) => Some(&stats.logs_sent),
        (Kind::Traces, true) => Some(&stats.spans_sent),
        (Kind::Metrics, _) => None,
        (_, false) => Some(&stats.dropped_failed),
    };
    if let Some(c) = counter {
        c.fetch_add(req.records, Relaxed);
    }
    if sent {
        shared.warned.store(false, Relaxed);
    } else if !shared.warned.swap(true, Relaxed) {
        eprintln!(
            "probe: cannot reach the OTLP collector at {}; exports are dropped and counted until it is back",
            shared.endpoint
        );
    }
}

/// Up to three attempts with backoff (100 ms, 400 ms). The queue keeps
/// filling meanwhile; it is bounded, so a dead collector costs drops, not
/// memory.
async fn retry(shared: &Shared, req: &Encoded) -> bool {
    // While the collector is down, try once a second and drop in between,
    // so an outage never stalls the queue behind long timeouts.
    let down = *shared.down_since.lock().unwrap();
    if let Some(since) = down {
        if since.elapsed() < Duration::from_secs(1) {
            return false;
        }
    }
    let attempts = if down.is_some() { 1 } else { 3 };
    let mut delay = Duration::from_millis(100);
    for attempt in 0..attempts {
        match shared.client.send(req).await {
            Ok(()) => {
                *shared.down_since.lock().unwrap() = None;
                return true;
            }
            Err(_) => {
                shared.stats.failed_requests.fetch_add(1, Relaxed);
                if attempt + 1 < attempts {
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
    }
    *shared.down_since.lock().unwrap() = Some(std::time::Instant::now());
    false
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

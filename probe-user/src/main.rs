//! The `probe` command: a thin CLI over the `probe` library.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use probe::{
    capture::Limits,
    daemon::{
        client,
        fleet::{hostname, FleetConfig},
        policy::{Policy, Redactor},
        proto::{BreakpointSpec, Selector},
        server::{serve, DaemonOptions},
        tls::{ClientTls, ServerTls},
        Listen,
    },
    output::Format,
    resolve::{list_symbols, Program},
    session::{self, AttachOptions},
    target::TargetSpec,
};

#[derive(Parser)]
#[command(
    name = "probe",
    version,
    about = "Non-stop snapshot debugger for Go programs: see every call of a function, decoded, without pausing the process",
    after_help = "Examples:
  probe doctor                                 # can Probe run on this machine? what to fix if not
  probe attach --pid 4242 --func 'main.(*Store).Put'
  probe attach --binary ./server --func main.handler --format json --max-hits 10
  probe attach --func main.work -- ./worker -n 3
  probe symbols ./server Store
  probe daemon --state-dir /var/lib/probe      # then, from anywhere:
  probe bp add --binary ./server --func main.handler --expires 1h
  probe watch --binary ./server --func main.handler"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach probes to Go functions and print every call as it happens.
    #[command(after_help = "Examples:
  probe attach --pid 4242 --func 'main.(*Store).Put'
  probe attach --pid 4242 --func 'net/http.(*ServeMux).ServeHTTP' --duration 10s
  probe attach --binary /usr/local/bin/api --func main.handler --format json | jq .args
  probe attach --func main.step --max-hits 5 -- ./store -interval 10ms
  probe attach --pid 4242 --line store.go:57 --capture args,locals
  probe attach --pid 4242 --func main.handler --max-depth 3 --max-string 64 --max-elems 16
  probe attach --pid $(pgrep -d, -x api) --func main.handler      every api process
  probe attach --pid 4242 --func main.handler --follow     and the next api process after a restart

The target keeps running at full speed: probes never stop it. Ctrl-C detaches
and prints a summary (hits, shown, dropped) on stderr.

Exit status: 0 when stopped by Ctrl-C/SIGTERM, --duration or --max-hits; if
the target ends first, a launched command's own exit status (128+N if killed
by signal N), or 3 for a --pid/--binary target; 1 on an error.")]
    Attach(Box<AttachArgs>),
    /// List the functions of a Go binary that can be probed, with file:line.
    #[command(after_help = "Examples:
  probe symbols ./server            every function
  probe symbols ./server 'Store)'   methods of Store (case-insensitive substring)")]
    Symbols {
        /// The Go executable.
        binary: PathBuf,
        /// Only names containing this (case-insensitive).
        pattern: Option<String>,
    },
    /// Run the Probe daemon: holds breakpoints across many processes,
    /// controlled by `probe bp`, `probe watch`, `probe sessions`, `probe history`.
    #[command(after_help = "Examples:
  probe daemon                                        # unix:/run/probe/probe.sock, state in /var/lib/probe
  probe daemon --listen tcp:127.0.0.1:7070 --state-dir /tmp/probe-state
  probe daemon --etcd http://etcd-1:2379 --label env=prod --label zone=eu-1   # a fleet member
  probe daemon --cpu-budget 5 --otlp-endpoint http://otel-collector:4317

Breakpoints added with `probe bp add` are stored and attached again when the
daemon restarts (to every process running the binary by then). Those of a
`probe watch` session are detached when the client has not been heard from
for the session's TTL. SIGINT/SIGTERM detach everything and exit.

A breakpoint whose probes use more than --cpu-budget percent of a CPU is
suspended (hits counted, not captured; `probe bp ls` says so). With
--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT), every breakpoint's hits
are also exported, redacted, with probe.breakpoint.id, probe.session.id and
probe.owner attributes.

Fleet mode (--etcd): the daemon also applies every breakpoint stored under
--etcd-prefix whose selector matches it (`probe bp add --fleet` on any
member stores one), follows changes through an etcd watch, and publishes
its status per breakpoint under <prefix>status/<host>/. While etcd is
unreachable, what is applied stays applied; the daemon reconnects by itself.")]
    Daemon(DaemonArgs),
    /// Add, remove or list the daemon's breakpoints.
    #[command(subcommand)]
    Bp(BpCommand),
    /// Stream a breakpoint's hits live through the daemon (a session: its
    /// breakpoint is detached when you stop, or after --ttl if killed).
    #[command(after_help = "Examples:
  probe watch --binary /srv/api --func main.handler
  probe watch --pid 4242 --func 'main.(*Store).Put' --cond 'key == \"k7\"' --max-hits 1
  probe watch --daemon tcp:10.0.0.5:7070 --binary /srv/api --line api.go:88 --capture args,locals
  probe watch --resume s-4242-7      # take over a session whose client went away, within its TTL

Prints one JSON line per hit, as `probe attach --format json` does.")]
    Watch(Box<WatchArgs>),
    /// List the daemon's sessions.
    Sessions {
        #[command(flatten)]
        daemon: DaemonAddr,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Recent hits the daemon stored, oldest first, as JSON lines (with "bp").
    #[command(after_help = "Examples:
  probe history                  # the last 100 hits of every breakpoint
  probe history --bp bp-3 --limit 10")]
    History {
        #[command(flatten)]
        daemon: DaemonAddr,
        /// Only this breakpoint's hits.
        #[arg(long, value_name = "ID")]
        bp: Option<String>,
        /// The most recent N hits.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
    },
    /// Check that Probe can run on this machine: kernel, BPF features,
    /// privileges, uprobes, sysctls; each problem with its fix.
    #[command(after_help = "Examples:
  sudo probe doctor
  probe doctor || echo 'see the FAIL lines'

Exit status: 0 when Probe can run here, 1 when a FAIL line must be fixed first.")]
    Doctor,
    /// Checks of Probe's own error paths (used by the test suite).
    #[command(hide = true, subcommand)]
    Selftest(Selftest),
}

/// Which daemon a client command talks to.
#[derive(Args, Clone)]
struct DaemonAddr {
    /// The daemon's address: unix:PATH or tcp:HOST:PORT.
    #[arg(long = "daemon", env = "PROBE_DAEMON", value_name = "ADDR", default_value = "unix:/run/probe/probe.sock",
          value_parser = clap::value_parser!(Listen))]
    addr: Listen,
    /// CA certificate (PEM) that signed the daemon's certificate: connect
    /// over mTLS (tcp: addresses).
    #[arg(long, env = "PROBE_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM); its subject CN is who you are to the daemon's policy.
    #[arg(long, env = "PROBE_TLS_CERT", value_name = "PEM", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "PROBE_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl DaemonAddr {
    fn connect(&self) -> client::Connect {
        client::Connect {
            addr: self.addr.clone(),
            tls: self.tls_ca.clone().map(|ca| ClientTls {
                ca,
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
            }),
        }
    }
}

#[derive(Args)]
struct DaemonArgs {
    /// Where to listen: unix:PATH or tcp:HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "unix:/run/probe/probe.sock"
    )]
    listen: Listen,
    /// Where breakpoints and hit history are stored.
    #[arg(long, value_name = "DIR", default_value = probe::daemon::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Hits kept per breakpoint in the history.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    history: usize,
    /// Who may probe what (JSON; see docs/ARCHITECTURE.md). Without one,
    /// every client may probe everything.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Names of values to redact in hits, matched as words of the name
    /// (`key` hides apiKey, api_key, X-Api-Key, not monkey or keyboard); a
    /// word with `*` is a glob over the whole name (`*key*`: substrings)
    /// [default: the policy's "redact", else password,token,secret,key,authorization].
    #[arg(long, value_name = "WORDS", value_delimiter = ',')]
    redact: Option<Vec<String>>,
    /// This daemon's certificate (PEM) for mTLS on a tcp: listener.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<PathBuf>,
    /// This daemon's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) client certificates must chain to; clients without one are refused.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Fleet mode: the etcd cluster holding the fleet's breakpoints
    /// (http://HOST:PORT, comma-separated for several members).
    #[arg(long, value_name = "URLS")]
    etcd: Option<String>,
    /// The etcd key prefix this fleet uses.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "/probe/",
        requires = "etcd"
    )]
    etcd_prefix: String,
    /// A label of this host that fleet selectors match (repeatable): env=prod.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_label, requires = "etcd")]
    labels: Vec<(String, String)>,
    /// This daemon's name in the fleet's status keys [default: the host name].
    #[arg(long, value_name = "NAME", requires = "etcd")]
    host_name: Option<String>,
    /// Suspend a breakpoint when its BPF program uses more than this
    /// percentage of one CPU (measured in windows, as `probe attach
    /// --cpu-budget`); its hits are then counted, not captured, and `probe bp
    /// ls` says so. Per breakpoint; clients may ask for less, not more.
    #[arg(long, value_name = "PERCENT", default_value_t = probe::daemon::breakpoint::DEFAULT_CPU_BUDGET,
          value_parser = parse_budget)]
    cpu_budget: f64,
    #[command(flatten)]
    otlp: OtlpArgs,
}

/// A CPU budget: a positive percentage.
fn parse_budget(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "expected a percentage of one CPU like 5 or 0.5, got {s:?}"
        )),
    }
}

/// `key=value`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Subcommand)]
enum BpCommand {
    /// Add a breakpoint outside any session: it stays until removed or expired,
    /// and across daemon restarts. With --fleet, for every daemon of the fleet.
    #[command(after_help = "Examples:
  probe bp add --binary /srv/api --func main.handler
  probe bp add --pid 4242 --func 'main.(*Store).Put' --cond 'len(key) > 3' --expires 10m
  probe bp add --binary /srv/api --line api.go:88 --capture args,locals --stack 8
  probe bp add --fleet --select-binary api --select-label env=prod --func main.handler
  probe bp add --fleet --binary /srv/api/server --func main.handler --expires 1h

A --fleet breakpoint is stored in etcd by the daemon you talk to (it must run
with --etcd); every daemon of the fleet whose labels include the selector's
attaches it to its executables that match (--binary PATH: that path;
--select-binary NAME: running processes' executables by base name, or by
path glob with a /; --select-build-id: by build id), and detaches it when it
is removed (`probe bp rm fleet-N` on any daemon) or expires.
`probe bp ls` shows where it is applied.")]
    Add {
        #[command(flatten)]
        daemon: DaemonAddr,
        #[command(flatten)]
        bp: Box<BreakpointArgs>,
        /// Detach and forget it after this long (e.g. 10m, 2h).
        #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Suspend it when its probes use more than this percentage of one
        /// CPU [default and maximum: the daemon's --cpu-budget].
        #[arg(long, value_name = "PERCENT", value_parser = parse_budget)]
        cpu_budget: Option<f64>,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Remove (detach) breakpoints.
    Rm {
        #[command(flatten)]
        daemon: DaemonAddr,
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// List breakpoints with their status (attached, error and why, hits).
    Ls {
        #[command(flatten)]
        daemon: DaemonAddr,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Where a fleet breakpoint applies.
#[derive(Args)]
struct FleetArgs {
    /// Store the breakpoint in etcd for every daemon of the fleet that the
    /// selector matches (instead of this daemon only).
    #[arg(long, conflicts_with = "pid")]
    fleet: bool,
    /// Executables by base name (api), or by path glob if it has a / (/srv/*/api).
    #[arg(long, value_name = "NAME", requires = "fleet")]
    select_binary: Option<String>,
    /// Executables with this Go build id or GNU build id (hex).
    #[arg(long, value_name = "ID", requires = "fleet")]
    select_build_id: Option<String>,
    /// Only daemons started with this --label (repeatable; all must match).
    #[arg(long = "select-label", value_name = "K=V", value_parser = parse_label, requires = "fleet")]
    select_labels: Vec<(String, String)>,
}

impl FleetArgs {
    fn selector(&self) -> Option<Selector> {
        self.fleet.then(|| Selector {
            binary: self.select_binary.clone().unwrap_or_default(),
            build_id: self.select_build_id.clone().unwrap_or_default(),
            labels: self.select_labels.iter().cloned().collect(),
        })
    }
}

#[derive(Args)]
struct WatchArgs {
    #[command(flatten)]
    daemon: DaemonAddr,
    #[command(flatten)]
    bp: BreakpointArgs,
    /// Keep the breakpoint this long after the client was last heard from
    /// (heartbeats go every TTL/3).
    #[arg(long, value_name = "D", default_value = "30s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    max_hits: Option<u64>,
    /// Suspend the breakpoint when its probes use more than this percentage
    /// of one CPU [default and maximum: the daemon's --cpu-budget].
    #[arg(long, value_name = "PERCENT", value_parser = parse_budget)]
    cpu_budget: Option<f64>,
    /// Take over session ID (printed by an earlier `probe watch`, listed by
    /// `probe sessions`) within its TTL: its breakpoints stay attached and
    /// their hits flow here; no breakpoint flags then.
    #[arg(long, value_name = "SESSION")]
    resume: Option<String>,
}

impl BreakpointArgs {
    /// The daemon's form of these flags. A relative --binary is made
    /// absolute here: the daemon runs elsewhere.
    fn spec(&self) -> BreakpointSpec {
        BreakpointSpec {
            funcs: self.funcs.clone(),
            lines: self.lines.clone(),
            addrs: self.addrs.clone(),
            binary: self
                .binary
                .as_ref()
                .map(|b| {
                    std::fs::canonicalize(b)
                        .unwrap_or_else(|_| b.clone())
                        .to_string_lossy()
                        .into_owned()
                })
                .unwrap_or_default(),
            pid: self.pid.first().copied().unwrap_or(0),
            cond: self.cond.clone().unwrap_or_default(),
            locals: self.capture.contains("locals"),
            returns: self.returns,
            stack: self.stack,
            rate: self.rate.unwrap_or(0),
            max_depth: self.max_depth,
            max_string: self.max_string,
            max_elems: self.max_elems,
            max_bytes: self.max_bytes,
            pid_start: 0, // the daemon reads it
            withhold_strings: false,
            cpu_budget: 0.0,
        }
    }

    /// At least one thing to probe.
    fn check_probes(&self) -> anyhow::Result<()> {
        if self.funcs.is_empty() && self.lines.is_empty() && self.addrs.is_empty() {
            anyhow::bail!("say what to probe: --func SYMBOL, --line FILE:LINE or --addr ADDR");
        }
        Ok(())
    }

    /// A fleet breakpoint's spec: its executables come from the selector
    /// (or an absolute --binary, the same path on every host).
    fn fleet_spec(&self, sel: &Selector) -> anyhow::Result<BreakpointSpec> {
        self.check_probes()?;
        let spec = self.spec();
        if !spec.binary.is_empty() && !spec.binary.starts_with('/') {
            anyhow::bail!(
                "--binary {} is not an absolute path: a fleet breakpoint names the same path on every host (or use --select-binary NAME)",
                spec.binary
            );
        }
        if spec.binary.is_empty() && sel.binary.is_empty() && sel.build_id.is_empty() {
            anyhow::bail!("say what a fleet breakpoint probes: --binary PATH, --select-binary NAME or --select-build-id ID");
        }
        Ok(spec)
    }

    /// The daemon needs a running target (it cannot launch a command).
    fn daemon_spec(&self) -> anyhow::Result<BreakpointSpec> {
        self.check_probes()?;
        if self.pid.is_empty() && self.binary.is_none() {
            anyhow::bail!("say what to probe: --pid PID or --binary PATH");
        }
        if self.pid.len() > 1 {
            anyhow::bail!("a daemon breakpoint takes one --pid (add one breakpoint per process, or use --binary)");
        }
        Ok(self.spec())
    }
}

/// Runs a client command on a small runtime of its own.
fn client<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

#[derive(Subcommand)]
enum Selftest {
    /// Load a program the kernel verifier must reject, to show the report.
    Verifier,
    /// Load every eBPF program of Probe in every variant it can generate
    /// (walk loop, ring count); fails if the kernel rejects one.
    Programs,
    /// Attach the benchmarks' cost floor, an empty BPF program (or, with
    /// --work, one piece of a capture's work), at ADDR (0xADDR or
    /// SYMBOL+0xOFF) of every process running BINARY until DURATION is up,
    /// SIGTERM or Ctrl-C.
    Floor {
        binary: PathBuf,
        addr: String,
        #[arg(value_parser = humantime::parse_duration)]
        duration: Duration,
        /// What the program does besides returning, to price one piece of
        /// a capture's work at a time.
        #[arg(long, value_enum, default_value_t = FloorWork::Empty)]
        work: FloorWork,
    },
}

/// `probe selftest floor --work`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FloorWork {
    /// Nothing: the cost of the uprobe alone.
    Empty,
    /// One clock read (an event's timestamp).
    Clock,
    /// One 8-byte read of the target's memory, at its stack pointer.
    Read,
    /// By hand, for `main.work(n int, key string)` of testdata/hot: a
    /// timestamp, the argument registers, g's head (the goroutine id), a
    /// 256-byte stack window and the string's bytes, into a per-CPU buffer
    /// (no ring, no reader); the last hit's data is shown at the end.
    Minimal,
    /// Only the two reads of the target's memory that the per-hit goal
    /// needs whatever the arguments: g's head (the goroutine id) and the
    /// 256-byte stack window; the last hit's goroutine id is shown at the
    /// end.
    Reads,
    /// The minimal capture's data written as an event into this CPU's
    /// event ring and read by a reader here, on another CPU, draining every
    /// 10 ms: what delivery adds; the count delivered and the last event
    /// are shown at the end.
    Delivered,
}

impl FloorWork {
    /// The kernel program (probe-ebpf) that does this work.
    fn program(self) -> &'static str {
        match self {
            FloorWork::Empty => probe::kernel::FLOOR_PROGRAM,
            FloorWork::Clock => "probe_floor_clock",
            FloorWork::Read => "probe_floor_read",
            FloorWork::Minimal => "probe_floor_minimal",
            FloorWork::Reads => "probe_floor_reads",
            FloorWork::Delivered => "probe_floor_delivered",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FloorWork::Empty => "empty",
            FloorWork::Clock => "clock-read",
            FloorWork::Read => "one-read",
            FloorWork::Minimal => "minimal-capture",
            FloorWork::Reads => "goal-reads",
            FloorWork::Delivered => "minimal-delivered",
        }
    }
}

/// The reader of `probe selftest floor --work delivered`.
#[derive(Default)]
struct FloorDelivered {
    events: u64,
    /// The last event, described.
    last: String,
}

impl FloorDelivered {
    /// Reads every event in the rings, every byte of each (as a decoder
    /// would), and keeps the last one's values.
    fn drain(&mut self, rings: &mut probe::rings::Events) {
        use probe_common::{Chunk, EventHeader};
        const HDR_BYTES: usize = std::mem::size_of::<EventHeader>();
        const CHUNK_BYTES: usize = std::mem::size_of::<Chunk>();
        while let Some(ev) = rings.next_event() {
            let words = ev.chunks_exact(8).fold(0u64, |a, w| {
                a ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))
            });
            std::hint::black_box(words);
            // SAFETY: `next_event` checked the record holds a header.
            let h = unsafe { std::ptr::read_unaligned(ev.as_ptr() as *const EventHeader) };
            // The chunks: the stack window (a chunk header, 256 bytes), then
            // the string's.
            let key = ev
                .get(HDR_BYTES + CHUNK_BYTES + 256 + CHUNK_BYTES..)
                .unwrap_or_default();
            let key = &key[..(h.regs[2] as usize).min(key.len()).min(64)];
            self.last = format!(
                "; the last: n={} key={:?}, goroutine {}, {} bytes",
                h.regs[0] as i64,
                String::from_utf8_lossy(key),
                h.goid,
                ev.len()
            );
            self.events += 1;
        }
    }
}

/// OpenTelemetry export: shared by `probe attach` and `probe daemon`.
#[derive(Args, Clone)]
struct OtlpArgs {
    /// Also export every hit to this OpenTelemetry collector (OTLP), e.g.
    /// http://localhost:4317; the daemon adds each hit's breakpoint id,
    /// session and owner as attributes [default: $OTEL_EXPORTER_OTLP_ENDPOINT].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP transport [default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc].
    #[arg(long, value_enum)]
    otlp_protocol: Option<probe::otlp::Protocol>,
    /// service.name of exported telemetry [default: $OTEL_SERVICE_NAME, else
    /// the traced binary's name (attach) or probe-daemon (daemon)].
    #[arg(long, value_name = "NAME")]
    service_name: Option<String>,
}

impl OtlpArgs {
    fn config(&self) -> Option<probe::otlp::Config> {
        probe::otlp::Config::from_flags_and_env(self.otlp_endpoint.clone(), self.otlp_protocol)
    }
}

/// What to probe and what to capture: shared by `probe attach`, `probe bp
/// add` and `probe watch`.
#[derive(Args, Clone)]
struct BreakpointArgs {
    /// Trace this running process. With `probe attach`, repeatable or
    /// comma-separated for several processes of one executable (filtered by
    /// pid in the kernel).
    #[arg(
        long,
        short = 'p',
        value_name = "PID",
        value_delimiter = ',',
        conflicts_with = "binary"
    )]
    pid: Vec<u32>,
    /// Trace every process running this executable.
    #[arg(long, short = 'b')]
    binary: Option<PathBuf>,
    /// Function to probe, in Go's syntax: main.handler, main.(*Store).Put,
    /// net/http.(*ServeMux).ServeHTTP. Repeatable.
    // Required (one of --func, --line, --addr) but checked by hand:
    // `probe watch --resume` takes none.
    #[arg(long = "func", short = 'f', value_name = "SYMBOL")]
    funcs: Vec<String>,
    /// Probe a source line: every address where FILE:LINE begins (FILE
    /// matched as a path suffix, e.g. main.go:42 or store/main.go:42). Repeatable.
    #[arg(long = "line", short = 'l', value_name = "FILE:LINE")]
    lines: Vec<String>,
    /// Probe an instruction: 0xADDR, or SYMBOL+0xOFF from the ELF symbol
    /// table (works on binaries without DWARF: raw registers). Repeatable.
    #[arg(long = "addr", short = 'a', value_name = "ADDR")]
    addrs: Vec<String>,
    /// What to capture: args, or args,locals (locals are live inside a
    /// function, so use them with --line).
    #[arg(long, value_name = "WHAT", default_value = "args", value_parser = ["args", "args,locals", "locals,args"])]
    capture: String,
    /// Pointer hops followed from each argument.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_depth)]
    max_depth: u32,
    /// Bytes of each string captured.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_string)]
    max_string: u32,
    /// Elements of each slice, array or map captured.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_elems)]
    max_elems: u32,
    /// Bytes of memory captured per hit, all values together (at most 16384).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_bytes,
          value_parser = clap::value_parser!(u32).range(64..=probe_common::DATA_BYTES as i64))]
    max_bytes: u32,
    /// Also report every return: results and duration (probes each RET
    /// instruction; never a uretprobe, which breaks Go's moving stacks).
    #[arg(long)]
    returns: bool,
    /// Record and print the N innermost frames of the call stack.
    #[arg(long, value_name = "N", default_value_t = 0)]
    stack: u32,
    /// Capture at most N hits per second per probe (e.g. 100/s); the rest are
    /// counted as dropped.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    rate: Option<u32>,
    /// Only show hits where this Go-like expression over arguments and
    /// locals is true, e.g. 'n % 7 == 3 && name == "odd"' or
    /// 'o.Customer.Address.City == "Paris"'. Simple comparisons of
    /// arguments with literals are checked in the kernel.
    #[arg(long, value_name = "EXPR")]
    cond: Option<String>,
}

#[derive(Args)]
struct AttachArgs {
    #[command(flatten)]
    bp: BreakpointArgs,
    /// Output format [default: pretty on a terminal, json otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    max_hits: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Resolve the probes and explain them (PCs, variables and their
    /// locations, capture plan, where the condition runs); attach nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also capture and show the top BYTES of the goroutine's stack at each
    /// hit (from SP, up to 512; fewer at the top of the stack), raw: spilled
    /// values, saved registers and return addresses as they were.
    #[arg(long, value_name = "BYTES", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=probe_common::STACK_BYTES as i64))]
    stack_window: u32,
    /// Suspend every probe when their BPF programs use more than this
    /// percentage of one CPU (measured in a 200 ms window every 5 s); hits
    /// are then counted, not captured.
    #[arg(long, value_name = "PERCENT", default_value_t = 20.0)]
    cpu_budget: f64,
    #[command(flatten)]
    otlp: OtlpArgs,
    /// Probe's own CPU priority: a nice value (-20..19; 0 keeps normal
    /// priority) or `idle` (SCHED_IDLE: Probe runs only on CPU time the
    /// traced service leaves unused). Either way the service wins contention
    /// for CPU; a tracer that falls behind never slows the target: hits it
    /// cannot take are dropped and counted.
    #[arg(long, value_name = "N|idle", default_value = "10")]
    nice: probe::session::Priority,
    /// Keep going when the target goes away: with --pid, wait for the next
    /// process running the same binary and attach to it; with --binary,
    /// re-attach when the file is replaced (a deploy). A summary is printed
    /// for each process.
    #[arg(long, conflicts_with = "command")]
    follow: bool,
    /// Read DWARF from this separate debug-info file (made with `objcopy
    /// --only-keep-debug`) [default: found by .gnu_debuglink or build id].
    #[arg(long, value_name = "PATH")]
    debug_file: Option<PathBuf>,
    /// Launch this command and trace it from its first instruction.
    #[arg(last = true, value_name = "CMD", conflicts_with_all = ["pid", "binary"])]
    command: Vec<String>,
}

fn parse_rate(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<u32>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("expected a rate like 100/s, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("probe: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Attach(a) => {
            let a = *a;
            a.bp.check_probes()?;
            let mut pids = a.bp.pid.clone();
            pids.dedup();
            let target = match (pids.len(), &a.bp.binary, a.command.is_empty()) {
                (1, _, _) => TargetSpec::Pid(pids[0]),
                (2.., _, _) => TargetSpec::Pids(pids),
                (_, Some(b), _) => TargetSpec::Binary(b.clone()),
                (_, None, false) => TargetSpec::Command(a.command),
                (_, None, true) => anyhow::bail!(
                    "say what to trace: --pid PID, --binary PATH, or a command after `--` (see `probe attach --help`)"
                ),
            };
            let opts = AttachOptions {
                format: a.format.unwrap_or(if std::io::stdout().is_terminal() {
                    Format::Pretty
                } else {
                    Format::Json
                }),
                max_hits: a.max_hits,
                duration: a.duration,
                dry_run: a.dry_run,
                stack_window: a.stack_window,
                cpu_budget: a.cpu_budget,
                otlp: a.otlp.config(),
                service_name: a.otlp.service_name,
                nice: a.nice,
                follow: a.follow,
                debug_file: a.debug_file,
                ..a.bp.spec().options(target)
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let summary = rt.block_on(session::run(opts))?;
            eprint!("{summary}");
            Ok(ExitCode::from(summary.exit_code()))
        }
        Command::Daemon(d) => {
            let mut policy = match &d.policy {
                Some(p) => Policy::load(p)?,
                None => Policy::default(),
            };
            if let Some(words) = d.redact {
                policy.redact = Redactor::new(words);
            }
            let tls = match (d.tls_cert, d.tls_key, d.tls_client_ca) {
                (Some(cert), Some(key), Some(client_ca)) => Some(ServerTls {
                    cert,
                    key,
                    client_ca,
                }),
                _ => None,
            };
            let fleet = d.etcd.map(|endpoints| FleetConfig {
                endpoints,
                prefix: if d.etcd_prefix.ends_with('/') {
                    d.etcd_prefix.clone()
                } else {
                    format!("{}/", d.etcd_prefix)
                },
                host: d.host_name.clone().unwrap_or_else(hostname),
                labels: d.labels.iter().cloned().collect(),
            });
            let opts = DaemonOptions {
                listen: d.listen,
                state_dir: d.state_dir,
                history: d.history,
                policy,
                tls,
                fleet,
                cpu_budget: d.cpu_budget,
                otlp: d.otlp.config(),
                service_name: d.otlp.service_name,
            };
            // Breakpoints run on threads of their own; the API needs little.
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(serve(opts))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bp(BpCommand::Add {
            daemon,
            bp,
            expires,
            fleet,
            cpu_budget,
        }) => {
            let selector = fleet.selector();
            let mut spec = match &selector {
                Some(sel) => bp.fleet_spec(sel)?,
                None => bp.daemon_spec()?,
            };
            spec.cpu_budget = cpu_budget.unwrap_or(0.0);
            client(client::bp_add(&daemon.connect(), spec, expires, selector))
        }
        Command::Bp(BpCommand::Rm { daemon, ids }) => {
            client(client::bp_rm(&daemon.connect(), &ids))
        }
        Command::Bp(BpCommand::Ls { daemon, json }) => {
            client(client::bp_ls(&daemon.connect(), json))
        }
        Command::Watch(w) => {
            let spec = match &w.resume {
                None => {
                    let mut spec = w.bp.daemon_spec()?;
                    spec.cpu_budget = w.cpu_budget.unwrap_or(0.0);
                    Some(spec)
                }
                Some(_) => {
                    let b = &w.bp;
                    if !(b.funcs.is_empty()
                        && b.lines.is_empty()
                        && b.addrs.is_empty()
                        && b.pid.is_empty()
                        && b.binary.is_none())
                    {
                        anyhow::bail!("--resume takes over a session's breakpoints as they are: give no --func/--line/--addr/--pid/--binary with it");
                    }
                    None
                }
            };
            client(client::watch(
                &w.daemon.connect(),
                spec,
                w.resume.clone(),
                w.ttl,
                w.max_hits,
            ))
        }
        Command::Sessions { daemon, json } => client(client::sessions(&daemon.connect(), json)),
        Command::Doctor => {
            let (text, ok) = probe::doctor::render(&probe::doctor::run());
            print!("{text}");
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { daemon, bp, limit } => {
            client(client::history(&daemon.connect(), bp, limit))
        }
        Command::Symbols { binary, pattern } => {
            let program = Program::open(&binary)?;
            let mut out = std::io::stdout().lock();
            if let Some(pcln) = &program.pcln {
                // No DWARF: Go's function table has the names and lines.
                use std::io::Write;
                let pat = pattern.as_deref().map(str::to_lowercase);
                let mut fs: Vec<_> = pcln
                    .functions()
                    .iter()
                    .filter(|f| !f.name.starts_with("type:") && !f.name.starts_with("go:"))
                    .filter(|f| {
                        pat.as_ref()
                            .is_none_or(|p| f.name.to_lowercase().contains(p))
                    })
                    .collect();
                fs.sort_by(|a, b| a.name.cmp(&b.name));
                for f in fs {
                    let pos = match pcln.line_at(f, f.entry) {
                        Some((file, _)) => {
                            format!("{file}:{}", pcln.start_line(f).map_or(0, u64::from))
                        }
                        None => "<generated>".to_owned(),
                    };
                    if writeln!(out, "{}\t{pos}", f.name).is_err() {
                        break;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            for f in list_symbols(&program.debug, pattern.as_deref()) {
                use std::io::Write;
                let pos = if f.file.is_empty() {
                    "<generated>".to_owned()
                } else {
                    format!("{}:{}", f.file, f.line)
                };
                if writeln!(out, "{}\t{pos}", f.name).is_err() {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest(Selftest::Floor {
            binary,
            addr,
            duration,
            work,
        }) => {
            let mut program = Program::open_raw(&binary)?;
            let p = program.resolve_addr(&addr, Limits::default(), false)?;
            let name = work.program();
            let mut k = probe::kernel::Kernel::load(name)?;
            let mut events = None;
            if work == FloorWork::Delivered {
                let goid = program.runtime.map(|r| r.goid_offset).ok_or_else(|| {
                    anyhow::anyhow!("{}: no Go runtime offsets (goroutine id)", binary.display())
                })?;
                k.set_floor_goid(u32::try_from(goid)?)?;
                events = Some(k.take_events()?);
            }
            k.attach_program(name, 0, &binary, p.file_offset, None)?;
            eprintln!("probe: {} program attached at {:#x}", work.describe(), p.pc);
            let mut delivered = FloorDelivered::default();
            // Until the duration is up or we are told to stop (the benchmarks
            // end it with SIGTERM).
            client(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let end = tokio::time::sleep(duration);
                tokio::pin!(end);
                let mut drain = tokio::time::interval(std::time::Duration::from_millis(10));
                loop {
                    tokio::select! {
                        _ = &mut end => break,
                        _ = term.recv() => break,
                        _ = tokio::signal::ctrl_c() => break,
                        _ = drain.tick(), if events.is_some() => {
                            delivered.drain(events.as_mut().expect("checked"));
                        }
                    }
                }
                Ok(ExitCode::SUCCESS)
            })?;
            if let Some(ev) = events.as_mut() {
                delivered.drain(ev);
                eprintln!(
                    "probe: {} events delivered{}",
                    delivered.events, delivered.last
                );
            }
            if matches!(work, FloorWork::Minimal | FloorWork::Reads) {
                match k.minimal_capture()? {
                    Some(c) => {
                        let goid = program
                            .runtime
                            .and_then(|r| c.g_head.get(r.goid_offset as usize / 8))
                            .map_or("unknown".to_owned(), u64::to_string);
                        let window = std::mem::size_of_val(&c.stack);
                        if work == FloorWork::Reads {
                            eprintln!("probe: last reads: goroutine {goid}, stack window of {window} bytes");
                        } else {
                            let len = (c.regs[2] as usize).min(c.string.len());
                            eprintln!(
                                "probe: last minimal capture: n={} key={:?} ({} bytes), goroutine {goid}, stack window of {window} bytes from {:#x}",
                                c.regs[0] as i64,
                                String::from_utf8_lossy(&c.string[..len]),
                                c.regs[2],
                                c.regs[3],
                            );
                        }
                    }
                    None => eprintln!("probe: no hit captured"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest(Selftest::Programs) => {
            let mut bad = 0;
            for v in probe::kernel::Kernel::load_every_variant()? {
                let (name, variant) = (&v.program, &v.variant);
                let must_reject = name == probe::kernel::SELFTEST_REJECT_PROGRAM;
                let verdict = match (&v.outcome, must_reject) {
                    (Ok(Some(n)), false) => format!("accepted ({n} instructions verified)"),
                    (Ok(None), false) => "accepted".to_owned(),
                    (Err(_), true) => "rejected, as it must be".to_owned(),
                    (Ok(_), true) => {
                        bad += 1;
                        "ACCEPTED, but it must be rejected".to_owned()
                    }
                    (Err(e), false) => {
                        bad += 1;
                        format!("REJECTED: {e}")
                    }
                };
                println!("{name:<26} {variant:<26} {verdict}");
            }
            if bad > 0 {
                anyhow::bail!("{bad} program variant(s) not loaded as expected on this kernel");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest(Selftest::Verifier) => {
            match probe::kernel::Kernel::load(probe::kernel::SELFTEST_REJECT_PROGRAM) {
                Ok(_) => anyhow::bail!("the verifier accepted a program it must reject"),
                Err(e) => Err(e.into()),
            }
        }
    }
}

//! The `probe` command: a thin CLI over the `probe` library.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use probe::{
    capture::Limits,
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
  probe attach --pid 4242 --func 'main.(*Store).Put'
  probe attach --binary ./server --func main.handler --format json --max-hits 10
  probe attach --func main.work -- ./worker -n 3
  probe symbols ./server Store"
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
    /// Checks of Probe's own error paths (used by the test suite).
    #[command(hide = true, subcommand)]
    Selftest(Selftest),
}

#[derive(Subcommand)]
enum Selftest {
    /// Load a program the kernel verifier must reject, to show the report.
    Verifier,
    /// Attach an empty BPF program at ADDR (0xADDR or SYMBOL+0xOFF) of every
    /// process running BINARY for a while: the benchmarks' cost floor.
    Floor {
        binary: PathBuf,
        addr: String,
        #[arg(value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

#[derive(Args)]
struct AttachArgs {
    /// Trace this running process. Repeatable, or comma-separated, for
    /// several processes of one executable (filtered by pid in the kernel).
    #[arg(long, short = 'p', value_name = "PID", value_delimiter = ',', conflicts_with_all = ["binary", "command"])]
    pid: Vec<u32>,
    /// Trace every process running this executable.
    #[arg(long, short = 'b', conflicts_with = "command")]
    binary: Option<PathBuf>,
    /// Function to probe, in Go's syntax: main.handler, main.(*Store).Put,
    /// net/http.(*ServeMux).ServeHTTP. Repeatable.
    #[arg(long = "func", short = 'f', value_name = "SYMBOL", required_unless_present_any = ["lines", "addrs"])]
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
    /// Output format [default: pretty on a terminal, json otherwise].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    max_hits: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
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
    /// Resolve the probes and explain them (PCs, variables and their
    /// locations, capture plan, where the condition runs); attach nothing.
    #[arg(long)]
    dry_run: bool,
    /// Suspend every probe when their BPF programs use more than this
    /// percentage of one CPU (measured over the last second); hits are then
    /// counted, not captured.
    #[arg(long, value_name = "PERCENT", default_value_t = 20.0)]
    cpu_budget: f64,
    /// Also export every hit to this OpenTelemetry collector (OTLP), e.g.
    /// http://localhost:4317 [default: $OTEL_EXPORTER_OTLP_ENDPOINT].
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP transport [default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc].
    #[arg(long, value_enum)]
    otlp_protocol: Option<probe::otlp::Protocol>,
    /// service.name of exported telemetry [default: $OTEL_SERVICE_NAME, else
    /// the traced binary's name].
    #[arg(long, value_name = "NAME")]
    service_name: Option<String>,
    /// Run Probe itself at this nice value, so the traced service wins any
    /// contention for CPU (0 keeps normal priority). A tracer that falls
    /// behind never slows the target: hits it cannot take are dropped and
    /// counted.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: i32,
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
    #[arg(last = true, value_name = "CMD")]
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
            let mut pids = a.pid;
            pids.dedup();
            let target = match (pids.len(), a.binary, a.command.is_empty()) {
                (1, _, _) => TargetSpec::Pid(pids[0]),
                (2.., _, _) => TargetSpec::Pids(pids),
                (_, Some(b), _) => TargetSpec::Binary(b),
                (_, None, false) => TargetSpec::Command(a.command),
                (_, None, true) => anyhow::bail!(
                    "say what to trace: --pid PID, --binary PATH, or a command after `--` (see `probe attach --help`)"
                ),
            };
            let format = a.format.unwrap_or(if std::io::stdout().is_terminal() {
                Format::Pretty
            } else {
                Format::Json
            });
            let limits = Limits {
                max_depth: a.max_depth,
                max_string: a.max_string,
                max_elems: a.max_elems,
                max_bytes: a.max_bytes,
            };
            let opts = AttachOptions {
                target,
                funcs: a.funcs,
                lines: a.lines,
                addrs: a.addrs,
                locals: a.capture.contains("locals"),
                format,
                max_hits: a.max_hits,
                duration: a.duration,
                limits,
                returns: a.returns,
                stack: a.stack,
                rate: a.rate,
                cond: a.cond,
                dry_run: a.dry_run,
                cpu_budget: a.cpu_budget,
                otlp: probe::otlp::Config::from_flags_and_env(a.otlp_endpoint, a.otlp_protocol),
                service_name: a.service_name,
                nice: a.nice,
                follow: a.follow,
                debug_file: a.debug_file,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let summary = rt.block_on(session::run(opts))?;
            eprint!("{summary}");
            Ok(ExitCode::from(summary.exit_code()))
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
        }) => {
            let mut program = Program::open_raw(&binary)?;
            let p = program.resolve_addr(&addr, Limits::default(), false)?;
            let mut k = probe::kernel::Kernel::load(probe::kernel::FLOOR_PROGRAM)?;
            k.attach_program(
                probe::kernel::FLOOR_PROGRAM,
                0,
                &binary,
                p.file_offset,
                None,
            )?;
            eprintln!("probe: empty program attached at {:#x}", p.pc);
            std::thread::sleep(duration);
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

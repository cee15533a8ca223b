//! OTLP export against a real collector process (rotel, from PyPI): logs
//! with structured values, spans for entry/return pairs, health metrics and
//! resource attributes arrive intact over gRPC and HTTP; a collector that
//! dies mid-run costs counted drops, never the target's speed or the
//! tracer's memory, and export recovers when it comes back.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use probe_integration::{
    finish, free_port, go_versions, probe, probe_bin, testdata, Collector, Target,
};

const T: Duration = Duration::from_secs(90);

#[test]
fn hits_spans_and_metrics_arrive_structured_over_grpc_and_http() {
    for (v, protocol) in go_versions().into_iter().zip(["grpc", "http", "grpc"]) {
        let col = Collector::start(free_port(), free_port(), protocol);
        let endpoint = match protocol {
            "grpc" => format!("http://127.0.0.1:{}", col.grpc),
            _ => format!("http://127.0.0.1:{}", col.http),
        };
        let store = testdata(&v, "store");
        let run = probe(
            &[
                "attach",
                "--func",
                "main.(*Store).Put",
                "--max-hits",
                "3",
                "--format",
                "json",
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--",
                store.to_str().unwrap(),
                "-interval",
                "5ms",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(
            run.stderr.contains("3 hits and 0 spans sent, 0 dropped"),
            "go{v}: {}",
            run.stderr
        );
        let pid = run.events[0]["pid"].as_u64().unwrap();
        let got = col.wait_for("Metric #");
        for want in [
            "EventName: probe.hit".to_owned(),
            "-> service.name: Str(store)".to_owned(),
            format!("-> process.pid: Int({pid})"),
            format!("-> go.version: Str(go{v})"),
            "-> telemetry.sdk.name: Str(probe)".to_owned(),
            "-> host.name: Str(".to_owned(),
            "-> go.build_id: Str(".to_owned(),
            "-> code.function.name: Str(main.(*Store).Put)".to_owned(),
            "-> code.file.path: Str(".to_owned(),
            "-> code.line.number: Int(45)".to_owned(),
            "-> go.goroutine.id: Int(1)".to_owned(),
            "-> thread.id: Int(".to_owned(),
            "-> probe.id: Str(main.(*Store).Put)".to_owned(),
            // The struct argument is a nested key-value list with its fields.
            "-> args: Map(s:Map(name:Str(main-store), shard:Int(7), puts:Int(0)".to_owned(),
            "key:Str(k0), val:Slice(Int(0), Int(1), Int(2)), ttl:Int(0))".to_owned(),
            "-> Name: probe.hits".to_owned(),
            "-> Name: probe.captured".to_owned(),
            "-> Name: probe.dropped".to_owned(),
        ] {
            assert!(
                got.contains(&want),
                "go{v} over {protocol}: collector output lacks {want:?}:\n{got}"
            );
        }

        // Returns become spans, with error status when an error is returned.
        let calls = testdata(&v, "calls");
        let run = probe(
            &[
                "attach",
                "--func",
                "main.divide",
                "--returns",
                "--format",
                "json",
                "--otlp-endpoint",
                &endpoint,
                "--otlp-protocol",
                protocol,
                "--service-name",
                "divider",
                "--",
                calls.to_str().unwrap(),
                "-count",
                "6",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        assert!(
            run.stderr.contains("12 hits and 6 spans sent"),
            "go{v}: {}",
            run.stderr
        );
        let got = col.wait_for("service.name: Str(divider)");
        let got = if got.matches("Name           : main.divide").count() < 6 {
            col.wait_for("Span #5")
        } else {
            got
        };
        assert!(got.contains("EventName: probe.return"), "{got}");
        assert!(got.contains("-> returns: Map(q:Int(0), err:Map(type:Str(*errors.errorString), value:Map(s:Str(division by zero))))"), "{got}");
        assert!(
            got.contains("Status code    : STATUS_CODE_ERROR"),
            "go{v}: error results mark the span: {got}"
        );
        assert!(got.contains("-> duration_ns: Int("));
    }
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_dead_collector_costs_counted_drops_and_export_recovers() {
    let v = go_versions().pop().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let col = Collector::start(grpc, http, "first");
    let target = Target::store(&v, &["-interval", "1ms"]);
    // Events go to a file: a pipe nobody reads would stall the tracer.
    let events =
        std::env::temp_dir().join(format!("probe-otlp-events-{}.json", std::process::id()));
    let child = Command::new(probe_bin())
        .args([
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--duration",
            "9s",
        ])
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{grpc}")])
        .stdout(std::fs::File::create(&events).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let probe_pid = child.id();
    col.wait_for("EventName: probe.hit");
    drop(col); // the collector dies
    let ticks_at_kill = target.ticks.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(1500));
    let rss_early = rss_kb(probe_pid);
    std::thread::sleep(Duration::from_millis(2500));
    let rss_late = rss_kb(probe_pid);
    let ticks_dead = target.ticks.lock().unwrap().len() - ticks_at_kill;
    let col = Collector::start(grpc, http, "second"); // and comes back
    col.wait_for("EventName: probe.hit");
    let run = finish(child, T);
    assert!(run.status.success(), "{}", run.stderr);
    let n_events = std::fs::read_to_string(&events).unwrap().lines().count() as u64;
    let _ = std::fs::remove_file(&events);
    // Memory stayed flat while the collector was gone.
    assert!(
        rss_early > 0 && rss_late < rss_early + 20 * 1024,
        "tracer RSS grew from {rss_early} kB to {rss_late} kB"
    );
    // The target kept its pace (1 ms per call: ~4000 calls in 4 s; a
    // blocked tracer would not slow it, but a paused target would stop).
    assert!(
        ticks_dead > 1000,
        "the target made only {ticks_dead} calls while the collector was down"
    );
    let summary = run
        .stderr
        .lines()
        .find(|l| l.contains("OTLP export to"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    let num = |what: &str| -> u64 {
        summary
            .split(", ")
            .find(|p| p.contains(what))
            .unwrap()
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap()
    };
    let dropped = num("dropped (queue full)") + num("dropped (collector unreachable)");
    assert!(
        dropped > 0,
        "drops while the collector was down are counted: {summary}"
    );
    assert!(
        run.stderr.contains("cannot reach the OTLP collector"),
        "the user is told: {}",
        run.stderr
    );
    let sent = summary
        .split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(sent > 0, "{summary}");
    assert_eq!(
        sent + dropped,
        n_events,
        "every hit exported or counted: {summary}"
    );
}

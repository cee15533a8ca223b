//! Binaries as users build them: position-independent executables
//! (`-buildmode=pie`, loaded at a random address), on every Go release.

use std::time::Duration;

use probe_integration::{go_versions, probe, testdata};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[test]
fn pie_binaries_decode_like_static_ones() {
    for v in go_versions() {
        let bin = testdata(&v, "values-pie");
        let run = probe(
            &[
                "attach", "--func", "main.ifaces", "--func", "main.misc", "--stack", "4", "--format", "json", "--max-hits", "4", "--",
                bin.to_str().unwrap(), "-interval", "2ms",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        let ifaces: Vec<_> = run.events.iter().filter(|e| e["function"] == "main.ifaces").collect();
        let misc: Vec<_> = run.events.iter().filter(|e| e["function"] == "main.misc").collect();
        let i = &ifaces[1]["args"];
        // Dynamic types are found although runtime addresses are shifted.
        assert_eq!(i["sp"], json!({"type": "*main.Circle", "value": {"R": 1.0}}), "go{v} PIE: {i}");
        assert_eq!(i["err"], json!({"type": "*main.CodeErr", "value": {"Code": 1}}), "go{v} PIE");
        let m = &misc[1]["args"];
        assert_eq!(m["f"], "main.double", "go{v} PIE: code addresses are unbiased: {m}");
        let st = misc[1]["stack"].as_array().unwrap();
        assert_eq!(st[0]["function"], "main.misc");
        assert_eq!(st[1]["function"], "main.step", "go{v} PIE: {st:?}");
    }
}

//! Binaries as users build them: position-independent executables
//! (`-buildmode=pie`, loaded at a random address), on every Go release.

use std::time::Duration;

use probe_integration::{go_versions, probe, spawn_fresh, testdata, PrivateCopy};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[test]
fn pie_binaries_decode_like_static_ones() {
    for v in go_versions() {
        let bin = testdata(&v, "values-pie");
        let run = probe(
            &[
                "attach",
                "--func",
                "main.ifaces",
                "--func",
                "main.misc",
                "--stack",
                "4",
                "--format",
                "json",
                "--max-hits",
                "4",
                "--",
                bin.to_str().unwrap(),
                "-interval",
                "2ms",
            ],
            T,
        );
        assert!(run.status.success(), "go{v}: {}", run.stderr);
        let ifaces: Vec<_> = run
            .events
            .iter()
            .filter(|e| e["function"] == "main.ifaces")
            .collect();
        let misc: Vec<_> = run
            .events
            .iter()
            .filter(|e| e["function"] == "main.misc")
            .collect();
        let i = &ifaces[1]["args"];
        // Dynamic types are found although runtime addresses are shifted.
        assert_eq!(
            i["sp"],
            json!({"type": "*main.Circle", "value": {"R": 1.0}}),
            "go{v} PIE: {i}"
        );
        assert_eq!(
            i["err"],
            json!({"type": "*main.CodeErr", "value": {"Code": 1}}),
            "go{v} PIE"
        );
        let m = &misc[1]["args"];
        assert_eq!(
            m["f"], "main.double",
            "go{v} PIE: code addresses are unbiased: {m}"
        );
        let st = misc[1]["stack"].as_array().unwrap();
        assert_eq!(st[0]["function"], "main.misc");
        assert_eq!(st[1]["function"], "main.step", "go{v} PIE: {st:?}");
    }
}

/// Runs `store` built as `variant`, attaches by pid, and checks 3 hits.
fn put_on(v: &str, bin: &std::path::Path, what: &str) -> Vec<serde_json::Value> {
    let mut child = std::process::Command::new(bin)
        .args(["-interval", "5ms"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let run = probe(
        &[
            "attach",
            "--pid",
            &child.id().to_string(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--max-hits",
            "3",
        ],
        T,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(run.status.success(), "go{v} {what}: {}", run.stderr);
    for e in &run.events {
        let n: u64 = e["args"]["key"]
            .as_str()
            .unwrap()
            .trim_start_matches('k')
            .parse()
            .unwrap();
        assert_eq!(
            e["args"]["val"],
            json!([n % 256, (n + 1) % 256, (n + 2) % 256]),
            "go{v} {what}: {e}"
        );
        assert_eq!(e["args"]["s"]["name"], "main-store", "go{v} {what}");
    }
    run.events
}

#[test]
fn trimpath_and_cgo_binaries() {
    for v in go_versions() {
        let ev = put_on(&v, &testdata(&v, "store-trimpath"), "-trimpath");
        // Paths are module-relative; --line matches them by suffix.
        assert!(
            ev[0]["file"].as_str().unwrap().ends_with("store/main.go"),
            "{}",
            ev[0]
        );
        put_on(&v, &testdata(&v, "store-cgo"), "cgo");
        let out = std::process::Command::new("file")
            .arg(testdata(&v, "store-cgo"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if let Ok(o) = out {
            assert!(
                o.contains("dynamically linked") || o.is_empty(),
                "the cgo build links libc: {o}"
            );
        }
    }
}

#[test]
fn deleted_binary_and_other_mount_namespace() {
    let v = go_versions().pop().unwrap();
    // A binary deleted (or replaced by a deploy) while it runs.
    let dir = std::env::temp_dir().join(format!("probe-deleted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("store");
    std::fs::copy(testdata(&v, "store"), &copy).unwrap();
    let mut child = spawn_fresh(
        std::process::Command::new(&copy)
            .args(["-interval", "5ms"])
            .stdout(std::process::Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&copy).unwrap();
    let run = probe(
        &[
            "attach",
            "--pid",
            &child.id().to_string(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--max-hits",
            "2",
        ],
        T,
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(run.status.success(), "deleted binary: {}", run.stderr);
    assert_eq!(run.events.len(), 2);
    assert!(
        run.stderr.contains("(deleted)"),
        "the summary names the deleted file: {}",
        run.stderr
    );

    // A process whose binary lives in a mount only its own namespace sees.
    let script = format!(
        "mount -t tmpfs none {d} && cp {src} {d}/store && exec {d}/store -interval 5ms",
        d = dir.display(),
        src = testdata(&v, "store").display()
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !dir.join("store").exists(),
        "the binary is invisible from here"
    );
    let run = probe(
        &[
            "attach",
            "--pid",
            &child.id().to_string(),
            "--func",
            "main.(*Store).Put",
            "--format",
            "json",
            "--max-hits",
            "2",
        ],
        T,
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "other mount namespace: {}",
        run.stderr
    );
    assert_eq!(run.events.len(), 2);
}

/// `--binary PATH --follow` across a deploy: the file at PATH is replaced
/// (a new inode) and processes started from it afterwards are traced too.
#[test]
fn follow_reattaches_when_the_binary_is_replaced() {
    let v = go_versions().pop().unwrap();
    let copy = PrivateCopy::new(&v, "store", "replaced");
    let (dir, path) = (copy.dir.clone(), copy.bin.clone());
    let mut old = copy.start(&["-interval", "5ms"]);
    let p = path.to_str().unwrap().to_owned();
    let tracer = std::thread::spawn(move || {
        probe(
            &[
                "attach",
                "--binary",
                &p,
                "--func",
                "main.(*Store).Put",
                "--follow",
                "--format",
                "json",
                "--duration",
                "10s",
            ],
            T,
        )
    });
    std::thread::sleep(Duration::from_secs(4));
    // A deploy: write the new build beside it and rename over the path.
    let next = dir.join("store.new");
    std::fs::copy(testdata(&v, "store"), &next).unwrap();
    std::fs::rename(&next, &path).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut new = copy.start(&["-interval", "5ms"]);
    let run = tracer.join().unwrap();
    for c in [&mut old, &mut new] {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("was replaced; attaching to the new file"),
        "{}",
        run.stderr
    );
    let pids = run.pids();
    assert!(
        pids.contains(&(old.id() as u64)),
        "the old process before the deploy: {pids:?}\n{}",
        run.stderr
    );
    assert!(
        pids.contains(&(new.id() as u64)),
        "a process of the new file: {pids:?}\n{}",
        run.stderr
    );
}

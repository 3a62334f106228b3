#![allow(clippy::expect_used, clippy::unwrap_used)] // test code: a failed expectation is a failed test
//! The deployment files in `deploy/`: the systemd unit passes `systemd-analyze verify` and keeps
//! its hardening, the container image builds and its binaries run, the compose file is valid,
//! and `certs/dev-consortium.sh` with `TFX_HOSTS=names` lists the members at the host names the
//! compose services answer to. A check whose tool this machine lacks (systemd-analyze, a
//! container engine, docker compose) prints why it was skipped and passes; every command runs
//! under a time limit, in temporary directories that are removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The members of `certs/dev-consortium.sh`, in its order, with their default QUIC ports; the
/// services of `deploy/compose.yaml` bear the same names.
const MEMBERS: [(&str, u16); 4] = [
    ("science-dept", 7401),
    ("pbc-chengdu", 7402),
    ("bank-a", 7403),
    ("risk-warning", 7404),
];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Everything the command printed, stdout then stderr.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` with no input, killing it after `limit`. Its output goes through files, so a
/// chatty command cannot block on a full pipe. Err when it cannot start or runs out of time.
fn run(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .map_err(|e| format!("{cmd:?} did not start: {e}"))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} did not finish within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    })
}

/// Whether `program args` runs and exits 0 within 60 s.
fn succeeds(program: &str, args: &[&str]) -> bool {
    run(Command::new(program).args(args), Duration::from_secs(60)).is_ok_and(|o| o.status.success())
}

/// The `Key=value` lines of a unit file, in order (sections and comments left out).
fn directives(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

#[test]
fn the_systemd_unit_verifies() {
    let shipped = repo().join("deploy/systemd/tfx-node.service");
    let unit = std::fs::read_to_string(&shipped).unwrap();

    // The hardening is checked whether or not systemd is here.
    let d = directives(&unit);
    let has = |key: &str, value: &str| d.iter().any(|(k, v)| *k == key && *v == value);
    for (key, value) in [
        ("Type", "simple"),
        (
            "ExecStart",
            "/usr/local/bin/tfx-node --config /etc/tfx/node.toml",
        ),
        ("User", "tfx"),
        ("Group", "tfx"),
        ("StateDirectory", "tfx"),
        ("StateDirectoryMode", "0700"),
        ("ReadWritePaths", "/var/lib/tfx"),
        ("UMask", "0077"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert!(has(key, value), "{key}={value} missing from {shipped:?}");
    }
    for key in [
        "RestartSec",
        "StartLimitIntervalSec",
        "StartLimitBurst",
        "TimeoutStopSec",
        "LimitNOFILE",
    ] {
        assert!(d.iter().any(|(k, _)| *k == key), "{key}= missing");
    }
    // The state directory is the only place the service may write.
    for (k, v) in &d {
        if *k == "ReadWritePaths" {
            assert_eq!(
                *v, "/var/lib/tfx",
                "ReadWritePaths beyond the state directory"
            );
        }
    }

    if !succeeds("systemd-analyze", &["--version"]) {
        eprintln!("skipped: systemd-analyze is not on PATH; the unit's directives were checked, not verified");
        return;
    }
    // verify refuses a unit whose ExecStart binary is missing and tfx-node is not a binary of
    // this crate: any executable does, so the copy runs the tfx binary built for these tests.
    let tmp = tempfile::tempdir().unwrap();
    let exec = format!(
        "ExecStart={} --config /etc/tfx/node.toml",
        env!("CARGO_BIN_EXE_tfx")
    );
    let mut copy = String::new();
    for line in unit.lines() {
        copy.push_str(if line.starts_with("ExecStart=") {
            exec.as_str()
        } else {
            line
        });
        copy.push('\n');
    }
    let path = tmp.path().join("tfx-node.service");
    std::fs::write(&path, copy).unwrap();
    let out = run(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        Duration::from_secs(120),
    )
    .unwrap();
    // verify prints nothing about a clean unit, but it loads the units ours depends on and may
    // warn about the host's own; only lines naming our file count.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tfx-node.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {}: {}",
        path.display(),
        text(&out)
    );
}

#[test]
fn the_container_image_builds() {
    if !succeeds("docker", &["info"]) {
        eprintln!("skipped: no container engine (`docker info` failed), so deploy/container/Dockerfile was not built");
        return;
    }
    if !succeeds("docker", &["buildx", "version"]) {
        eprintln!("skipped: docker has no BuildKit (`docker buildx`), which the Dockerfile's cache mounts need");
        return;
    }
    let tag = format!("tfx-deploy-test:{}", std::process::id());
    let build = run(
        Command::new("docker")
            .args([
                "build",
                "-f",
                "deploy/container/Dockerfile",
                "-t",
                &tag,
                ".",
            ])
            .current_dir(repo())
            .env("DOCKER_BUILDKIT", "1"),
        Duration::from_secs(45 * 60),
    );
    // The binaries start in the runtime image (its libraries are the ones they link), as the
    // non-root user.
    let checks = build.as_ref().ok().filter(|o| o.status.success()).map(|_| {
        let node = run(
            Command::new("docker").args(["run", "--rm", &tag, "--version"]),
            Duration::from_secs(120),
        );
        let cli = run(
            Command::new("docker").args([
                "run",
                "--rm",
                "--entrypoint",
                "/usr/local/bin/tfx",
                &tag,
                "--version",
            ]),
            Duration::from_secs(120),
        );
        let user = run(
            Command::new("docker").args(["image", "inspect", "-f", "{{.Config.User}}", &tag]),
            Duration::from_secs(60),
        );
        (node, cli, user)
    });
    // Leave no image behind, whatever happened.
    let _ = run(
        Command::new("docker").args(["image", "rm", "-f", &tag]),
        Duration::from_secs(120),
    );
    let build = build.unwrap();
    assert!(build.status.success(), "docker build: {}", text(&build));
    let (node, cli, user) = checks.unwrap();
    for (what, o) in [("tfx-node --version", node), ("tfx --version", cli)] {
        let o = o.unwrap();
        assert!(o.status.success(), "{what} in the image: {}", text(&o));
    }
    let user = user.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        "65532:65532",
        "the image runs as the fixed non-root user"
    );
}

#[test]
fn the_compose_file_is_valid() {
    let file = repo().join("deploy/compose.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    // One service per member, named after it, with its member directory as the node's state.
    for (m, _) in MEMBERS {
        assert!(yaml.contains(&format!("\n  {m}:\n")), "no service {m}");
        assert!(
            yaml.contains(&format!("/{m}:/var/lib/tfx\n")),
            "service {m} does not mount its member directory"
        );
    }

    // Compose v2 (`docker compose`), else the standalone v1 `docker-compose` (Debian 12 ships
    // it); neither needs a running engine to check a file.
    let compose: &[&str] = if succeeds("docker", &["compose", "version"]) {
        &["docker", "compose"]
    } else if succeeds("docker-compose", &["version"]) {
        &["docker-compose"]
    } else {
        eprintln!("skipped: neither `docker compose` nor `docker-compose` is installed, so deploy/compose.yaml was not validated");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = |extra: &[&str]| {
        let mut cmd = Command::new(compose[0]);
        cmd.args(&compose[1..])
            .arg("-f")
            .arg(file.as_path())
            .arg("config")
            .args(extra)
            .current_dir(tmp.path())
            .env("TFX_DIR", tmp.path());
        run(&mut cmd, Duration::from_secs(120)).unwrap()
    };
    let out = config(&["-q"]);
    assert!(
        out.status.success(),
        "{compose:?} config -q: {}",
        text(&out)
    );
    let out = config(&["--services"]);
    assert!(
        out.status.success(),
        "{compose:?} config --services: {}",
        text(&out)
    );
    let mut services: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    let mut members: Vec<String> = MEMBERS.iter().map(|(m, _)| (*m).to_owned()).collect();
    members.sort();
    assert_eq!(services, members);
}

/// `TFX_HOSTS=names`: the roster lists each member at `<id>:<port>`, the name its compose
/// service answers to, and each node listens on every interface of its container.
#[test]
fn the_dev_consortium_names_its_hosts_for_compose() {
    let tmp = tempfile::tempdir().unwrap();
    let script = repo().join("certs/dev-consortium.sh");
    let script_run = |dir: &Path, hosts: &str| {
        run(
            Command::new("bash")
                .arg(script.as_path())
                .arg(dir)
                .env("TFX", env!("CARGO_BIN_EXE_tfx"))
                .env("TFX_HOSTS", hosts)
                .env_remove("TFX_BASE_PORT"),
            Duration::from_secs(300),
        )
        .unwrap()
    };

    let dir = tmp.path().join("c");
    let out = script_run(&dir, "names");
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for (m, port) in MEMBERS {
        assert!(
            shown.contains(&format!("{m}:{port}")),
            "{m}:{port} not in the roster: {shown}"
        );
        assert!(!shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
        let config = std::fs::read_to_string(dir.join(m).join("node.toml")).unwrap();
        assert!(
            config.contains(&format!("listen = \"0.0.0.0:{port}\"")),
            "{m}: {config}"
        );
    }

    // Anything but "names" is refused before anything is written.
    let bad = tmp.path().join("bad");
    let out = script_run(&bad, "dns");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("TFX_HOSTS"), "{}", text(&out));
    assert!(!bad.exists());
}

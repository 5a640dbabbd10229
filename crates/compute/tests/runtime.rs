//! The container runtime on the real kernel: published ports, quotas,
//! exec, logs, stop, delete and recovery, through the public API with the
//! `coop-shim-test` binary as the shim. See `common` for what the host needs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Lab, cgroup_dirs, eventually, free_port, log_of};
use coop_compute::network::NetworkError;
use coop_compute::runtime::{
    ContainerState, ExecOptions, ExitStatus, PortMapping, Protocol, RuntimeError,
};

fn http_get(port: u16) -> Option<String> {
    http_get_from("127.0.0.1", port)
}

fn http_get_from(host: &str, port: u16) -> Option<String> {
    let mut stream = TcpStream::connect((host, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn httpd_serves_a_published_port_and_delete_leaves_nothing() {
    let lab = Lab::new(1);
    let rt = lab.rt();
    let port = free_port();
    let mut spec = lab.spec("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    spec.ports = vec![PortMapping {
        host_port: port,
        container_port: 8080,
        protocol: Protocol::Tcp,
    }];
    let container = rt.run(spec).unwrap();
    assert!(container.state.is_running(), "{container:?}");

    let page = eventually(
        Duration::from_secs(10),
        "the page over the published port",
        || http_get(port).filter(|r| r.contains("hello from coop")),
    );
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    // The peer's own (non-loopback) address works too, as other machines would use it.
    let addresses = common::run("ip", &["-4", "-o", "addr", "show", "scope", "global"]);
    let peer_address = addresses
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .expect("the host has a global IPv4 address")
        .to_string();
    let page = http_get_from(&peer_address, port).unwrap_or_default();
    assert!(
        page.contains("hello from coop"),
        "via {peer_address}: {page}"
    );
    assert!(
        !lab.leftovers("web").is_empty(),
        "a running container holds mounts, a veth and nft entries (the leftover check sees them)"
    );

    // Quotas are written into the container's cgroups (v1 here, v2 elsewhere).
    let stats = rt.stats("web").unwrap();
    assert_eq!(stats.memory_limit_bytes, 256 << 20);
    assert!(stats.pids >= 1 && stats.cpu_usage_ns > 0, "{stats:?}");
    assert!(
        stats.net_rx_bytes > 0 && stats.net_tx_bytes > 0,
        "{stats:?}"
    );
    if let Some(cpu) = cgroup_dirs("coop_test1/web")
        .into_iter()
        .find(|d| d.join("cpu.cfs_quota_us").exists())
    {
        let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "25000", "tiny = 0.25 CPU of a 100 ms period");
    }

    let stopped = rt.stop("web", Duration::from_millis(500)).unwrap();
    assert!(
        matches!(stopped.state, ContainerState::Exited(_)),
        "{stopped:?}"
    );
    rt.delete("web", false).unwrap();
    rt.delete("web", false).unwrap(); // idempotent
    assert_eq!(lab.leftovers("web"), Vec::<String>::new());
    rt.teardown_host().unwrap();
    let table = common::run("nft", &["list", "tables"]);
    assert!(!table.contains("coop_test1"), "{table}");
    assert!(!std::path::Path::new("/sys/class/net/coopt1").exists());
}

#[test]
fn a_busy_host_port_is_refused() {
    let lab = Lab::new(2);
    let rt = lab.rt();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    let mut spec = lab.spec("busy", &["sleep", "300"]);
    spec.ports = vec![format!("{busy}:80").parse().unwrap()];
    let err = rt.create(spec).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Network(NetworkError::PortBusy { port, .. }) if port == busy),
        "{err}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
    assert!(rt.list().unwrap().is_empty(), "nothing half-created");

    let port = free_port();
    let mut first = lab.spec("first", &["sleep", "300"]);
    first.ports = vec![format!("{port}:80").parse().unwrap()];
    rt.create(first).unwrap();
    let mut second = lab.spec("second", &["sleep", "300"]);
    second.ports = vec![format!("{port}:81").parse().unwrap()];
    let err = rt.create(second).unwrap_err();
    assert!(err.to_string().contains("container `first`"), "{err}");
}

#[test]
fn a_container_that_cannot_start_says_why_and_holds_nothing() {
    let lab = Lab::new(12);
    let rt = lab.rt();
    let port = free_port();
    let mut spec = lab.spec("broken", &["/no/such/program"]);
    spec.ports = vec![format!("{port}:80").parse().unwrap()];
    let err = rt.run(spec).unwrap_err();
    assert!(matches!(err, RuntimeError::Shim { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("`broken`") && message.contains("/no/such/program"),
        "{message}"
    );
    // It stays created, with no network: the port and veth are released.
    assert_eq!(rt.get("broken").unwrap().state, ContainerState::Created);
    assert!(!std::path::Path::new("/run/netns/coopt12-broken").exists());
    std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port is free again");
    rt.delete("broken", false).unwrap();
    assert_eq!(lab.leftovers("broken"), Vec::<String>::new());

    // A damaged record is reported, and delete still cleans up by id.
    rt.create(lab.spec("damaged", &["true"])).unwrap();
    let dir = rt.get("damaged").unwrap().dir;
    std::fs::write(dir.join("config.json"), "{").unwrap();
    let err = rt.get("damaged").unwrap_err();
    assert!(matches!(err, RuntimeError::CorruptState { .. }), "{err}");
    rt.delete("damaged", false).unwrap();
    assert!(!dir.exists());
    assert_eq!(lab.leftovers("damaged"), Vec::<String>::new());
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    let lab = Lab::new(3);
    let rt = lab.rt();
    let mut spec = lab.spec(
        "hog",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero bs=1M count=300 | tail > /dev/null",
        ],
    );
    spec.resources.memory_bytes = 64 << 20;
    rt.run(spec).unwrap();
    let exit = eventually(Duration::from_secs(60), "the hog to end", || {
        match rt.get("hog").unwrap().state {
            ContainerState::Exited(exit) => Some(exit),
            _ => None,
        }
    });
    assert!(exit.oom_killed, "{exit:?}; log: {}", log_of(rt, "hog"));
    assert_ne!(exit.status, ExitStatus::Code(0), "{exit:?}");
    rt.delete("hog", false).unwrap();
    assert_eq!(lab.leftovers("hog"), Vec::<String>::new());
}

#[test]
fn a_pids_limit_stops_a_fork_loop() {
    let lab = Lab::new(4);
    let rt = lab.rt();
    let mut spec = lab.spec("forks", &["sleep", "300"]);
    spec.resources.pids = 16;
    rt.run(spec).unwrap();
    let script =
        "i=0; while [ $i -lt 60 ]; do sleep 300 >/dev/null 2>&1 & i=$((i+1)); done; echo loop-done";
    let out = rt
        .exec("forks", ExecOptions::command(&["sh", "-c", script]))
        .unwrap()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("can't fork"), "{stderr}");
    assert_ne!(out.status, ExitStatus::Code(0));
    let stats = rt.stats("forks").unwrap();
    assert!(stats.pids <= 16, "{stats:?}");
    assert!(
        stats.pids >= 10,
        "the loop did fork up to the limit: {stats:?}"
    );
    rt.delete("forks", true).unwrap();
    assert_eq!(lab.leftovers("forks"), Vec::<String>::new());
}

#[test]
fn a_disk_quota_stops_a_write_with_enospc() {
    let lab = Lab::new(5);
    let rt = lab.rt();
    let spec = lab.spec("disk", &["sleep", "300"]);
    rt.run(spec).unwrap();
    let out = rt
        .exec(
            "disk",
            ExecOptions::command(&["dd", "if=/dev/zero", "of=/big", "bs=1M", "count=200"]),
        )
        .unwrap()
        .output()
        .unwrap();
    assert_ne!(out.status, ExitStatus::Code(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let size = rt
        .exec("disk", ExecOptions::command(&["stat", "-c", "%s", "/big"]))
        .unwrap()
        .output()
        .unwrap();
    let bytes: u64 = String::from_utf8_lossy(&size.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(
        (40 << 20..=64 << 20).contains(&bytes),
        "wrote {bytes} bytes on a 64 MiB disk"
    );
    assert!(rt.stats("disk").unwrap().disk_used_bytes >= bytes);
    rt.delete("disk", true).unwrap();
    assert_eq!(lab.leftovers("disk"), Vec::<String>::new());
}

#[test]
fn exec_runs_commands_with_and_without_a_tty() {
    let lab = Lab::new(6);
    let rt = lab.rt();
    rt.run(lab.spec("box", &["sleep", "300"])).unwrap();

    let out = rt
        .exec(
            "box",
            ExecOptions::command(&["sh", "-c", "echo hello; hostname; exit 3"]),
        )
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nbox\n");

    // Root in the container is an unprivileged id on the host, in a user
    // namespace of its own that owns the container's network.
    let shift = rt.id_shift();
    assert_eq!(
        shift,
        coop_compute::runtime::userns::ID_BASE,
        "{:?}",
        rt.no_user_namespace()
    );
    let out = rt
        .exec(
            "box",
            ExecOptions::command(&[
                "sh",
                "-c",
                "id -u; cat /proc/self/uid_map; touch /made-by-root && ls -ln /made-by-root",
            ]),
        )
        .unwrap()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        &words[..4],
        &["0", "0", &shift.to_string(), "65536"],
        "{text}"
    );
    assert_eq!(words[6], "0", "the file belongs to root inside: {text}");
    let pid = match rt.get("box").unwrap().state {
        ContainerState::Running { pid, .. } => pid,
        other => panic!("box is not running: {other:?}"),
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&shift.to_string()), "{uid_line}");
    // The exec'd process keeps the container's capabilities and no more:
    // not the CAP_SYS_ADMIN (21) and CAP_SYS_PTRACE (19) it entered with.
    let out = rt
        .exec(
            "box",
            ExecOptions::command(&["grep", "-E", "^Cap(Eff|Bnd)", "/proc/self/status"]),
        )
        .unwrap()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for line in text.lines() {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(mask & (1 << 21 | 1 << 19), 0, "{line}");
        assert_eq!(mask & 1, 1, "CAP_CHOWN stays: {line}");
    }
    assert_eq!(text.lines().count(), 2, "{text}");

    let mut with_input = rt.exec("box", ExecOptions::command(&["cat"])).unwrap();
    with_input
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"piped")
        .unwrap();
    let out = with_input.output().unwrap();
    assert_eq!(out.stdout, b"piped");

    let err = rt
        .exec("box", ExecOptions::command(&["/no/such/program"]))
        .unwrap()
        .output();
    assert!(
        err.is_err() || err.as_ref().is_ok_and(|o| o.status != ExitStatus::Code(0)),
        "{err:?}"
    );

    let options = ExecOptions {
        tty: true,
        ..ExecOptions::command(&["sh"])
    };
    let mut shell = rt.exec("box", options).unwrap();
    shell.resize(40, 100).unwrap();
    let mut pty = shell.pty.take().unwrap();
    pty.write_all(b"tty; stty size; echo sum-$((20+22)); exit 7\n")
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // A pty reads EIO once the shell has exited and closed its side.
    while let Ok(n) = pty.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("/dev/pts/"), "{seen}");
    assert!(seen.contains("40 100"), "{seen}");
    assert!(seen.contains("sum-42"), "{seen}");
    assert_eq!(shell.wait().unwrap(), ExitStatus::Code(7));

    // A time limit: what ends in time is untouched, what overstays it is
    // killed, even while a child of it holds the output open.
    let (out, killed) = rt
        .exec("box", ExecOptions::command(&["sh", "-c", "echo quick"]))
        .unwrap()
        .output_within(Duration::from_secs(5))
        .unwrap();
    assert!(!killed);
    assert_eq!(out.stdout, b"quick\n");
    let began = std::time::Instant::now();
    let (out, killed) = rt
        .exec(
            "box",
            ExecOptions::command(&["sh", "-c", "echo slow; sleep 30; echo never"]),
        )
        .unwrap()
        .output_within(Duration::from_millis(500))
        .unwrap();
    assert!(killed);
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert_eq!(out.stdout, b"slow\n");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    rt.delete("box", true).unwrap();
    assert_eq!(lab.leftovers("box"), Vec::<String>::new());
}

#[test]
fn logs_follow_until_the_container_exits() {
    let lab = Lab::new(7);
    let rt = lab.rt();
    let spec = lab.spec(
        "talk",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done; echo oops >&2",
        ],
    );
    rt.run(spec).unwrap();
    let mut follow = rt.logs("talk", true).unwrap();
    let mut text = String::new();
    follow.read_to_string(&mut text).unwrap();
    assert_eq!(text, "line1\nline2\nline3\nline4\nline5\noops\n");
    let state = rt.get("talk").unwrap().state;
    assert!(
        matches!(state, ContainerState::Exited(e) if e.status == ExitStatus::Code(0) && !e.oom_killed),
        "{state:?}"
    );
    rt.delete("talk", false).unwrap();
}

#[test]
fn stop_escalates_to_sigkill_after_the_grace() {
    let lab = Lab::new(8);
    let rt = lab.rt();
    // As pid 1 without a handler, sleep ignores SIGTERM: only SIGKILL ends it.
    rt.run(lab.spec("stubborn", &["sleep", "300"])).unwrap();
    let stopped = rt.stop("stubborn", Duration::from_millis(300)).unwrap();
    assert!(
        matches!(stopped.state, ContainerState::Exited(e) if e.status == ExitStatus::Signal(9)),
        "{stopped:?}"
    );
    // A stopped container starts again on the same disk.
    let again = rt.start("stubborn").unwrap();
    assert!(again.state.is_running());
    assert!(matches!(
        rt.kill("stubborn", 0),
        Err(RuntimeError::BadSignal(0))
    ));
    rt.kill("stubborn", 9).unwrap();
    eventually(Duration::from_secs(10), "the kill to land", || {
        (!rt.get("stubborn").unwrap().state.is_running()).then_some(())
    });
    assert!(matches!(
        rt.exec("stubborn", ExecOptions::command(&["true"])),
        Err(RuntimeError::NotRunning(_))
    ));
    rt.delete("stubborn", false).unwrap();
    assert_eq!(lab.leftovers("stubborn"), Vec::<String>::new());
}

#[test]
fn recover_finds_running_containers_after_a_restart() {
    let mut lab = Lab::new(9);
    let port = free_port();
    let mut spec = lab.spec("survivor", &["httpd", "-f", "-v", "-p", "80", "-h", "/www"]);
    spec.ports = vec![format!("{port}:80").parse().unwrap()];
    let before = lab.rt().run(spec).unwrap();
    let ContainerState::Running { pid, .. } = before.state else {
        panic!("{before:?}");
    };
    lab.restart_runtime();
    let found = lab.rt().recover().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].state, before.state, "same process, still running");
    eventually(Duration::from_secs(10), "the page after recovery", || {
        http_get(port).filter(|r| r.contains("hello from coop"))
    });
    // Its log is still there to read (httpd -v logs the request).
    assert!(!log_of(lab.rt(), "survivor").is_empty());

    // The shim dies, then the container: nobody recorded how it ended.
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(before.dir.join("run.json")).unwrap()).unwrap();
    let shim_pid = run["shim"]["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill(2) on pids this test started.
    unsafe {
        libc::kill(shim_pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    lab.restart_runtime();
    let state = eventually(Duration::from_secs(10), "the unwatched exit", || {
        let c = lab.rt().recover().unwrap().remove(0);
        (!c.state.is_running()).then_some(c.state)
    });
    assert!(
        matches!(state, ContainerState::Exited(e) if e.status == ExitStatus::Unknown),
        "{state:?}"
    );
    lab.rt().delete("survivor", false).unwrap();
    assert_eq!(lab.leftovers("survivor"), Vec::<String>::new());
}

#[test]
fn a_container_that_exits_at_once_records_its_status() {
    let lab = Lab::new(13);
    let rt = lab.rt();
    for round in 0..20 {
        let id = format!("quick{round}");
        rt.run(lab.spec(&id, &["sh", "-c", "echo done"])).unwrap();
        let state = eventually_state(rt, &id);
        match state {
            ContainerState::Exited(exit) => {
                assert_eq!(exit.status, ExitStatus::Code(0), "round {round}")
            }
            other => panic!("{id} did not exit: {other:?}"),
        }
        rt.delete(&id, true).unwrap();
    }
}

/// The state of `id` once it is no longer running (at most 10 s).
fn eventually_state(rt: &coop_compute::runtime::Runtime, id: &str) -> ContainerState {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = rt.get(id).unwrap().state;
        if !state.is_running() || std::time::Instant::now() > until {
            return state;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The runc fallback behind the same API: run, publish, exec, stop, delete.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Lab, eventually, log_of};
use coop_compute::runtime::{Backend, ContainerState, ExecOptions, ExitStatus};

#[test]
fn runc_runs_execs_and_cleans_up() {
    assert!(
        std::path::Path::new("/usr/sbin/runc").exists(),
        "this test needs runc: apt-get install runc"
    );
    let lab = Lab::with_backend(
        10,
        Backend::Runc {
            binary: PathBuf::from("/usr/sbin/runc"),
        },
    );
    let rt = lab.rt();
    let mut spec = lab.spec("viarunc", &["sh", "-c", "echo started; exec sleep 300"]);
    spec.resources.memory_bytes = 64 << 20;
    rt.run(spec).unwrap();
    eventually(Duration::from_secs(10), "the first log line", || {
        log_of(rt, "viarunc").contains("started").then_some(())
    });
    let out = rt
        .exec(
            "viarunc",
            ExecOptions::command(&["sh", "-c", "echo hi; exit 4"]),
        )
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(
        (out.status, out.stdout.as_slice()),
        (ExitStatus::Code(4), &b"hi\n"[..])
    );
    assert_eq!(rt.stats("viarunc").unwrap().memory_limit_bytes, 64 << 20);
    let stopped = rt.stop("viarunc", Duration::from_millis(300)).unwrap();
    assert!(
        matches!(stopped.state, ContainerState::Exited(_)),
        "{stopped:?}"
    );
    rt.delete("viarunc", false).unwrap();
    assert_eq!(lab.leftovers("viarunc"), Vec::<String>::new());
}

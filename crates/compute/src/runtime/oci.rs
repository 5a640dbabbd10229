//! The OCI runtime spec (`bundle/config.json`) and exec process specs the
//! shim hands to libcontainer or runc.
//!
//! Namespaces: mount, pid, uts, ipc, network (the one the runtime
//! prepared) and, where the host supports it, user (see `userns`).
//! `CAP_MKNOD` is not granted: without libcontainer's eBPF device filter
//! (the `cgroupsv2_devices` feature, which needs libbpf) a v2 host would
//! otherwise let a container create device nodes for the host's disks.

use serde_json::{Value, json};

use crate::runtime::state::{ContainerDir, ContainerRecord};

/// CFS period: 100 ms, the kernel's default; quotas are a share of it.
const CPU_PERIOD_US: u64 = 100_000;
/// The default `PATH` of a container that sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set, less `CAP_MKNOD` (see the module docs).
pub(crate) const CAPABILITIES: [&str; 13] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The environment of the container's processes: the spec's, plus `PATH`
/// and `HOSTNAME` when it does not set them.
fn environment(record: &ContainerRecord, extra: &[(String, String)], tty: bool) -> Vec<String> {
    let mut env: Vec<(String, String)> = record.spec.env.clone();
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), v.clone()));
    }
    let mut defaults = vec![
        ("PATH", DEFAULT_PATH.to_string()),
        ("HOSTNAME", record.spec.effective_hostname().to_string()),
    ];
    if tty {
        defaults.push(("TERM", "xterm".to_string()));
    }
    for (k, v) in defaults {
        if !env.iter().any(|(name, _)| name == k) {
            env.push((k.to_string(), v));
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// An OCI `process` object. No rlimits: the process inherits the agent's,
/// since raising a hard limit needs CAP_SYS_RESOURCE, which hosts (and
/// sandboxes like the development machines) may withhold even from root.
pub(crate) fn process(
    record: &ContainerRecord,
    argv: &[String],
    extra_env: &[(String, String)],
    cwd: Option<&str>,
    tty: bool,
) -> Value {
    json!({
        "terminal": tty,
        "user": { "uid": record.uid, "gid": record.gid },
        "args": argv,
        "env": environment(record, extra_env, tty),
        "cwd": cwd.or(record.spec.workdir.as_deref()).unwrap_or("/"),
        "capabilities": {
            "bounding": CAPABILITIES,
            "effective": CAPABILITIES,
            "permitted": CAPABILITIES,
        },
        "noNewPrivileges": true,
    })
}

/// The bundle's `config.json` for a container whose rootfs is mounted at `dir/rootfs`.
pub(crate) fn bundle_spec(
    record: &ContainerRecord,
    dir: &ContainerDir,
    swap_accounted: bool,
) -> Value {
    let r = &record.spec.resources;
    let quota = u64::from(r.cpus_milli) * CPU_PERIOD_US / 1000;
    let mut memory = json!({ "limit": r.memory_bytes });
    if swap_accounted {
        // Memory plus swap equal to memory: no swap beyond the limit.
        memory["swap"] = json!(r.memory_bytes);
    }
    let bind = |file: &str| {
        json!({
            "destination": format!("/etc/{file}"),
            "type": "bind",
            "source": dir.etc_file(file),
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        })
    };
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process(record, &record.spec.argv, &[], None, false),
        "root": { "path": dir.path().join("rootfs"), "readonly": false },
        "hostname": record.spec.effective_hostname(),
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            bind("resolv.conf"),
            bind("hosts"),
        ],
        "linux": {
            "cgroupsPath": record.cgroup_path,
            "resources": {
                "devices": [{ "allow": false, "access": "rwm" }],
                "memory": memory,
                "cpu": { "quota": quota, "period": CPU_PERIOD_US },
                "pids": { "limit": r.pids },
            },
            "namespaces": [
                { "type": "pid" },
                { "type": "network", "path": record.network.netns_path() },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    });
    if record.id_shift != 0 {
        with_user_namespace(&mut spec, record);
    }
    spec
}

/// Has the container join the user namespace the runtime made with its
/// network namespace (ids 0..65536 are host ids `shift..`; see `userns`).
/// The mappings are that namespace's; runc wants them spelled out.
fn with_user_namespace(spec: &mut Value, record: &ContainerRecord) {
    let mapping = json!([{
        "containerID": 0,
        "hostID": record.id_shift,
        "size": crate::runtime::userns::ID_COUNT,
    }]);
    spec["linux"]["uidMappings"] = mapping.clone();
    spec["linux"]["gidMappings"] = mapping;
    if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
        namespaces.insert(
            0,
            json!({ "type": "user", "path": record.network.userns_path() }),
        );
    }
}

/// `/etc/hosts` for the container: localhost and its own name and address.
pub(crate) fn hosts_file(record: &ContainerRecord) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
        record.network.address,
        record.spec.effective_hostname()
    )
}

/// `/etc/resolv.conf` for the container. On a private network, the
/// network's resolver on its gateway `names` (it answers the network's
/// names and passes others to the host's resolvers), with the host's
/// `options`; otherwise the host's, without loopback resolvers (they would
/// point into the container's own namespace).
pub(crate) fn resolv_conf(host: &str, names: Option<std::net::Ipv4Addr>) -> String {
    if let Some(gateway) = names {
        // The host's search domains are left out: a short name is the
        // network's, and a search domain would send it upstream first.
        let options: Vec<&str> = host
            .lines()
            .filter(|line| line.split_whitespace().next() == Some("options"))
            .collect();
        let mut text = format!("nameserver {gateway}\n");
        for line in options {
            text.push_str(line);
            text.push('\n');
        }
        return text;
    }
    let kept: Vec<&str> = host
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
        })
        .collect();
    let mut text = kept.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{ContainerNetwork, NetworkConfig};
    use crate::runtime::config::Backend;
    use crate::runtime::spec::ContainerSpec;
    use crate::runtime::userns;

    fn record() -> ContainerRecord {
        let mut spec = ContainerSpec::new("web", "/lower", &["/bin/httpd", "-f"]);
        spec.env = vec![("A".into(), "1".into())];
        ContainerRecord {
            network: ContainerNetwork::allocate(
                &NetworkConfig::default(),
                &crate::runtime::ContainerSpec::new("web", "/rootfs", &["sh"]),
                &[],
            )
            .unwrap(),
            spec,
            backend: Backend::Libcontainer,
            cgroup_path: "/coop/web".into(),
            uid: 0,
            gid: 0,
            created_at: 0,
            id_shift: 0,
        }
    }

    #[test]
    fn spec_carries_limits_namespaces_and_command() {
        let dir = ContainerDir::new("/state/containers/web");
        let spec = bundle_spec(&record(), &dir, true);
        let linux = &spec["linux"];
        assert_eq!(linux["cgroupsPath"], "/coop/web");
        assert_eq!(linux["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(linux["resources"]["memory"]["limit"], 512u64 << 20);
        assert_eq!(linux["resources"]["memory"]["swap"], 512u64 << 20);
        assert_eq!(linux["resources"]["pids"]["limit"], 1024);
        assert_eq!(linux["namespaces"][1]["path"], "/run/netns/coop-web");
        assert_eq!(spec["process"]["args"][0], "/bin/httpd");
        let env = spec["process"]["env"].as_array().unwrap();
        assert!(env.contains(&json!("A=1")));
        assert!(env.iter().any(|e| e.as_str().unwrap().starts_with("PATH=")));
        assert_eq!(spec["root"]["path"], "/state/containers/web/rootfs");
        assert!(
            bundle_spec(&record(), &dir, false)["linux"]["resources"]["memory"]
                .get("swap")
                .is_none()
        );
    }

    #[test]
    fn a_shifted_record_joins_its_user_namespace() {
        let dir = ContainerDir::new("/state/containers/web");
        let mut shifted = record();
        shifted.id_shift = userns::ID_BASE;
        let spec = bundle_spec(&shifted, &dir, true);
        let linux = &spec["linux"];
        assert_eq!(linux["namespaces"][0]["type"], "user");
        assert_eq!(linux["namespaces"][0]["path"], "/run/coop-userns/coop-web");
        assert_eq!(linux["namespaces"][2]["path"], "/run/netns/coop-web");
        assert_eq!(linux["uidMappings"][0]["hostID"], userns::ID_BASE);
        let text = serde_json::to_string(&spec).unwrap();
        let _: libcontainer::oci_spec::runtime::Spec = serde_json::from_str(&text).unwrap();
        // Without a shift, none of that.
        let plain = bundle_spec(&record(), &dir, true);
        assert!(plain["linux"].get("uidMappings").is_none());
        assert_eq!(plain["linux"]["namespaces"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn spec_parses_as_oci() {
        let dir = ContainerDir::new("/state/containers/web");
        let text = serde_json::to_string(&bundle_spec(&record(), &dir, true)).unwrap();
        let spec: libcontainer::oci_spec::runtime::Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("web"));
    }

    #[test]
    fn resolvers_are_the_hosts_or_the_networks() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(host, None),
            "nameserver 10.0.0.1\nsearch lan\noptions edns0\n"
        );
        let gateway = std::net::Ipv4Addr::new(10, 210, 4, 1);
        assert_eq!(
            resolv_conf(host, Some(gateway)),
            "nameserver 10.210.4.1\noptions edns0\n",
            "on a private network, the network's resolver"
        );
    }
}

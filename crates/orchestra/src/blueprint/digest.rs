//! A service's digest: a BLAKE3 hash over a canonical encoding of its
//! spec, so an updater can tell which services of an environment changed.
//!
//! The encoding is written out here rather than borrowed from a serde
//! format: it cannot fail, it does not move when a format crate changes,
//! and each struct is taken apart field by field with no `..`, so adding a
//! field to a spec does not compile until the field is hashed too. Maps are
//! `BTreeMap`s, so the order keys were written in the blueprint never
//! matters; lists keep their order, which is part of their meaning.

use std::collections::BTreeMap;
use std::time::Duration;

use super::spec::{
    Comparison, Constraint, Dependency, DependencyCondition, HealthCheck, HealthTest, Placement,
    PortSpec, Protocol, ResourceLimits, RestartPolicy, ServiceSpec, SetupStep, Spread, TemplateRef,
};

/// Separates these hashes from every other BLAKE3 use in coop; the version
/// changes if the encoding ever does.
const DIGEST_CONTEXT: &str = "coop blueprint service spec v1";

impl ServiceSpec {
    /// The digest of this spec: equal for equal specs, different when any
    /// field differs.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(DIGEST_CONTEXT);
        self.feed(&mut hasher);
        *hasher.finalize().as_bytes()
    }
}

/// A value that writes itself into a hash unambiguously: lengths before
/// contents, a tag before each enum variant.
trait Canonical {
    fn feed(&self, hasher: &mut blake3::Hasher);
}

impl Canonical for u8 {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&[*self]);
    }
}

impl Canonical for bool {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        u8::from(*self).feed(hasher);
    }
}

impl Canonical for u16 {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.to_le_bytes());
    }
}

impl Canonical for u32 {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.to_le_bytes());
    }
}

impl Canonical for u64 {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        hasher.update(&self.to_le_bytes());
    }
}

impl Canonical for usize {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        (*self as u64).feed(hasher);
    }
}

impl Canonical for String {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        self.len().feed(hasher);
        hasher.update(self.as_bytes());
    }
}

impl Canonical for Duration {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        self.as_secs().feed(hasher);
        self.subsec_nanos().feed(hasher);
    }
}

impl<T: Canonical> Canonical for Option<T> {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            None => 0u8.feed(hasher),
            Some(value) => {
                1u8.feed(hasher);
                value.feed(hasher);
            }
        }
    }
}

impl<T: Canonical> Canonical for Vec<T> {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        self.len().feed(hasher);
        for item in self {
            item.feed(hasher);
        }
    }
}

impl<K: Canonical, V: Canonical> Canonical for BTreeMap<K, V> {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        self.len().feed(hasher);
        for (key, value) in self {
            key.feed(hasher);
            value.feed(hasher);
        }
    }
}

impl Canonical for ServiceSpec {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let ServiceSpec {
            image,
            command,
            entrypoint,
            environment,
            ports,
            restart,
            healthcheck,
            depends_on,
            replicas,
            size,
            limits,
            placement,
            setup,
        } = self;
        image.feed(hasher);
        command.feed(hasher);
        entrypoint.feed(hasher);
        environment.feed(hasher);
        ports.feed(hasher);
        restart.feed(hasher);
        healthcheck.feed(hasher);
        depends_on.feed(hasher);
        replicas.feed(hasher);
        size.feed(hasher);
        limits.feed(hasher);
        placement.feed(hasher);
        setup.feed(hasher);
    }
}

impl Canonical for TemplateRef {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let TemplateRef { name, version } = self;
        name.feed(hasher);
        version.feed(hasher);
    }
}

impl Canonical for PortSpec {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let PortSpec {
            host,
            container,
            protocol,
        } = self;
        host.feed(hasher);
        container.feed(hasher);
        protocol.feed(hasher);
    }
}

impl Canonical for Protocol {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let tag: u8 = match self {
            Protocol::Tcp => 0,
            Protocol::Udp => 1,
        };
        tag.feed(hasher);
    }
}

impl Canonical for RestartPolicy {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            RestartPolicy::No => 0u8.feed(hasher),
            RestartPolicy::Always => 1u8.feed(hasher),
            RestartPolicy::OnFailure { max_retries } => {
                2u8.feed(hasher);
                max_retries.feed(hasher);
            }
            RestartPolicy::UnlessStopped => 3u8.feed(hasher),
        }
    }
}

impl Canonical for HealthCheck {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let HealthCheck {
            test,
            interval,
            timeout,
            retries,
            start_period,
        } = self;
        test.feed(hasher);
        interval.feed(hasher);
        timeout.feed(hasher);
        retries.feed(hasher);
        start_period.feed(hasher);
    }
}

impl Canonical for HealthTest {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            HealthTest::Command(argv) => {
                0u8.feed(hasher);
                argv.feed(hasher);
            }
            HealthTest::Shell(script) => {
                1u8.feed(hasher);
                script.feed(hasher);
            }
        }
    }
}

impl Canonical for Dependency {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let Dependency {
            condition,
            required,
            restart,
        } = self;
        let tag: u8 = match condition {
            DependencyCondition::ServiceStarted => 0,
            DependencyCondition::ServiceHealthy => 1,
            DependencyCondition::ServiceCompletedSuccessfully => 2,
        };
        tag.feed(hasher);
        required.feed(hasher);
        restart.feed(hasher);
    }
}

impl Canonical for ResourceLimits {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let ResourceLimits {
            cpus_milli,
            memory_bytes,
            pids,
        } = self;
        cpus_milli.feed(hasher);
        memory_bytes.feed(hasher);
        pids.feed(hasher);
    }
}

impl Canonical for Placement {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let Placement {
            constraints,
            spread,
            near,
            binpack,
        } = self;
        constraints.feed(hasher);
        spread.feed(hasher);
        near.feed(hasher);
        binpack.feed(hasher);
    }
}

impl Canonical for Comparison {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        let tag: u8 = match self {
            Comparison::Equal => 0,
            Comparison::NotEqual => 1,
        };
        tag.feed(hasher);
    }
}

impl Canonical for Constraint {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            Constraint::Label {
                key,
                comparison,
                value,
            } => {
                0u8.feed(hasher);
                key.feed(hasher);
                comparison.feed(hasher);
                value.feed(hasher);
            }
            Constraint::Hostname { comparison, value } => {
                1u8.feed(hasher);
                comparison.feed(hasher);
                value.feed(hasher);
            }
            Constraint::Zone(zone) => {
                2u8.feed(hasher);
                zone.feed(hasher);
            }
            Constraint::Peer(peer) => {
                3u8.feed(hasher);
                peer.feed(hasher);
            }
        }
    }
}

impl Canonical for Spread {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            Spread::Zone => 0u8.feed(hasher),
            Spread::Peer => 1u8.feed(hasher),
            Spread::Label(key) => {
                2u8.feed(hasher);
                key.feed(hasher);
            }
        }
    }
}

impl Canonical for SetupStep {
    fn feed(&self, hasher: &mut blake3::Hasher) {
        match self {
            SetupStep::Run {
                argv,
                retries,
                interval,
            } => {
                0u8.feed(hasher);
                argv.feed(hasher);
                retries.feed(hasher);
                interval.feed(hasher);
            }
            SetupStep::File {
                path,
                content,
                mode,
            } => {
                1u8.feed(hasher);
                path.feed(hasher);
                content.feed(hasher);
                mode.feed(hasher);
            }
        }
    }
}

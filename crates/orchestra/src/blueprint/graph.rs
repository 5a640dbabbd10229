//! Checks that need every service at once: each dependency names a service
//! of the blueprint, a dependency waited on for health has a health check,
//! and no service waits, however indirectly, on itself.

use std::collections::{BTreeMap, BTreeSet};

use super::error::Report;
use super::read::child;
use super::service::ServiceRead;
use super::spec::DependencyCondition;

/// Checks the dependencies between `services`, the services that read
/// without a problem; `names` holds every service of the blueprint, and
/// `path` is where the services are.
pub(crate) fn check_dependencies(
    services: &BTreeMap<String, ServiceRead>,
    names: &BTreeSet<String>,
    path: &str,
    report: &mut Report,
) {
    for (name, service) in services {
        for (dependency, wanted) in &service.spec.depends_on {
            let line = service
                .dependency_lines
                .get(dependency)
                .copied()
                .unwrap_or_default();
            let dependency_path = child(&child(&child(path, name), "depends_on"), dependency);
            match services.get(dependency) {
                None if names.contains(dependency) => {}
                None => report.error(
                    &dependency_path,
                    line,
                    format!("there is no service {dependency} in this blueprint"),
                ),
                Some(target)
                    if wanted.condition == DependencyCondition::ServiceHealthy
                        && target.spec.healthcheck.is_none() =>
                {
                    report.error(
                        &dependency_path,
                        line,
                        format!("{dependency} has no health check, so it can never be healthy; give it a `healthcheck` or wait for service_started"),
                    )
                }
                Some(_) => {}
            }
        }
    }
    for cycle in find_cycles(services) {
        let first = &cycle[0];
        let line = services
            .get(first)
            .and_then(|service| service.dependency_lines.get(&cycle[1]))
            .copied()
            .unwrap_or_default();
        report.error(
            &child(&child(path, first), "depends_on"),
            line,
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// Cycles of the dependency graph found by a depth-first walk: at least
/// one through every group of services that wait on each other, each once,
/// as the names along it with the first repeated at the end (`a -> b ->
/// a`), starting from the smallest name. The walk keeps its own stack, so a
/// long chain of services cannot exhaust the call stack.
fn find_cycles(services: &BTreeMap<String, ServiceRead>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = services
        .keys()
        .map(|name| (name.as_str(), Mark::Unseen))
        .collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in services.keys() {
        if marks.get(start.as_str()) != Some(&Mark::Unseen) {
            continue;
        }
        // The path from `start`, each with the dependencies still to visit.
        let mut path: Vec<(&str, Vec<&str>)> =
            vec![(start.as_str(), dependencies_of(services, start))];
        marks.insert(start.as_str(), Mark::OnPath);
        while let Some((_, pending)) = path.last_mut() {
            let Some(next) = pending.pop() else {
                if let Some((done, _)) = path.pop() {
                    marks.insert(done, Mark::Done);
                }
                continue;
            };
            match marks.get(next) {
                Some(Mark::Unseen) => {
                    marks.insert(next, Mark::OnPath);
                    path.push((next, dependencies_of(services, next)));
                }
                Some(Mark::OnPath) => {
                    let from = path
                        .iter()
                        .position(|(name, _)| *name == next)
                        .unwrap_or_default();
                    let names: Vec<String> = path[from..]
                        .iter()
                        .map(|(name, _)| name.to_string())
                        .collect();
                    found.insert(rotate_to_smallest(names));
                }
                // Done, or not a service (reported on its own).
                _ => {}
            }
        }
    }
    found
        .into_iter()
        .map(|mut cycle| {
            if let Some(first) = cycle.first().cloned() {
                cycle.push(first);
            }
            cycle
        })
        .collect()
}

fn dependencies_of<'s>(services: &'s BTreeMap<String, ServiceRead>, name: &str) -> Vec<&'s str> {
    services
        .get(name)
        .map(|service| {
            service
                .spec
                .depends_on
                .keys()
                .rev()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default()
}

/// The same cycle found from another member reads the same.
fn rotate_to_smallest(mut names: Vec<String>) -> Vec<String> {
    if let Some(smallest) = names
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.cmp(b.1))
        .map(|(index, _)| index)
    {
        names.rotate_left(smallest);
    }
    names
}

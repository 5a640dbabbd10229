//! `ports:` in Compose's short (`"8080:80/udp"`) and long
//! (`{target, published, protocol}`) syntax.
//!
//! Coop publishes a port only on a port of the peer that was named: a
//! container port alone (`"80"`), which Compose would bind to a random host
//! port, is refused rather than guessed, because a port nobody chose cannot
//! be found by anyone either. Host addresses (`127.0.0.1:80:80`) and ranges
//! (`8000-8010:8000-8010`) are refused with what to write instead.

use std::collections::BTreeMap;

use super::error::Report;
use super::read::{child, field, item, known_keys, mapping, scalar_text, sequence, text};
use super::spec::{PortSpec, Protocol};
use super::yaml::{Node, Value};

const LONG_SYNTAX_KEYS: &[&str] = &["target", "published", "protocol", "mode"];

/// Reads a service's `ports` list; a host port and protocol used twice is
/// reported at the second use.
pub(crate) fn read_ports(node: &Node, path: &str, report: &mut Report) -> Vec<PortSpec> {
    let Some(items) = sequence(node, path, report) else {
        return Vec::new();
    };
    let mut ports = Vec::new();
    // Where each host port and protocol was first published.
    let mut published: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
    for (index, entry) in items.iter().enumerate() {
        let entry_path = item(path, index);
        let port = match &entry.value {
            Value::Mapping(_) => read_long(entry, &entry_path, report),
            _ => text(entry, &entry_path, report).and_then(|raw| match parse_short(raw) {
                Ok(port) => Some(port),
                Err(message) => {
                    report.error(&entry_path, entry.line, message);
                    None
                }
            }),
        };
        let Some(port) = port else { continue };
        if let Some(first) = published.get(&(port.host, port.protocol)) {
            let message = format!(
                "host port {}/{} is already published at {first}",
                port.host, port.protocol
            );
            report.error(&entry_path, entry.line, message);
            continue;
        }
        published.insert((port.host, port.protocol), entry_path);
        ports.push(port);
    }
    ports
}

/// `HOST:CONTAINER[/PROTOCOL]`.
pub(crate) fn parse_short(raw: &str) -> Result<PortSpec, String> {
    let (mapping, protocol) = match raw.split_once('/') {
        Some((mapping, protocol)) => (mapping, parse_protocol(protocol)?),
        None => (raw, Protocol::Tcp),
    };
    let parts: Vec<&str> = mapping.split(':').collect();
    if mapping.contains('-') {
        return Err(format!(
            "`{raw}` is a port range; coop publishes single ports, so list each one"
        ));
    }
    match parts.as_slice() {
        [container] => Err(parse_port(container).err().unwrap_or_else(|| format!(
            "`{raw}` names only the container port; coop publishes on a port of the peer you choose: write `{container}:{container}` to use the same one"
        ))),
        [host, container] => Ok(PortSpec {
            host: parse_port(host)?,
            container: parse_port(container)?,
            protocol,
        }),
        _ => Err(format!(
            "`{raw}` names a host address; coop publishes on every address of the peer, so write only `HOST_PORT:CONTAINER_PORT`"
        )),
    }
}

fn read_long(node: &Node, path: &str, report: &mut Report) -> Option<PortSpec> {
    let entries = mapping(node, path, report)?;
    known_keys(entries, LONG_SYNTAX_KEYS, false, path, report);
    let mark = report.mark();
    let mut port_of = |key: &str| -> Option<u16> {
        let Some(entry) = field(entries, key) else {
            report.error(
                path,
                node.line,
                format!("`{key}` is required: coop publishes a chosen port of the peer"),
            );
            return None;
        };
        let raw = text(&entry.value, &child(path, key), report)?;
        parse_port(raw)
            .map_err(|message| report.error(&child(path, key), entry.value.line, message))
            .ok()
    };
    let container = port_of("target");
    let host = port_of("published");
    let protocol = match field(entries, "protocol") {
        Some(entry) => text(&entry.value, &child(path, "protocol"), report).and_then(|raw| {
            parse_protocol(raw)
                .map_err(|message| {
                    report.error(&child(path, "protocol"), entry.value.line, message)
                })
                .ok()
        }),
        None => Some(Protocol::Tcp),
    };
    if let Some(entry) = field(entries, "mode")
        && scalar_text(&entry.value) != Some("host")
    {
        report.error(
            &child(path, "mode"),
            entry.value.line,
            "coop publishes on the peer that runs the container: only `mode: host` applies",
        );
    }
    if report.failed_since(mark) {
        return None;
    }
    Some(PortSpec {
        host: host?,
        container: container?,
        protocol: protocol?,
    })
}

fn parse_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("`{raw}` is not a port number from 1 to 65535"))
}

fn parse_protocol(raw: &str) -> Result<Protocol, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!("`{raw}` is not a protocol: use tcp or udp")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_syntax() {
        assert_eq!(
            parse_short("8080:80").unwrap(),
            PortSpec {
                host: 8080,
                container: 80,
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(parse_short("53:53/udp").unwrap().protocol, Protocol::Udp);
        assert_eq!(parse_short("53:53/TCP").unwrap().protocol, Protocol::Tcp);
        let refused = [
            ("80", "only the container port"),
            ("127.0.0.1:80:80", "host address"),
            ("8000-8001:80-81", "range"),
            ("0:80", "not a port"),
            ("70000:80", "not a port"),
            ("x:80", "not a port"),
            ("80:80/sctp", "not a protocol"),
            ("", "not a port"),
        ];
        for (raw, expected) in refused {
            let error = parse_short(raw).unwrap_err();
            assert!(error.contains(expected), "{raw}: {error}");
        }
        assert!(parse_short("80").unwrap_err().contains("`80:80`"));
    }
}

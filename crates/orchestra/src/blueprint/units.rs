//! The units a blueprint writes values in: durations, file modes, DNS
//! names and service names.
//!
//! CPU amounts, memory and process limits are not here: they are parsed by
//! `coop_compute`'s size module, the one place `--cpus` and `--memory` are
//! parsed too, so a blueprint and the command line agree.

use std::time::Duration;

/// The units Compose accepts in a duration, longest name first so `ms` is
/// not read as `m`.
const DURATION_UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
];

/// Parses a Compose duration: numbers with units, run together (`30s`,
/// `1m30s`, `1.5s`, `500ms`, `2h`); `0` alone needs no unit. The units are
/// `ns`, `us`, `ms`, `s`, `m` and `h`, as in Go's `time.ParseDuration`,
/// which Compose uses.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration: write a number and a unit (us, ms, s, m, h), such as `30s` or `1m30s`"
        )
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    if trimmed.is_empty() {
        return Err(bad());
    }
    let mut rest = trimmed;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, after) = rest.split_at(number_len);
        let (unit, nanos_per_unit) = DURATION_UNITS
            .iter()
            .find(|(unit, _)| after.starts_with(unit))
            .ok_or_else(bad)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 9 {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction_nanos = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| bad())?;
            digits * nanos_per_unit / 10u128.pow(fraction.len() as u32)
        };
        total_nanos = whole
            .checked_mul(*nanos_per_unit)
            .and_then(|nanos| nanos.checked_add(fraction_nanos))
            .and_then(|nanos| nanos.checked_add(total_nanos))
            .ok_or_else(bad)?;
        rest = &after[unit.len()..];
    }
    let seconds = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| bad())?;
    // The remainder of a division by 10^9 always fits.
    let nanos = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(seconds, nanos))
}

/// Parses a file mode in octal, as `chmod` takes it: `0644`, `644`,
/// `0o755`. Bits past `07777` are refused.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0o").unwrap_or(trimmed);
    let mode = (!digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|mode| *mode <= 0o7777);
    mode.ok_or_else(|| format!("`{text}` is not a file mode: write it in octal, such as `0644`"))
}

/// Whether `name` is a DNS name: dot-separated labels of letters, digits
/// and inner `-`, each 1-63 long, 253 in all.
pub(crate) fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Whether `label` is one DNS label (1-63 letters, digits and inner `-`).
pub(crate) fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// Whether `name` may name a service: a lowercase DNS label, since a
/// service is reached by its name inside an environment.
pub(crate) fn is_service_name(name: &str) -> bool {
    is_dns_label(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// Whether `name` may name a blueprint (Compose's project name rule):
/// lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub(crate) fn is_project_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h5m").unwrap(), Duration::from_secs(3900));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration(" 2s ").unwrap(), Duration::from_secs(2));
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1.2.3s",
            "-1s",
            "1 s",
            ".s",
            "5d",
            "1s2",
            "99999999999999999999999999999h",
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("not a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        assert_eq!(parse_mode("4755").unwrap(), 0o4755);
        for bad in ["", "rw", "0988", "77777", "0o", "-644"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(is_dns_name("app.example.com"));
        assert!(is_dns_name("localhost"));
        assert!(is_dns_name("xn--bcher-kva.example"));
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a.com.",
            "ex ample.com",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        assert!(is_service_name("web-1"));
        assert!(!is_service_name("Web"));
        assert!(!is_service_name("web_1"));
        assert!(is_project_name("shop_prod-2"));
        assert!(!is_project_name("-shop"));
        assert!(!is_project_name("Shop"));
    }
}

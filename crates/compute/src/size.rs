//! Container sizes: the five named presets and explicit overrides.
//!
//! A size is a shorthand for the resources a container may use (CPU,
//! memory, disk, processes). Users pick one by name (`--size small`) and may
//! override single limits (`--cpus 0.5 --memory 1GiB --disk 20G`). This
//! module parses and applies those; it does not enforce them (that is the
//! runtime's job with cgroups and quotas).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use coop_types::Limits;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Below this a container cannot start a shell and a libc without being
/// OOM-killed, so a smaller memory override is a typo, not a wish.
const MIN_MEMORY_BYTES: u64 = 16 * MIB;
/// A rootfs overlay smaller than this cannot hold even a busybox image plus
/// its logs.
const MIN_DISK_BYTES: u64 = 64 * MIB;
/// No peer coop targets has more than this many cores; a larger value is a
/// typo (e.g. `2000` meant as millicores).
const MAX_CPUS_MILLI: u32 = 1024 * 1000;
/// Below this a container cannot run an init and one worker process.
const MIN_PIDS: u32 = 8;

/// A named preset of container resources.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// 0.25 CPU, 256 MiB memory, 4 GiB disk.
    Tiny,
    /// 0.5 CPU, 512 MiB memory, 10 GiB disk. The default.
    #[default]
    Small,
    /// 1 CPU, 1 GiB memory, 20 GiB disk.
    Medium,
    /// 2 CPUs, 2 GiB memory, 40 GiB disk.
    Large,
    /// 4 CPUs, 4 GiB memory, 100 GiB disk.
    Huge,
}

/// A size name, limit or override that could not be parsed or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size: use one of tiny, small, medium, large, huge")]
    UnknownSize(String),
    #[error(
        "`{0}` is not a CPU amount: write cores as a number with at most 3 decimals (`0.5`, `2`) or millicores (`500m`)"
    )]
    BadCpus(String),
    #[error("`{0}` CPUs is out of range: use more than 0 and at most 1024")]
    CpusOutOfRange(String),
    #[error(
        "`{0}` is not an amount of bytes: write a number with an optional unit K, M, G or T (`512M`, `1GiB`, `1.5G`); units are powers of 1024"
    )]
    BadBytes(String),
    #[error("{what} `{input}` is too small: use at least {min}")]
    TooSmall {
        what: &'static str,
        input: String,
        min: &'static str,
    },
    #[error("`{0}` is not a process limit: use a whole number of at least {MIN_PIDS}")]
    BadPids(String),
}

impl Size {
    /// Every size, smallest first.
    pub const ALL: [Size; 5] = [
        Size::Tiny,
        Size::Small,
        Size::Medium,
        Size::Large,
        Size::Huge,
    ];

    /// The resources this size stands for.
    ///
    /// The process limit is 2 per MiB of memory (512 for tiny up to 8192 for
    /// huge). Every task costs at least a kernel stack and a few pages of user
    /// stack, so a workload that stays inside its memory limit never reaches
    /// this; a fork bomb does, long before it exhausts the peer's `pid_max`
    /// and starves every other container on it.
    pub fn limits(self) -> Limits {
        let (cpus_milli, memory_bytes, disk_bytes) = match self {
            Size::Tiny => (250, 256 * MIB, 4 * GIB),
            Size::Small => (500, 512 * MIB, 10 * GIB),
            Size::Medium => (1000, GIB, 20 * GIB),
            Size::Large => (2000, 2 * GIB, 40 * GIB),
            Size::Huge => (4000, 4 * GIB, 100 * GIB),
        };
        let pids = u32::try_from(memory_bytes / MIB * 2).unwrap_or(u32::MAX);
        Limits {
            cpus_milli,
            memory_bytes,
            disk_bytes,
            pids,
        }
    }

    /// The lowercase name, as written in `template.toml` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
            Size::Huge => "huge",
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Size::ALL
            .into_iter()
            .find(|size| size.name() == wanted)
            .ok_or_else(|| SizeError::UnknownSize(s.to_string()))
    }
}

/// Explicit limits that replace those of a size; `None` keeps the size's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Replaces [`Limits::cpus_milli`].
    pub cpus_milli: Option<u32>,
    /// Replaces [`Limits::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// Replaces [`Limits::disk_bytes`].
    pub disk_bytes: Option<u64>,
    /// Replaces [`Limits::pids`].
    pub pids: Option<u32>,
}

impl Overrides {
    /// Parses overrides as typed by a user (`--cpus 0.5 --memory 1GiB --disk 20G`).
    pub fn parse(
        cpus: Option<&str>,
        memory: Option<&str>,
        disk: Option<&str>,
    ) -> Result<Self, SizeError> {
        Ok(Overrides {
            cpus_milli: cpus.map(parse_cpus).transpose()?,
            memory_bytes: memory.map(parse_memory).transpose()?,
            disk_bytes: disk.map(parse_disk).transpose()?,
            pids: None,
        })
    }

    /// Parses and sets a process limit override.
    pub fn with_pids(mut self, pids: &str) -> Result<Self, SizeError> {
        let value = pids
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n >= MIN_PIDS)
            .ok_or_else(|| SizeError::BadPids(pids.to_string()))?;
        self.pids = Some(value);
        Ok(self)
    }
}

impl Overrides {
    /// `limits` with these overrides applied.
    pub fn apply(&self, limits: Limits) -> Limits {
        Limits {
            cpus_milli: self.cpus_milli.unwrap_or(limits.cpus_milli),
            memory_bytes: self.memory_bytes.unwrap_or(limits.memory_bytes),
            disk_bytes: self.disk_bytes.unwrap_or(limits.disk_bytes),
            pids: self.pids.unwrap_or(limits.pids),
        }
    }
}

/// Parses a CPU amount: cores with at most 3 decimals (`0.5`, `2`, `1.25`)
/// or millicores (`500m`). Returns thousandths of a core.
pub fn parse_cpus(input: &str) -> Result<u32, SizeError> {
    let bad = || SizeError::BadCpus(input.to_string());
    let text = input.trim();
    let milli: u64 = if let Some(digits) = text.strip_suffix('m') {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map_err(|_| bad())?
    } else {
        let (whole, fraction) = split_decimal(text).ok_or_else(bad)?;
        if fraction.len() > 3 {
            return Err(bad());
        }
        let fraction_milli = format!("{fraction:0<3}")
            .parse::<u64>()
            .map_err(|_| bad())?;
        whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(fraction_milli))
            .ok_or_else(bad)?
    };
    if milli == 0 || milli > u64::from(MAX_CPUS_MILLI) {
        return Err(SizeError::CpusOutOfRange(input.to_string()));
    }
    u32::try_from(milli).map_err(|_| SizeError::CpusOutOfRange(input.to_string()))
}

/// Parses an amount of bytes: a number (decimals allowed with a unit) and an
/// optional unit `K`, `M`, `G`, `T`, each optionally followed by `i` and/or
/// `B` (`512M`, `256MiB`, `1GB`, `1.5G`). Units are powers of 1024, as in
/// `docker run -m`. A bare number is bytes.
pub fn parse_bytes(input: &str) -> Result<u64, SizeError> {
    let bad = || SizeError::BadBytes(input.to_string());
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => KIB,
        "m" | "mb" | "mi" | "mib" => MIB,
        "g" | "gb" | "gi" | "gib" => GIB,
        "t" | "tb" | "ti" | "tib" => TIB,
        _ => return Err(bad()),
    };
    let (whole, fraction) = split_decimal(number).ok_or_else(bad)?;
    if multiplier == 1 && !fraction.is_empty() {
        return Err(bad());
    }
    // Exact integer arithmetic: whole * unit + fraction * unit / 10^digits,
    // rounded down to a byte.
    if fraction.len() > 9 {
        return Err(bad());
    }
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    let total = u128::from(whole) * u128::from(multiplier)
        + fraction_value * u128::from(multiplier) / scale;
    u64::try_from(total).map_err(|_| bad())
}

/// Parses a memory limit ([`parse_bytes`]) and checks it is large enough to run anything.
pub fn parse_memory(input: &str) -> Result<u64, SizeError> {
    let bytes = parse_bytes(input)?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(SizeError::TooSmall {
            what: "memory",
            input: input.to_string(),
            min: "16MiB",
        });
    }
    Ok(bytes)
}

/// Parses a disk size ([`parse_bytes`]) and checks it can hold a small image.
pub fn parse_disk(input: &str) -> Result<u64, SizeError> {
    let bytes = parse_bytes(input)?;
    if bytes < MIN_DISK_BYTES {
        return Err(SizeError::TooSmall {
            what: "disk",
            input: input.to_string(),
            min: "64MiB",
        });
    }
    Ok(bytes)
}

/// Splits `12.34` into `(12, "34")`; `None` unless it is digits with at most
/// one dot and at least one digit before it.
fn split_decimal(text: &str) -> Option<(u64, &str)> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return None;
    }
    Some((whole.parse().ok()?, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_issue() {
        let r = Size::Tiny.limits();
        assert_eq!(
            (r.cpus_milli, r.memory_bytes, r.disk_bytes),
            (250, 256 * MIB, 4 * GIB)
        );
        let r = Size::Small.limits();
        assert_eq!(
            (r.cpus_milli, r.memory_bytes, r.disk_bytes),
            (500, 512 * MIB, 10 * GIB)
        );
        let r = Size::Medium.limits();
        assert_eq!(
            (r.cpus_milli, r.memory_bytes, r.disk_bytes),
            (1000, GIB, 20 * GIB)
        );
        let r = Size::Large.limits();
        assert_eq!(
            (r.cpus_milli, r.memory_bytes, r.disk_bytes),
            (2000, 2 * GIB, 40 * GIB)
        );
        let r = Size::Huge.limits();
        assert_eq!(
            (r.cpus_milli, r.memory_bytes, r.disk_bytes),
            (4000, 4 * GIB, 100 * GIB)
        );
        let pids: Vec<u32> = Size::ALL.iter().map(|s| s.limits().pids).collect();
        assert_eq!(pids, [512, 1024, 2048, 4096, 8192]);
        assert_eq!(Size::default(), Size::Small);
    }

    #[test]
    fn names_parse_and_display() {
        for size in Size::ALL {
            assert_eq!(size.to_string().parse::<Size>().unwrap(), size);
        }
        assert_eq!(" Medium ".parse::<Size>().unwrap(), Size::Medium);
        let err = "giant".parse::<Size>().unwrap_err();
        assert!(err.to_string().contains("`giant`"), "{err}");
        assert!(err.to_string().contains("tiny, small"), "{err}");
    }

    #[test]
    fn cpus_parse() {
        assert_eq!(parse_cpus("0.5").unwrap(), 500);
        assert_eq!(parse_cpus("2").unwrap(), 2000);
        assert_eq!(parse_cpus("1.25").unwrap(), 1250);
        assert_eq!(parse_cpus("0.001").unwrap(), 1);
        assert_eq!(parse_cpus("250m").unwrap(), 250);
        for bad in ["", "x", "0.0005", "1.", ".5", "-1", "1.5.2", "m", "1e3"] {
            assert!(
                matches!(parse_cpus(bad), Err(SizeError::BadCpus(_))),
                "{bad}"
            );
        }
        for out in ["0", "0.000", "0m", "2000"] {
            assert!(
                matches!(parse_cpus(out), Err(SizeError::CpusOutOfRange(_))),
                "{out}"
            );
        }
    }

    #[test]
    fn bytes_parse() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 * MIB);
        assert_eq!(parse_bytes("1GiB").unwrap(), GIB);
        assert_eq!(parse_bytes("256MiB").unwrap(), 256 * MIB);
        assert_eq!(parse_bytes("10G").unwrap(), 10 * GIB);
        assert_eq!(parse_bytes("10gb").unwrap(), 10 * GIB);
        assert_eq!(parse_bytes("1.5G").unwrap(), GIB + GIB / 2);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("2T").unwrap(), 2 * TIB);
        for bad in [
            "",
            "G",
            "1.5",
            "12X",
            "1..2G",
            "-1G",
            "1 G B",
            "99999999999999T",
        ] {
            assert!(
                matches!(parse_bytes(bad), Err(SizeError::BadBytes(_))),
                "{bad}"
            );
        }
        let err = parse_bytes("12X").unwrap_err().to_string();
        assert!(err.contains("`12X`") && err.contains("1024"), "{err}");
    }

    #[test]
    fn overrides_replace_only_what_is_given() {
        let base = Size::Small.limits();
        let o = Overrides::parse(Some("2"), None, Some("20G")).unwrap();
        let r = o.apply(base);
        assert_eq!(r.cpus_milli, 2000);
        assert_eq!(r.memory_bytes, base.memory_bytes);
        assert_eq!(r.disk_bytes, 20 * GIB);
        assert_eq!(r.pids, base.pids);
        let o = Overrides::default().with_pids("100").unwrap();
        assert_eq!(o.apply(base).pids, 100);

        assert!(matches!(
            Overrides::parse(None, Some("1M"), None),
            Err(SizeError::TooSmall { what: "memory", .. })
        ));
        assert!(matches!(
            Overrides::parse(None, None, Some("1M")),
            Err(SizeError::TooSmall { what: "disk", .. })
        ));
        assert!(matches!(
            Overrides::default().with_pids("3"),
            Err(SizeError::BadPids(_))
        ));
    }
}

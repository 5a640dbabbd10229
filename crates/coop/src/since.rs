//! `--since` of the log commands: a duration back from now or an RFC 3339
//! time, turned into unix seconds here so every peer is asked the same
//! moment whatever its clock.

/// `--since TEXT` as unix seconds: `90s`, `30m`, `1h`, `2d` (that long
/// ago; a bare number is seconds) or an RFC 3339 time such as
/// `2025-05-01T10:00:00Z`, `2025-05-01 12:00:00+02:00` or `2025-05-01`
/// (midnight UTC).
pub(crate) fn parse_since(text: &str) -> Result<u64, String> {
    since_at(text, coop_types::unix_now())
}

fn since_at(text: &str, now: u64) -> Result<u64, String> {
    let text = text.trim();
    if text.contains('-') {
        return rfc3339_secs(text);
    }
    let ago = crate::parse_duration_secs(text)
        .map_err(|err| format!("{err}, or give a time such as 2025-05-01T10:00:00Z"))?;
    Ok(now.saturating_sub(ago))
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian
/// calendar (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * i64::from((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of the proleptic Gregorian calendar `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = if days >= 0 { days } else { days - 146_096 } / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix seconds as an RFC 3339 time in UTC, e.g. `2026-12-03T21:16:39Z`.
pub(crate) fn rfc3339(secs: u64) -> String {
    let secs = secs as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD`, optionally followed by `THH:MM[:SS[.fraction]]` (or a
/// space for the `T`) and `Z` or `±HH:MM`; without a zone the time is UTC.
fn rfc3339_secs(text: &str) -> Result<u64, String> {
    let bad =
        || format!("`{text}` is not a time like 2025-05-01T10:00:00Z (or a duration like 30m)");
    let number = |s: &str| -> Result<u32, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut parts = date.splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (year, month, day) = (i64::from(number(year)?), number(month)?, number(day)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad());
    }
    let (clock, zone_secs) = if time.is_empty() {
        ("00:00:00", 0i64)
    } else if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':').ok_or_else(bad)?;
        let (hours, minutes) = (number(hours)?, number(minutes)?);
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        (clock, sign * i64::from(hours * 3600 + minutes * 60))
    } else {
        (time, 0)
    };
    let clock = clock.split_once('.').map_or(clock, |(whole, _)| whole);
    let mut fields = clock.split(':');
    let hours = number(fields.next().unwrap_or_default())?;
    let minutes = number(fields.next().ok_or_else(bad)?)?;
    let seconds = fields.next().map(number).transpose()?.unwrap_or(0);
    if fields.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(hours * 3600 + minutes * 60 + seconds)
        - zone_secs;
    u64::try_from(secs).map_err(|_| format!("`{text}` is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(since_at("90s", 1000), Ok(910));
        assert_eq!(since_at("2m", 1000), Ok(880));
        assert_eq!(since_at("45", 1000), Ok(955));
        assert_eq!(since_at("2d", 1000), Ok(0));
        assert!(since_at("5 parsecs", 1000).is_err());
    }

    #[test]
    fn times_are_read_as_rfc3339() {
        assert_eq!(since_at("1970-01-01T00:00:00Z", 5), Ok(0));
        assert_eq!(since_at("2025-05-01T10:00:00Z", 5), Ok(1_746_093_600));
        assert_eq!(since_at("2025-05-01 12:00:00+02:00", 5), Ok(1_746_093_600));
        assert_eq!(
            since_at("2025-05-01T09:30:00.250-00:30", 5),
            Ok(1_746_093_600)
        );
        assert_eq!(since_at("2025-05-01T10:00Z", 5), Ok(1_746_093_600));
        assert_eq!(since_at("2025-05-01", 5), Ok(1_746_057_600));
        assert_eq!(since_at("2024-02-29T00:00:00Z", 5), Ok(1_709_164_800));
    }

    #[test]
    fn times_are_written_as_rfc3339_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for secs in [0, 59, 951_868_799, 1_796_332_599, 4_107_542_400] {
            assert_eq!(rfc3339_secs(&rfc3339(secs)), Ok(secs), "{secs}");
        }
    }

    #[test]
    fn impossible_times_are_refused() {
        for text in [
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-05-01T24:00:00Z",
            "2025-05-01T10:00:00+25:00",
            "2025-05-01Tnoon",
            "1969-12-31T23:59:59Z",
            "2025-5",
        ] {
            assert!(since_at(text, 5).is_err(), "{text} was accepted");
        }
    }
}

//! Durations and byte sizes as people write them in config files.

use std::time::Duration;

/// What a duration looks like, for error messages.
pub const DURATION_EXAMPLE: &str = r#"a duration such as "90s" or "5m""#;
/// What a size looks like, for error messages.
pub const SIZE_EXAMPLE: &str = r#"a size such as "512m", "1.5g" or a number of bytes"#;

/// Parses a human duration (`90s`, `5m`, `1h 30m`, `250ms`) with humantime.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("expected {DURATION_EXAMPLE}, found {text:?}"))
}

/// Parses a byte size: a number (decimals allowed) and an optional binary unit
/// `k`, `m`, `g` or `t` (also `kb`/`kib`, any case; k = 1024), e.g. `512m`, `1.5g`, `64k`.
/// A bare number is bytes. Fractions of a byte are dropped.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("expected {SIZE_EXAMPLE}, found {text:?}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier = unit_multiplier(unit.trim_start()).ok_or_else(bad)?;
    scale(number, multiplier).ok_or_else(bad)
}

/// Writes `bytes` as a size `parse_size` reads back: the largest unit it is a whole
/// multiple of (`512m`, `1g`), else bytes, quoted as in a config file.
pub fn format_size(bytes: u64) -> String {
    let units = [(4, 't'), (3, 'g'), (2, 'm'), (1, 'k')];
    for (power, unit) in units {
        let size = 1u64 << (10 * power);
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("\"{}{unit}\"", bytes / size);
        }
    }
    bytes.to_string()
}

/// Bytes per unit; binary because that is what Docker and the kernel mean by `m` and `g`.
fn unit_multiplier(unit: &str) -> Option<u64> {
    let power = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return None,
    };
    Some(1u64 << (10 * power))
}

/// `number` × `multiplier`, exact for the integer part so large sizes do not lose bytes.
fn scale(number: &str, multiplier: u64) -> Option<u64> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return None;
    }
    let whole = whole.parse::<u64>().ok()?.checked_mul(multiplier)?;
    let part = match fraction {
        "" => 0,
        f => (format!("0.{f}").parse::<f64>().ok()? * multiplier as f64) as u64,
    };
    whole.checked_add(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        let err = parse_duration("5 minutes please").unwrap_err();
        assert_eq!(
            err,
            r#"expected a duration such as "90s" or "5m", found "5 minutes please""#
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("90").is_err(), "a unit is required");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512 MB"), Ok(512 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("0.5k"), Ok(512));
        for bad in [
            "",
            "m",
            "1.g",
            ".5g",
            "1.5.1g",
            "12x",
            "-1m",
            "1e3",
            "99999999999999t",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.starts_with("expected a size such as"), "{bad}: {err}");
        }
    }
}

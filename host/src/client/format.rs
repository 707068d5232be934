//! Terminal formatting shaped like Nomad's CLI: columns glued by two spaces (columnize),
//! `key = value` blocks, IEC sizes (go-humanize's `IBytes`), relative times, short IDs.

use chrono::{DateTime, Utc};

/// Rows of columns, left-aligned, two spaces apart, no trailing blanks.
pub fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.iter().map(Vec::len).max().unwrap_or(0))
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `key = value` lines with the `=` aligned.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<width$} = {v}\n")).collect()
}

/// go-humanize's `IBytes`: `25 B`, `4.0 KiB`, `12 MiB`.
pub fn ibytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = (size.ilog2() / 10) as i32; // ⌊log₁₀₂₄ size⌋, exactly
    let value = ((size as f64) / 1024f64.powi(exponent) * 10.0 + 0.5).floor() / 10.0;
    let unit = UNITS[exponent as usize];
    if value < 10.0 { format!("{value:.1} {unit}") } else { format!("{value:.0} {unit}") }
}

/// The first 8 characters of an ID unless `verbose`.
pub fn short_id(id: &str, verbose: bool) -> String {
    if verbose { id.to_string() } else { id.chars().take(8).collect() }
}

/// A Unix-ns time as `12m3s ago`; `-` when unknown (0).
pub fn ago(unix_ns: i64, now: DateTime<Utc>) -> String {
    if unix_ns <= 0 {
        return "-".to_string();
    }
    let seconds = (now.timestamp_nanos_opt().unwrap_or(0) - unix_ns).max(0) / 1_000_000_000;
    let (d, h, m, s) = (seconds / 86400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s ago"),
        (0, 0, _) => format!("{m}m{s}s ago"),
        (0, _, _) => format!("{h}h{m}m ago"),
        _ => format!("{d}d{h}h ago"),
    }
}

/// An RFC 3339 time as Nomad's CLI prints file times (`01/02/06 15:04:05 UTC`), in UTC.
pub fn file_time(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&Utc).format("%m/%d/%y %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_nomads_cli() {
        assert_eq!(ibytes(0), "0 B");
        assert_eq!(ibytes(25), "25 B");
        assert_eq!(ibytes(4096), "4.0 KiB");
        assert_eq!(ibytes(12 * 1024 * 1024), "12 MiB");
        let table = columns(&[vec!["Mode".into(), "Name".into()], vec!["-rw-r--r--".into(), "a".into()]]);
        assert_eq!(table, "Mode        Name\n-rw-r--r--  a\n");
        assert_eq!(key_values(&[("ID", "x".into()), ("Node ID", "y".into())]), "ID      = x\nNode ID = y\n");
        let now = DateTime::from_timestamp(1000, 0).unwrap();
        assert_eq!(ago(1_000_000_000 * 1000 - 61_000_000_000, now), "1m1s ago");
        assert_eq!(file_time("2016-03-15T15:40:00.414236712Z"), "03/15/16 15:40:00 UTC");
    }
}

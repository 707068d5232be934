//! Hand-written parsers for the few pseudo-file formats the plugin reads: a single number
//! (`memory.usage_in_bytes`), flat `key value` lines (`memory.stat`, `cpu.stat`,
//! `cpuacct.stat`), pid lists (`cgroup.procs`) and `/proc/<pid>/{stat,statm}`.
//!
//! They work on bytes, allocate nothing, and never panic: anything unexpected is `None`
//! (or a `false` "garbled" flag) and the caller reports zeros.

/// Parses ASCII digits into a `u64`; `None` when empty, non-digit or overflowing.
pub fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// A file holding one number, such as `memory.current` (surrounding whitespace allowed).
pub fn single(bytes: &[u8]) -> Option<u64> {
    digits(bytes.trim_ascii())
}

/// Values of `keys` in a flat `key value` file. Keys that are absent read as 0; `None` when a
/// wanted key has a non-numeric value or when no line at all has the `key number` shape.
pub fn keyed<const N: usize>(bytes: &[u8], keys: [&[u8]; N]) -> Option<[u64; N]> {
    let mut values = [0u64; N];
    let mut any = false;
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.trim_ascii_end();
        if line.is_empty() {
            continue;
        }
        let Some(space) = line.iter().position(|&b| b == b' ') else { continue };
        let (key, value) = (&line[..space], line[space + 1..].trim_ascii_start());
        let parsed = digits(value);
        any |= parsed.is_some();
        if let Some(slot) = keys.iter().position(|k| *k == key) {
            values[slot] = parsed?;
        }
    }
    any.then_some(values)
}

/// Appends the pids of a `cgroup.procs` file to `out`; returns `false` when some line was not
/// a pid (those lines are skipped).
pub fn pids(bytes: &[u8], out: &mut Vec<u32>) -> bool {
    let mut clean = true;
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match digits(line).and_then(|pid| u32::try_from(pid).ok()) {
            Some(pid) => out.push(pid),
            None => clean = false,
        }
    }
    clean
}

/// CPU ticks of one process from `/proc/<pid>/stat`: `(utime, stime, delayacct_blkio_ticks)`,
/// fields 14, 15 and 42. The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from the last `)`. A kernel too old to have field 42 reports 0 for it.
pub fn proc_stat(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    // After ")": field 3 (state) is index 0, so field n is index n - 3.
    let mut fields = bytes[close + 1..].split(|&b| b == b' ' || b == b'\n').filter(|f| !f.is_empty());
    let utime = digits(fields.nth(14 - 3)?)?;
    let stime = digits(fields.next()?)?;
    let blkio = match fields.nth(42 - 16) {
        Some(field) => digits(field)?,
        None => 0,
    };
    Some((utime, stime, blkio))
}

/// Resident pages (field 2) of `/proc/<pid>/statm`.
pub fn statm_resident(bytes: &[u8]) -> Option<u64> {
    let mut fields = bytes.split(|&b| b == b' ' || b == b'\n').filter(|f| !f.is_empty());
    fields.next()?;
    digits(fields.next()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_numbers() {
        assert_eq!(single(b"123\n"), Some(123));
        assert_eq!(single(b"  7 "), Some(7));
        assert_eq!(single(b"18446744073709551615\n"), Some(u64::MAX));
        assert_eq!(single(b"18446744073709551616\n"), None);
        assert_eq!(single(b"max\n"), None);
        assert_eq!(single(b""), None);
        assert_eq!(single(b"-1"), None);
    }

    #[test]
    fn keyed_values() {
        let text = b"cache 10\nrss 20\nrss_huge 0\nmapped_file 5\ntotal_rss 99\n";
        assert_eq!(keyed(text, [b"rss".as_slice(), b"cache", b"anon"]), Some([20, 10, 0]));
        // A wanted key with a garbled value spoils the file; an unwanted one does not.
        assert_eq!(keyed(b"rss x\ncache 1\n", [b"rss".as_slice()]), None);
        assert_eq!(keyed(b"odd x\ncache 1\n", [b"cache".as_slice()]), Some([1]));
        // Nothing shaped like `key number`: garbled.
        assert_eq!(keyed(b"hello world\n", [b"rss".as_slice()]), None);
        assert_eq!(keyed(b"", [b"rss".as_slice()]), None);
        assert_eq!(keyed(b"\xff\xfe", [b"rss".as_slice()]), None);
        // No trailing newline, CRLF-ish whitespace.
        assert_eq!(keyed(b"user 3\r\nsystem 4", [b"user".as_slice(), b"system"]), Some([3, 4]));
    }

    #[test]
    fn pid_lists() {
        let mut out = Vec::new();
        assert!(pids(b"1\n22\n333\n", &mut out));
        assert_eq!(out, [1, 22, 333]);
        out.clear();
        assert!(!pids(b"1\nnope\n\n4294967296\n5", &mut out));
        assert_eq!(out, [1, 5]);
        out.clear();
        assert!(pids(b"", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn proc_stat_fields() {
        // A command name with spaces and a parenthesis; utime=1234 stime=56 blkio=78.
        let mut line = String::from("4242 (we ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 1 0 5 ");
        // fields 16..=22 above end with starttime 5; fill 23..=41 with their own numbers, then 42.
        for i in 23..=41 {
            line.push_str(&format!("{i} "));
        }
        line.push_str("78 0 0 0 0 0 0 0 0 0 0\n");
        assert_eq!(proc_stat(line.as_bytes()), Some((1234, 56, 78)));
        // Truncated after stime: blkio reads 0.
        assert_eq!(proc_stat(b"1 (sh) S 1 1 1 0 -1 0 0 0 0 0 9 8\n"), Some((9, 8, 0)));
        assert_eq!(proc_stat(b"1 (sh) S 1 1 1"), None);
        assert_eq!(proc_stat(b"garbage"), None);
        assert_eq!(proc_stat(b""), None);
    }

    #[test]
    fn statm() {
        assert_eq!(statm_resident(b"1000 250 100 10 0 300 0\n"), Some(250));
        assert_eq!(statm_resident(b"1000\n"), None);
        assert_eq!(statm_resident(b""), None);
    }
}

//! Disk usage like gopsutil `disk.Partitions(false)` + `disk.Usage` (statvfs).

use std::path::Path;

use allocd_plugin_sdk::DiskStats;
use nix::sys::statvfs::statvfs;

/// statvfs of `path` with Nomad's formulas; `None` when statvfs fails.
pub fn usage(path: &Path, device: &str, mountpoint: &str) -> Option<DiskStats> {
    let st = statvfs(path).ok()?;
    let bsize = st.fragment_size() as u64;
    let size = st.blocks() as u64 * bsize;
    let available = st.blocks_available() as u64 * bsize;
    let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * bsize;
    let used_percent = zero_nan(used as f64 / (used + available) as f64 * 100.0);
    let files = st.files() as f64;
    let inodes_used_percent = zero_nan((files - st.files_free() as f64) / files * 100.0);
    Some(DiskStats {
        device: device.into(),
        mountpoint: mountpoint.into(),
        size,
        used,
        available,
        used_percent,
        inodes_used_percent,
    })
}

fn zero_nan(v: f64) -> f64 {
    if v.is_nan() { 0.0 } else { v }
}

/// Usage of every physical mount (fstype in /proc/filesystems without `nodev`, or zfs).
pub fn partitions() -> Vec<DiskStats> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let physical: Vec<&str> =
        filesystems.lines().filter(|line| !line.starts_with("nodev")).map(str::trim).chain(["zfs"]).collect();
    let mountinfo = std::fs::read_to_string("/proc/1/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))
        .unwrap_or_default();
    mounts(&mountinfo)
        .into_iter()
        .filter(|m| m.device != "none" && physical.contains(&m.fstype.as_str()))
        .filter_map(|m| usage(Path::new(&m.mountpoint), &m.device, &m.mountpoint))
        .collect()
}

#[derive(Debug, PartialEq)]
struct Mount {
    device: String,
    mountpoint: String,
    fstype: String,
}

/// mountinfo: `id parent major:minor root mountpoint options [optional...] - fstype source ...`
fn mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?.to_string();
            let device = right.next()?;
            Some(Mount { device: unescape(device), mountpoint: unescape(mountpoint), fstype })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n";
        assert_eq!(
            mounts(text),
            vec![Mount { device: "/dev/root".into(), mountpoint: "/mnt/my disk".into(), fstype: "ext3".into() }]
        );
    }

    #[test]
    fn root_usage_is_consistent() {
        let d = usage(Path::new("/"), "", "").unwrap();
        assert!(d.size >= d.used);
        assert!((0.0..=100.0).contains(&d.used_percent));
    }
}

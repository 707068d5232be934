//! Host memory from /proc/meminfo with gopsutil's formulas.

use allocd_plugin_sdk::HostMemoryStats;

/// Reads /proc/meminfo; `None` when it cannot (Nomad then reports zeros).
pub fn read() -> Option<HostMemoryStats> {
    parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse(text: &str) -> Option<HostMemoryStats> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    let free = field("MemFree").unwrap_or(0);
    let buffers = field("Buffers").unwrap_or(0);
    let cached = field("Cached").unwrap_or(0);
    let reclaimable = field("SReclaimable").unwrap_or(0);
    let available = field("MemAvailable").unwrap_or(cached + free);
    let used = total.saturating_sub(free).saturating_sub(buffers).saturating_sub(cached + reclaimable);
    Some(HostMemoryStats { total, available, used, free })
}

#[cfg(test)]
mod tests {
    #[test]
    fn used_subtracts_buffers_cache_and_reclaimable() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 30 kB\n";
        let m = super::parse(text).unwrap();
        assert_eq!(m.total, 1_024_000);
        assert_eq!(m.free, 102_400);
        assert_eq!(m.available, 614_400);
        assert_eq!(m.used, (1000 - 100 - 50 - 230) * 1024);
    }
}

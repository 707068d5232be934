//! Nomad's response types, with the field names and order Nomad emits, built from the ABI
//! types plugins return. Only the host knows this shape.
//!
//! Nomad's encoder writes struct fields sorted by JSON name (byte order), so every struct here
//! declares its fields in that order and serde emits them as they are: sorted output, compact
//! or `?pretty`, at no cost per request. Maps are `BTreeMap`s, sorted too. The tests check
//! the order recursively.

use allocd_plugin_abi as abi;
use serde::Serialize;

use super::wire::{file_mode_string, rfc3339_nano};

/// `AllocFileInfo` (keys sorted, as go-msgpack emits them). `ContentType` only in stat.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocFileInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content_type: String,
    pub file_mode: String,
    pub is_dir: bool,
    pub mod_time: String,
    pub name: String,
    pub size: i64,
}

impl From<&abi::FileInfo> for AllocFileInfo {
    fn from(info: &abi::FileInfo) -> Self {
        Self {
            content_type: info.content_type.to_string(),
            file_mode: file_mode_string(info.mode),
            is_dir: info.is_dir,
            mod_time: rfc3339_nano(info.mod_time_ns),
            name: info.name.to_string(),
            size: info.size,
        }
    }
}

/// `hoststats.HostStats`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostStats {
    pub alloc_dir_stats: DiskStats,
    #[serde(rename = "CPU")]
    pub cpu: Vec<HostCpu>,
    #[serde(rename = "CPUTicksConsumed")]
    pub cpu_ticks_consumed: f64,
    pub device_stats: Option<Vec<()>>,
    pub disk_stats: Option<Vec<DiskStats>>,
    pub memory: HostMemory,
    pub timestamp: i64,
    pub uptime: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostMemory {
    pub available: u64,
    pub free: u64,
    pub total: u64,
    pub used: u64,
}

/// A host CPU entry; `Total` (the API docs' name) equals `TotalPercent`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostCpu {
    #[serde(rename = "CPU")]
    pub cpu: String,
    pub idle: f64,
    pub system: f64,
    pub total: f64,
    pub total_percent: f64,
    pub total_ticks: f64,
    pub user: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskStats {
    pub available: u64,
    pub device: String,
    pub inodes_used_percent: f64,
    pub mountpoint: String,
    pub size: u64,
    pub used: u64,
    pub used_percent: f64,
}

impl From<&abi::DiskStats> for DiskStats {
    fn from(d: &abi::DiskStats) -> Self {
        Self {
            device: d.device.to_string(),
            mountpoint: d.mountpoint.to_string(),
            size: d.size,
            used: d.used,
            available: d.available,
            used_percent: d.used_percent,
            inodes_used_percent: d.inodes_used_percent,
        }
    }
}

impl From<&abi::HostStats> for HostStats {
    fn from(s: &abi::HostStats) -> Self {
        Self {
            memory: HostMemory {
                total: s.memory.total,
                available: s.memory.available,
                used: s.memory.used,
                free: s.memory.free,
            },
            cpu: s
                .cpu
                .iter()
                .map(|c| HostCpu {
                    cpu: c.cpu.to_string(),
                    user: c.user,
                    system: c.system,
                    idle: c.idle,
                    total: c.total_percent,
                    total_percent: c.total_percent,
                    total_ticks: c.total_ticks,
                })
                .collect(),
            disk_stats: s.disk_stats.as_ref().map(|disks| disks.iter().map(DiskStats::from).collect()).into_option(),
            alloc_dir_stats: DiskStats::from(&s.alloc_dir_stats),
            device_stats: None,
            uptime: s.uptime,
            timestamp: s.timestamp,
            cpu_ticks_consumed: s.cpu_ticks_consumed,
        }
    }
}

/// `structs.MemoryStats`.
#[derive(Serialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct MemoryStats {
    pub cache: u64,
    pub kernel_max_usage: u64,
    pub kernel_usage: u64,
    pub mapped_file: u64,
    pub max_usage: u64,
    pub measured: Option<Vec<String>>,
    #[serde(rename = "RSS")]
    pub rss: u64,
    pub swap: u64,
    pub usage: u64,
}

/// `structs.CpuStats`.
#[derive(Serialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct CpuStats {
    pub measured: Option<Vec<String>>,
    pub percent: f64,
    pub system_mode: f64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    pub total_ticks: f64,
    pub user_mode: f64,
}

/// `structs.ResourceUsage`; `DeviceStats` is `[]` at alloc level and `null` elsewhere.
#[derive(Serialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceUsage {
    pub cpu_stats: CpuStats,
    pub device_stats: Option<Vec<()>>,
    pub memory_stats: MemoryStats,
}

/// `structs.TaskResourceUsage`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskResourceUsage {
    pub pids: Option<std::collections::BTreeMap<String, ResourceUsage>>,
    pub resource_usage: ResourceUsage,
    pub timestamp: i64,
}

/// `structs.AllocResourceUsage`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocResourceUsage {
    pub resource_usage: ResourceUsage,
    pub tasks: std::collections::BTreeMap<String, TaskResourceUsage>,
    pub timestamp: i64,
}

fn measured(list: &abi_stable::std_types::RVec<abi_stable::std_types::RString>) -> Option<Vec<String>> {
    Some(list.iter().map(|m| m.to_string()).collect())
}

impl From<&abi::ResourceUsage> for ResourceUsage {
    fn from(u: &abi::ResourceUsage) -> Self {
        let (m, c) = (&u.memory, &u.cpu);
        Self {
            memory_stats: MemoryStats {
                rss: m.rss,
                cache: m.cache,
                swap: m.swap,
                mapped_file: m.mapped_file,
                usage: m.usage,
                max_usage: m.max_usage,
                kernel_usage: m.kernel_usage,
                kernel_max_usage: m.kernel_max_usage,
                measured: measured(&m.measured),
            },
            cpu_stats: CpuStats {
                system_mode: c.system_mode,
                user_mode: c.user_mode,
                total_ticks: c.total_ticks,
                throttled_periods: c.throttled_periods,
                throttled_time: c.throttled_time,
                percent: c.percent,
                measured: measured(&c.measured),
            },
            device_stats: None,
        }
    }
}

impl From<&abi::TaskSample> for TaskResourceUsage {
    fn from(sample: &abi::TaskSample) -> Self {
        Self {
            resource_usage: ResourceUsage::from(&sample.usage),
            timestamp: sample.timestamp,
            pids: sample
                .pids
                .as_ref()
                .map(|pids| pids.iter().map(|p| (p.pid.to_string(), ResourceUsage::from(&p.usage))).collect())
                .into_option(),
        }
    }
}

/// Nomad's `ResourceUsage.Add`: every number summed, `Measured` unioned in first-seen order.
fn add_measured(into: &mut Option<Vec<String>>, from: &Option<Vec<String>>) {
    let Some(from) = from else { return };
    let into = into.get_or_insert_with(Vec::new);
    for name in from {
        if !into.contains(name) {
            into.push(name.clone());
        }
    }
}

impl ResourceUsage {
    pub fn add(&mut self, other: &ResourceUsage) {
        let (m, o) = (&mut self.memory_stats, &other.memory_stats);
        m.rss += o.rss;
        m.cache += o.cache;
        m.swap += o.swap;
        m.mapped_file += o.mapped_file;
        m.usage += o.usage;
        m.max_usage += o.max_usage;
        m.kernel_usage += o.kernel_usage;
        m.kernel_max_usage += o.kernel_max_usage;
        add_measured(&mut m.measured, &o.measured);
        let (c, o) = (&mut self.cpu_stats, &other.cpu_stats);
        c.system_mode += o.system_mode;
        c.user_mode += o.user_mode;
        c.total_ticks += o.total_ticks;
        c.throttled_periods += o.throttled_periods;
        c.throttled_time += o.throttled_time;
        c.percent += o.percent;
        add_measured(&mut c.measured, &o.measured);
    }
}

impl AllocResourceUsage {
    /// Nomad's `LatestAllocStats`: every sampled task (optionally only `task`) in `Tasks`;
    /// only running tasks summed into the totals; `Timestamp` the newest running sample.
    pub fn compose<'a>(samples: impl Iterator<Item = &'a abi::TaskSample>, task: Option<&str>) -> Self {
        let mut total = ResourceUsage { device_stats: Some(Vec::new()), ..ResourceUsage::default() };
        let mut tasks = std::collections::BTreeMap::new();
        let mut timestamp = 0;
        for sample in samples.filter(|s| task.is_none_or(|t| s.task.as_str() == t)) {
            let usage = TaskResourceUsage::from(sample);
            if sample.state == abi::TaskState::RUNNING {
                total.add(&usage.resource_usage);
                timestamp = timestamp.max(sample.timestamp);
            }
            tasks.insert(sample.task.to_string(), usage);
        }
        Self { resource_usage: total, tasks, timestamp }
    }
}

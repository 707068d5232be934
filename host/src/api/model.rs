//! Nomad's response types, with the field names and order Nomad emits, built from the ABI
//! types plugins return. Only the host knows this shape.

use allocd_plugin_api as abi;
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
    pub memory: HostMemory,
    #[serde(rename = "CPU")]
    pub cpu: Vec<HostCpu>,
    pub disk_stats: Option<Vec<DiskStats>>,
    pub alloc_dir_stats: DiskStats,
    pub device_stats: Option<Vec<()>>,
    pub uptime: u64,
    pub timestamp: i64,
    #[serde(rename = "CPUTicksConsumed")]
    pub cpu_ticks_consumed: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostMemory {
    pub total: u64,
    pub available: u64,
    pub used: u64,
    pub free: u64,
}

/// A host CPU entry; `Total` (the API docs' name) equals `TotalPercent`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostCpu {
    #[serde(rename = "CPU")]
    pub cpu: String,
    pub user: f64,
    pub system: f64,
    pub idle: f64,
    pub total: f64,
    pub total_percent: f64,
    pub total_ticks: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskStats {
    pub device: String,
    pub mountpoint: String,
    pub size: u64,
    pub used: u64,
    pub available: u64,
    pub used_percent: f64,
    pub inodes_used_percent: f64,
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

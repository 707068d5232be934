//! The driver's status file and its translation into allocd's task samples.
//!
//! The task driver keeps one JSON document with what it knows about the tasks it runs:
//!
//! ```json
//! {
//!   "allocs": {
//!     "5fb1a5c8-2c5e-4b52-8a7e-0d3d1a7f9e11": {
//!       "web": {
//!         "state": "running",
//!         "rss_bytes": 52428800,
//!         "cpu_percent": 12.5,
//!         "pids": [{ "pid": 4242, "rss_bytes": 52428800, "cpu_percent": 12.5 }]
//!       }
//!     }
//!   }
//! }
//! ```
//!
//! `state` is `running`, `exited` (then `finished_at`, Unix nanoseconds, may say when) or
//! anything else for "unknown": allocd deletes an allocation only once every task of it that
//! was seen running is reported `exited` (or vanishes from a complete report), so report
//! `exited` only when the driver knows the task has finished.
//!
//! Every figure is optional, and Nomad's `Measured` lists name only the figures the driver
//! reported: a client reads a missing name as "not measured" rather than "zero". Fields this
//! plugin does not know are ignored, so the driver can keep more in the same file.

use std::collections::BTreeMap;

use allocd_plugin_sdk::abi_stable::std_types::{RString, RVec};
use allocd_plugin_sdk::{CpuStats, MemoryStats, PidUsage, ResourceUsage, TaskSample, TaskState};
use serde::Deserialize;

/// The whole file: allocation ID → task name → status.
#[derive(Deserialize, Debug, Default)]
pub struct StatusFile {
    #[serde(default)]
    pub allocs: BTreeMap<String, BTreeMap<String, TaskStatus>>,
}

/// One task as the driver sees it.
#[derive(Deserialize, Debug, Default)]
pub struct TaskStatus {
    /// `running`, `exited`, or anything else (or nothing) for unknown.
    #[serde(default)]
    pub state: String,
    /// When an exited task finished, Unix nanoseconds.
    pub finished_at: Option<i64>,
    /// Resident memory of the task, in bytes.
    pub rss_bytes: Option<u64>,
    /// CPU use of the task; 100 is one full core.
    pub cpu_percent: Option<f64>,
    /// Per-process figures, when the driver tracks processes.
    pub pids: Option<Vec<ProcessStatus>>,
}

/// One process of a task.
#[derive(Deserialize, Debug, Default)]
pub struct ProcessStatus {
    pub pid: u32,
    pub rss_bytes: Option<u64>,
    pub cpu_percent: Option<f64>,
}

/// How the file's figures become Nomad's numbers.
#[derive(Clone, Copy, Debug)]
pub struct Conversion {
    /// MHz of one core: Nomad's `TotalTicks` is `Percent / 100 × MHz per core`.
    pub mhz_per_core: f64,
    /// Unix nanoseconds the figures were taken at (the file's modification time).
    pub timestamp: i64,
}

impl StatusFile {
    /// One sample per task, in a stable order (by allocation, then task).
    pub fn samples(&self, conversion: Conversion) -> Vec<TaskSample> {
        self.allocs
            .iter()
            .flat_map(|(alloc_id, tasks)| {
                tasks.iter().map(move |(task, status)| TaskSample {
                    alloc_id: RString::from(alloc_id.as_str()),
                    task: RString::from(task.as_str()),
                    state: match status.state.as_str() {
                        "running" => TaskState::RUNNING,
                        "exited" => TaskState::EXITED,
                        _ => TaskState::UNKNOWN,
                    },
                    finished_at: status.finished_at.unwrap_or(0),
                    timestamp: conversion.timestamp,
                    usage: usage(status.rss_bytes, status.cpu_percent, conversion.mhz_per_core),
                    // `None` is Nomad's `null`: the driver does not track processes.
                    pids: status
                        .pids
                        .as_ref()
                        .map(|pids| {
                            pids.iter()
                                .map(|p| PidUsage { pid: p.pid, usage: usage(p.rss_bytes, p.cpu_percent, 0.0) })
                                .collect::<RVec<_>>()
                        })
                        .into(),
                })
            })
            .collect()
    }
}

/// A `ResourceUsage` holding the figures that were measured, each named in `Measured`.
/// `mhz_per_core` of 0 leaves `TotalTicks` at 0 (Nomad reports 0 for single processes too).
fn usage(rss_bytes: Option<u64>, cpu_percent: Option<f64>, mhz_per_core: f64) -> ResourceUsage {
    let mut memory = MemoryStats::default();
    if let Some(rss) = rss_bytes {
        memory.rss = rss;
        memory.measured.push(RString::from("RSS"));
    }
    let mut cpu = CpuStats::default();
    if let Some(percent) = cpu_percent {
        cpu.percent = percent;
        // Computed but never listed, as in Nomad's own drivers.
        cpu.total_ticks = percent / 100.0 * mhz_per_core;
        cpu.measured.push(RString::from("Percent"));
    }
    ResourceUsage { memory, cpu }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &RVec<RString>) -> Vec<&str> {
        list.iter().map(RString::as_str).collect()
    }

    #[test]
    fn measured_lists_name_only_reported_figures() {
        let file: StatusFile = serde_json::from_str(
            r#"{"allocs":{"a":{"mem-only":{"state":"running","rss_bytes":10},"cpu-only":{"cpu_percent":50.0}}}}"#,
        )
        .unwrap();
        let samples = file.samples(Conversion { mhz_per_core: 2000.0, timestamp: 7 });
        let tasks: Vec<&str> = samples.iter().map(|s| s.task.as_str()).collect();
        assert_eq!(tasks, ["cpu-only", "mem-only"], "sorted by task name");

        let (cpu_only, mem_only) = (&samples[0], &samples[1]);
        assert_eq!((cpu_only.state, mem_only.state), (TaskState::UNKNOWN, TaskState::RUNNING));
        assert_eq!(names(&mem_only.usage.memory.measured), ["RSS"]);
        assert!(mem_only.usage.cpu.measured.is_empty());
        assert!(cpu_only.usage.memory.measured.is_empty());
        assert_eq!(names(&cpu_only.usage.cpu.measured), ["Percent"]);
        assert_eq!(cpu_only.usage.cpu.total_ticks, 1000.0);
        assert_eq!(cpu_only.timestamp, 7);
        assert!(cpu_only.pids.is_none(), "no pids in the file is Nomad's null");
    }

    #[test]
    fn the_example_file_parses() {
        let file: StatusFile = serde_json::from_str(include_str!("../status.example.json")).unwrap();
        let samples = file.samples(Conversion { mhz_per_core: 0.0, timestamp: 0 });
        let states: Vec<(&str, TaskState, i64)> =
            samples.iter().map(|s| (s.task.as_str(), s.state, s.finished_at)).collect();
        assert_eq!(
            states,
            [("log-shipper", TaskState::EXITED, 1_700_000_000_000_000_000), ("web", TaskState::RUNNING, 0)]
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let file: StatusFile =
            serde_json::from_str(r#"{"driver":"my-driver","allocs":{"a":{"t":{"image":"x","state":"running"}}}}"#)
                .unwrap();
        assert_eq!(file.samples(Conversion { mhz_per_core: 0.0, timestamp: 0 }).len(), 1);
    }
}

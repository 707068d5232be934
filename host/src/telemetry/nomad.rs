//! Nomad's client gauges, named and labelled as its emitters name them: the host stats
//! collector's (`client.go`: `setGaugeFor{Memory,CPU,Disk}Stats`, `setGaugeForUptime`) and
//! the task runner's (`task_runner.go`: `setGaugeForMemory`, `setGaugeForCPU`).
//!
//! Nomad labels host gauges with the node's `node_id`, `datacenter`, `node_class`, `node_pool`,
//! status and eligibility, and task gauges with `job`, `task_group`, `alloc_id`, `task` and
//! `namespace`; allocd publishes the labels it knows: `node_id`, and `alloc_id` and `task`.
//! Like Nomad's task runner, only running tasks publish, and a memory figure is published when
//! it is non-zero or its provider lists it as measured.

use allocd_plugin_api::TaskState;

use super::{Metric, Value};
use crate::api::model;
use crate::stats::sampler::TaskSamples;

fn gauge(prefix: &str, name: &str, labels: &[(&'static str, String)], value: f64) -> Metric {
    Metric { name: format!("{prefix}.{name}"), labels: labels.to_vec(), value: Value::Gauge(value as f32) }
}

/// `client.host.*` and `client.uptime`, in Nomad's emission order.
pub fn host_gauges(stats: &model::HostStats, prefix: &str, node_id: &str) -> Vec<Metric> {
    let base = vec![("node_id", node_id.to_string())];
    let memory = &stats.memory;
    let mut gauges = vec![
        gauge(prefix, "client.host.memory.total", &base, memory.total as f64),
        gauge(prefix, "client.host.memory.available", &base, memory.available as f64),
        gauge(prefix, "client.host.memory.used", &base, memory.used as f64),
        gauge(prefix, "client.host.memory.free", &base, memory.free as f64),
        gauge(prefix, "client.uptime", &base, stats.uptime as f64),
    ];
    for cpu in &stats.cpu {
        let labels = [base.clone(), vec![("cpu", cpu.cpu.clone())]].concat();
        for (name, value) in [
            ("total", cpu.total_percent),
            ("total_percent", cpu.total_percent),
            ("total_ticks", cpu.total_ticks),
            ("user", cpu.user),
            ("idle", cpu.idle),
            ("system", cpu.system),
        ] {
            gauges.push(gauge(prefix, &format!("client.host.cpu.{name}"), &labels, value));
        }
    }
    for disk in stats.disk_stats.iter().flatten() {
        let labels = [base.clone(), vec![("disk", disk.device.clone())]].concat();
        for (name, value) in [
            ("size", disk.size as f64),
            ("used", disk.used as f64),
            ("available", disk.available as f64),
            ("used_percent", disk.used_percent),
            ("inodes_percent", disk.inodes_used_percent),
        ] {
            gauges.push(gauge(prefix, &format!("client.host.disk.{name}"), &labels, value));
        }
    }
    gauges
}

/// `client.allocs.memory.*` and `client.allocs.cpu.*` for every running task.
pub fn task_gauges(tasks: &TaskSamples, prefix: &str) -> Vec<Metric> {
    let mut gauges = Vec::new();
    for (alloc_id, by_task) in tasks {
        for (task, sampled) in by_task {
            if sampled.sample.state != TaskState::RUNNING {
                continue;
            }
            let labels = [("alloc_id", alloc_id.clone()), ("task", task.clone())];
            let (memory, cpu) = (&sampled.sample.usage.memory, &sampled.sample.usage.cpu);
            let measured = |name: &str| memory.measured.iter().any(|m| m.as_str() == name);
            for (name, measured_as, value) in [
                ("rss", "RSS", memory.rss),
                ("cache", "Cache", memory.cache),
                ("swap", "Swap", memory.swap),
                ("mapped_file", "Mapped File", memory.mapped_file),
                ("usage", "Usage", memory.usage),
                ("max_usage", "Max Usage", memory.max_usage),
                ("kernel_usage", "Kernel Usage", memory.kernel_usage),
                ("kernel_max_usage", "Kernel Max Usage", memory.kernel_max_usage),
            ] {
                if value != 0 || measured(measured_as) {
                    gauges.push(gauge(prefix, &format!("client.allocs.memory.{name}"), &labels, value as f64));
                }
            }
            for (name, value) in [
                ("total_percent", cpu.percent),
                ("system", cpu.system_mode),
                ("user", cpu.user_mode),
                ("throttled_time", cpu.throttled_time as f64),
                ("throttled_periods", cpu.throttled_periods as f64),
                ("total_ticks", cpu.total_ticks),
            ] {
                gauges.push(gauge(prefix, &format!("client.allocs.cpu.{name}"), &labels, value));
            }
        }
    }
    gauges
}

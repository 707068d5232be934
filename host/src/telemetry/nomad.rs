//! Nomad's client gauges, named and labelled as its emitters name them: the host stats
//! collector's (`client.go`: `setGaugeFor{Memory,CPU,Disk}Stats`, `setGaugeForUptime`) and
//! the task runner's (`task_runner.go`: `setGaugeForMemory`, `setGaugeForCPU`).
//!
//! Nomad labels host gauges with the node's `node_id`, `datacenter`, `node_class`, `node_pool`,
//! status and eligibility, and task gauges with `job`, `task_group`, `alloc_id`, `task` and
//! `namespace` (in that order, `task_runner.go`: `initLabels`); allocd publishes the labels it
//! knows: `node_id`, and `alloc_id` and `task` plus `job`, `task_group` and `namespace` where the
//! task's provider knows them (its `task_labels`, e.g. Docker's container labels).
//! Like Nomad's task runner, only running tasks publish, and a memory figure is published when
//! it is non-zero or its provider lists it as measured.

use std::sync::Arc;

use allocd_plugin_abi::{TaskLabels, TaskState};

use super::{Labels, Metric, Value};
use crate::api::model;
use crate::stats::sampler::{Sampled, TaskSamples};

fn gauge(prefix: &str, name: &str, labels: &Labels, value: f64) -> Metric {
    shared_gauge(&Arc::from(format!("{prefix}.{name}")), labels, value)
}

fn shared_gauge(name: &Arc<str>, labels: &Labels, value: f64) -> Metric {
    Metric { name: Arc::clone(name), labels: Arc::clone(labels), value: Value::Gauge(value as f32) }
}

/// `<prefix>.<group>.<name>` for each of `names`, built once per scrape.
fn names<const N: usize>(prefix: &str, group: &str, names: [&str; N]) -> [Arc<str>; N] {
    names.map(|name| Arc::from(format!("{prefix}.{group}.{name}")))
}

const TASK_MEMORY: [&str; 8] =
    ["rss", "cache", "swap", "mapped_file", "usage", "max_usage", "kernel_usage", "kernel_max_usage"];
/// How each of [`TASK_MEMORY`] is listed in `MemoryStats.Measured`.
const TASK_MEMORY_MEASURED: [&str; 8] =
    ["RSS", "Cache", "Swap", "Mapped File", "Usage", "Max Usage", "Kernel Usage", "Kernel Max Usage"];
const TASK_CPU: [&str; 6] = ["total_percent", "system", "user", "throttled_time", "throttled_periods", "total_ticks"];

/// `client.host.*` and `client.uptime`, in Nomad's emission order.
pub fn host_gauges(stats: &model::HostStats, prefix: &str, node_id: &str) -> Vec<Metric> {
    let node_id: Arc<str> = Arc::from(node_id);
    let base: Labels = Arc::new([("node_id", Arc::clone(&node_id))]);
    let memory = &stats.memory;
    let mut gauges = vec![
        gauge(prefix, "client.host.memory.total", &base, memory.total as f64),
        gauge(prefix, "client.host.memory.available", &base, memory.available as f64),
        gauge(prefix, "client.host.memory.used", &base, memory.used as f64),
        gauge(prefix, "client.host.memory.free", &base, memory.free as f64),
        gauge(prefix, "client.uptime", &base, stats.uptime as f64),
    ];
    let cpu_names =
        names(prefix, "client.host.cpu", ["total", "total_percent", "total_ticks", "user", "idle", "system"]);
    for cpu in &stats.cpu {
        let labels: Labels = Arc::new([("node_id", Arc::clone(&node_id)), ("cpu", Arc::from(cpu.cpu.as_str()))]);
        let values = [cpu.total_percent, cpu.total_percent, cpu.total_ticks, cpu.user, cpu.idle, cpu.system];
        for (name, value) in cpu_names.iter().zip(values) {
            gauges.push(shared_gauge(name, &labels, value));
        }
    }
    let disk_names = names(prefix, "client.host.disk", ["size", "used", "available", "used_percent", "inodes_percent"]);
    for disk in stats.disk_stats.iter().flatten() {
        let labels: Labels = Arc::new([("node_id", Arc::clone(&node_id)), ("disk", Arc::from(disk.device.as_str()))]);
        let values =
            [disk.size as f64, disk.used as f64, disk.available as f64, disk.used_percent, disk.inodes_used_percent];
        for (name, value) in disk_names.iter().zip(values) {
            gauges.push(shared_gauge(name, &labels, value));
        }
    }
    gauges
}

/// A task gauge's labels in Nomad's order; those the provider does not know are left out.
fn task_labels(alloc_id: &str, task: &str, known: Option<&TaskLabels>) -> Labels {
    let known = |name: &'static str| known.and_then(|labels| labels.get(name)).map(|value| (name, Arc::from(value)));
    let (alloc_id, task) = (Some(("alloc_id", Arc::from(alloc_id))), Some(("task", Arc::from(task))));
    [known(TaskLabels::JOB), known(TaskLabels::TASK_GROUP), alloc_id, task, known(TaskLabels::NAMESPACE)]
        .into_iter()
        .flatten()
        .collect()
}

/// `client.allocs.memory.*` and `client.allocs.cpu.*` for every running task.
pub fn task_gauges(tasks: &TaskSamples, prefix: &str) -> Vec<Metric> {
    let memory_names = names(prefix, "client.allocs.memory", TASK_MEMORY);
    let cpu_names = names(prefix, "client.allocs.cpu", TASK_CPU);
    // In label order, so that the encoder's sort of each family finds it sorted already.
    let mut running: Vec<(&String, &String, &Sampled)> = tasks
        .iter()
        .flat_map(|(alloc_id, by_task)| by_task.iter().map(move |(task, sampled)| (alloc_id, task, sampled)))
        .filter(|(_, _, sampled)| sampled.sample.state == TaskState::RUNNING)
        .collect();
    running.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut gauges = Vec::with_capacity(running.len() * (TASK_MEMORY.len() + TASK_CPU.len()));
    for (alloc_id, task, sampled) in running {
        let labels = task_labels(alloc_id, task, sampled.labels.as_deref());
        let (memory, cpu) = (&sampled.sample.usage.memory, &sampled.sample.usage.cpu);
        let memory_values = [
            memory.rss,
            memory.cache,
            memory.swap,
            memory.mapped_file,
            memory.usage,
            memory.max_usage,
            memory.kernel_usage,
            memory.kernel_max_usage,
        ];
        for ((name, measured_as), value) in memory_names.iter().zip(TASK_MEMORY_MEASURED).zip(memory_values) {
            if value != 0 || memory.measured.iter().any(|m| m.as_str() == measured_as) {
                gauges.push(shared_gauge(name, &labels, value as f64));
            }
        }
        let cpu_values = [
            cpu.percent,
            cpu.system_mode,
            cpu.user_mode,
            cpu.throttled_time as f64,
            cpu.throttled_periods as f64,
            cpu.total_ticks,
        ];
        for (name, value) in cpu_names.iter().zip(cpu_values) {
            gauges.push(shared_gauge(name, &labels, value));
        }
    }
    gauges
}

#[cfg(test)]
mod tests {
    use allocd_plugin_abi::Label;

    use super::*;

    fn names(labels: &Labels) -> Vec<(&str, &str)> {
        labels.iter().map(|(name, value)| (*name, value.as_ref())).collect()
    }

    #[test]
    fn task_labels_follow_nomads_order_and_leave_out_the_unknown() {
        let label = |name: &str, value: &str| Label { name: name.into(), value: value.into() };
        let known = TaskLabels {
            alloc_id: "a".into(),
            task: "web".into(),
            labels: vec![label("namespace", "prod"), label("job", "shop"), label("task_group", "front")].into(),
        };
        let all = task_labels("a", "web", Some(&known));
        let want =
            [("job", "shop"), ("task_group", "front"), ("alloc_id", "a"), ("task", "web"), ("namespace", "prod")];
        assert_eq!(names(&all), want);
        assert_eq!(names(&task_labels("a", "web", None)), [("alloc_id", "a"), ("task", "web")]);
    }
}

//! Which containers are Nomad tasks, and which task each one is (spec `nomad-stats.md` §8,
//! "Container identity"; Nomad's `drivers/docker/driver.go`).
//!
//! Nomad names a task's container `<task name with "/"→"_">-<allocID>` and always labels it
//! `com.hashicorp.nomad.alloc_id=<allocID>`. The label's value is the allocation; the task is the
//! name with the `-<allocID>` suffix removed (the optional `com.hashicorp.nomad.task_name` label
//! is only a fallback). Pause containers, named `nomad_init_<allocID>`, carry the label too and are
//! excluded, as are containers that are not running.
//!
//! The job, task group and namespace come from the labels Nomad adds when the driver's
//! `extra_labels` allow them (`com.hashicorp.nomad.job_name`, `…task_group_name`,
//! `…namespace`); a task whose container lacks one simply has no such metric label.

use std::collections::HashMap;

use allocd_plugin_sdk::{Label, TaskLabels, TaskState};
use serde::Deserialize;

/// The label every Nomad task container carries.
pub const ALLOC_LABEL: &str = "com.hashicorp.nomad.alloc_id";
/// Optional label (only with matching `extra_labels`), used when the name does not fit.
const TASK_LABEL: &str = "com.hashicorp.nomad.task_name";
/// Nomad's optional container labels → the metric labels they give (Nomad's task metric labels).
const METRIC_LABELS: [(&str, &str); 3] = [
    ("com.hashicorp.nomad.job_name", TaskLabels::JOB),
    ("com.hashicorp.nomad.task_group_name", TaskLabels::TASK_GROUP),
    ("com.hashicorp.nomad.namespace", TaskLabels::NAMESPACE),
];
/// Name prefix of the pause containers Nomad creates for network namespaces.
const PAUSE_PREFIX: &str = "nomad_init_";

/// One entry of `GET /containers/json`.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default)]
    pub state: String,
}

/// A task container of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub container_id: String,
    pub alloc_id: String,
    pub task: String,
    pub state: TaskState,
    /// The metric labels its container's Nomad labels give (name, value), in Nomad's order.
    pub labels: Vec<(&'static str, String)>,
}

impl Target {
    /// The task's labels for the host, if its container has any.
    pub fn task_labels(&self) -> Option<TaskLabels> {
        let labels =
            self.labels.iter().map(|(name, value)| Label { name: (*name).into(), value: value.as_str().into() });
        (!self.labels.is_empty()).then(|| TaskLabels {
            alloc_id: self.alloc_id.as_str().into(),
            task: self.task.as_str().into(),
            labels: labels.collect(),
        })
    }
}

/// The task containers of a listing, in listing order.
pub fn targets(list: &[ContainerSummary]) -> Vec<Target> {
    list.iter().filter_map(target).collect()
}

/// A task's state from Docker's container state.
pub fn task_state(docker_state: &str) -> TaskState {
    match docker_state {
        "running" | "paused" | "restarting" => TaskState::RUNNING,
        "exited" | "dead" => TaskState::EXITED,
        _ => TaskState::UNKNOWN,
    }
}

fn target(container: &ContainerSummary) -> Option<Target> {
    if container.id.is_empty() {
        return None;
    }
    let labels = container.labels.as_ref()?;
    let alloc_id = labels.get(ALLOC_LABEL).filter(|id| !id.is_empty())?;
    // The container's own name is the one without a second "/" (legacy links add "/other/alias").
    let name = container.names.iter().flatten().filter_map(|n| n.strip_prefix('/')).find(|n| !n.contains('/'));
    if name.is_some_and(|n| n.starts_with(PAUSE_PREFIX)) {
        return None;
    }
    let task = name
        .and_then(|n| n.strip_suffix(alloc_id.as_str())?.strip_suffix('-'))
        .filter(|task| !task.is_empty())
        .or_else(|| labels.get(TASK_LABEL).map(String::as_str).filter(|task| !task.is_empty()));
    let Some(task) = task else {
        log::debug!("docker: container {} has label {ALLOC_LABEL} but no task name; skipped", container.id);
        return None;
    };
    Some(Target {
        container_id: container.id.clone(),
        alloc_id: alloc_id.clone(),
        task: task.to_string(),
        state: task_state(&container.state),
        labels: METRIC_LABELS
            .iter()
            .filter_map(|(key, name)| Some((*name, labels.get(*key).filter(|v| !v.is_empty())?.clone())))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOC: &str = "11111111-2222-3333-4444-555555555555";

    fn container(id: &str, name: &str, state: &str, labels: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            id: id.into(),
            names: Some(vec![name.into()]),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            state: state.into(),
        }
    }

    /// A real listing (Docker 20.10, `all=1`): an exited task, a pause container and a running task.
    #[test]
    fn recorded_listing() {
        let path = format!("{}/tests/fixtures/containers-list.json", env!("CARGO_MANIFEST_DIR"));
        let list: Vec<ContainerSummary> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(list.len(), 3);
        let found = targets(&list);
        let tasks: Vec<(&str, TaskState)> = found.iter().map(|t| (t.task.as_str(), t.state)).collect();
        assert_eq!(tasks, [("sys_task", TaskState::EXITED), ("web", TaskState::RUNNING)]);
        assert_eq!(found[1].container_id, "bdb77c61af89ed3306560162d8c25d2ec064b1520188a4b878e67d06eef0226e");
        assert!(found.iter().all(|t| t.alloc_id == ALLOC));
    }

    #[test]
    fn names_map_to_tasks() {
        let label = [(ALLOC_LABEL, ALLOC)];
        let list = vec![
            container("a", &format!("/web-{ALLOC}"), "running", &label),
            container("b", &format!("/my-task-{ALLOC}"), "running", &label), // dashes inside the task
            container("c", &format!("/group_sub-{ALLOC}"), "running", &label), // "/" was turned into "_"
            container("d", &format!("/nomad_init_{ALLOC}"), "running", &label),
            container("e", &format!("/paused-{ALLOC}"), "paused", &label),
            container("f", &format!("/exited-{ALLOC}"), "exited", &label),
            container("g", &format!("/other-{ALLOC}"), "running", &[]),
            container("h", "/renamed", "running", &label),
            container("i", "/renamed", "running", &[(ALLOC_LABEL, ALLOC), (TASK_LABEL, "from-label")]),
            container("j", &format!("/-{ALLOC}"), "running", &label),
            container("k", &format!("/web-{ALLOC}"), "running", &[(ALLOC_LABEL, "")]),
        ];
        let got: Vec<(String, String, TaskState)> =
            targets(&list).into_iter().map(|t| (t.container_id, t.task, t.state)).collect();
        let (running, exited) = (TaskState::RUNNING, TaskState::EXITED);
        let want = [
            ("a", "web", running),
            ("b", "my-task", running),
            ("c", "group_sub", running),
            ("e", "paused", running),
            ("f", "exited", exited),
            ("i", "from-label", running),
        ];
        assert_eq!(got, want.map(|(c, t, s)| (c.to_string(), t.to_string(), s)));
        assert!(targets(&list).iter().all(|t| t.task_labels().is_none()), "no Nomad metric labels, no task labels");
    }

    #[test]
    fn nomads_job_group_and_namespace_labels_become_task_labels() {
        let labels = [
            (ALLOC_LABEL, ALLOC),
            ("com.hashicorp.nomad.namespace", "prod"),
            ("com.hashicorp.nomad.job_name", "shop"),
            ("com.hashicorp.nomad.task_group_name", ""),
        ];
        let found = targets(&[container("a", &format!("/web-{ALLOC}"), "running", &labels)]);
        let task = found[0].task_labels().expect("labels");
        assert_eq!((task.alloc_id.as_str(), task.task.as_str()), (ALLOC, "web"));
        assert_eq!((task.get(TaskLabels::JOB), task.get(TaskLabels::NAMESPACE)), (Some("shop"), Some("prod")));
        assert_eq!(task.get(TaskLabels::TASK_GROUP), None, "an empty label is not known");
    }

    #[test]
    fn docker_states_map_to_task_states() {
        for (docker, state) in [
            ("running", TaskState::RUNNING),
            ("paused", TaskState::RUNNING),
            ("restarting", TaskState::RUNNING),
            ("exited", TaskState::EXITED),
            ("dead", TaskState::EXITED),
            ("created", TaskState::UNKNOWN),
            ("removing", TaskState::UNKNOWN),
            ("", TaskState::UNKNOWN),
        ] {
            assert_eq!(task_state(docker), state, "{docker}");
        }
    }

    #[test]
    fn the_own_name_wins_over_link_aliases() {
        let mut c = container("a", "/db/alias", "running", &[(ALLOC_LABEL, ALLOC)]);
        c.names.as_mut().unwrap().push(format!("/api-{ALLOC}"));
        assert_eq!(targets(&[c])[0].task, "api");
    }

    #[test]
    fn nulls_are_tolerated() {
        let list: Vec<ContainerSummary> =
            serde_json::from_str(r#"[{"Id":"x","Names":null,"Labels":null,"State":"running"}]"#).unwrap();
        assert!(targets(&list).is_empty());
    }
}

//! `GET /v1/allocations` and `GET /v1/allocation/:alloc_id`: the subset of Nomad's
//! `AllocListStub` that a node agent can know, built from the storage backends (which
//! allocations exist, their tasks) and the GC evidence (what the metric providers proved).
//!
//! Nomad's `ClientStatus` is derived, never guessed: `running` when a provider sees a task
//! running; `complete` when every task was proven exited; `pending` when a provider sees the
//! tasks but none has started; `unknown` when no provider has seen the allocation or one
//! cannot tell now. Providers report no exit codes, so allocd never says `failed` and `Failed`
//! is always false. `CreateTime` is the allocation directory's modification time (the closest
//! the storage knows), `ModifyTime` the later of that and the last task exit seen.
//!
//! Fleet seam: [`local_stubs`] is this node's share. In fleet mode the list would merge every
//! holder's share from the etcd index, each stub keeping its holder's `NodeID`.

use std::collections::BTreeMap;

use allocd_plugin_abi::TaskState;
use allocd_plugin_sdk::paths::is_alloc_id;
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde::Serialize;

use super::AppState;
use super::allocs;
use super::error::ApiError;
use super::params::Request;
use super::response::ApiResponse;
use super::wire::rfc3339_nano;
use crate::acl;
use crate::gc::evidence::TaskEvidence;

/// Go's zero `time.Time`, as Nomad writes a time it does not know.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Nomad's `AllocListStub`, the fields allocd knows (keys sorted, as Nomad's encoder writes).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AllocStub {
    pub client_status: &'static str,
    pub create_time: i64,
    #[serde(rename = "ID")]
    pub id: String,
    pub modify_time: i64,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub task_states: Option<BTreeMap<String, TaskStateStub>>,
}

/// Nomad's `TaskState`, the fields allocd knows.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStateStub {
    pub failed: bool,
    pub finished_at: String,
    pub started_at: String,
    pub state: &'static str,
}

/// `GET /v1/allocations?prefix=&namespace=`: stubs sorted by ID, in the requested namespace
/// (`default` when absent, `*` for every namespace the token may read).
pub async fn list(state: &AppState, req: &Request) -> Result<ApiResponse, ApiError> {
    let token = req.token.as_deref();
    let namespace = match req.query.get("namespace") {
        "" => "default",
        namespace => namespace,
    };
    if namespace == "*" {
        state.acl.check_any_namespace(token, acl::READ_JOB)?;
    } else {
        state.acl.check(token, acl::READ_JOB, namespace)?;
    }
    let stubs = local_stubs(state, req.query.get("prefix")).await?;
    let visible: Vec<AllocStub> = stubs
        .into_iter()
        .filter(|s| namespace == "*" || s.namespace == namespace)
        .filter(|s| state.acl.check(token, acl::READ_JOB, &s.namespace).is_ok())
        .collect();
    Ok(ApiResponse::json_list(visible, req.query.pretty()).await)
}

/// Allocations described at once per backend by a listing: a node with thousands of them
/// queues their calls a few at a time, so other requests' calls to the same plugin are not
/// stuck behind a whole listing's.
const DESCRIBED_AT_ONCE: usize = 4;

/// `GET /v1/allocation/:alloc_id`: one stub; 404 `alloc not found` as Nomad.
pub async fn one(state: &AppState, alloc_id: &str, req: &Request) -> Result<ApiResponse, ApiError> {
    let not_found = || ApiError::not_found("alloc not found");
    if !is_alloc_id(alloc_id) {
        return Err(not_found());
    }
    let alloc = allocs::find(state, alloc_id, req, acl::READ_JOB)
        .await
        .map_err(|e| if e.status == warp::http::StatusCode::NOT_FOUND { not_found() } else { e })?;
    let tasks: Vec<String> = alloc.info.tasks.iter().map(|t| t.to_string()).collect();
    let created = alloc.backend.stat(alloc.id, "/").await.map(|info| info.mod_time_ns).unwrap_or(0);
    let evidence = state.sampler.evidence().tasks_of(alloc.id);
    let stub = stub(alloc.id, alloc.info.namespace.as_str(), &state.node_id, created, &tasks, &evidence);
    Ok(ApiResponse::json(&stub, req.query.pretty()))
}

/// This node's allocations whose ID starts with `prefix`, sorted by ID. A backend that fails
/// fails the listing: a list missing allocations would look complete.
pub async fn local_stubs(state: &AppState, prefix: &str) -> Result<Vec<AllocStub>, ApiError> {
    let listings = join_all(state.registry.storage.iter().map(|b| b.list_allocs())).await;
    let mut stubs = Vec::new();
    for (backend, listing) in state.registry.storage.iter().zip(listings) {
        let ids = listing.map_err(|f| ApiError::from_failure(&f))?;
        let ids = ids.into_iter().filter(|id| id.starts_with(prefix));
        // (owned IDs: a closure over borrowed ones makes the future not `Send` for the compiler)
        let described: Vec<_> = futures_util::stream::iter(ids.map(move |id| async move {
            let described = async {
                let info = backend.alloc_info(&id).await?;
                let created = backend.stat(&id, "/").await.map(|i| i.mod_time_ns).unwrap_or(0);
                Ok::<_, crate::plugins::call::PluginFailure>(info.map(|info| (info, created)))
            };
            (described.await, id)
        }))
        .buffered(DESCRIBED_AT_ONCE)
        .collect()
        .await;
        for (answer, id) in described {
            // Gone between the listing and the look-up: collected meanwhile, not listed.
            let Some((info, created)) = answer.map_err(|f| ApiError::from_failure(&f))? else { continue };
            let tasks: Vec<String> = info.tasks.iter().map(|t| t.to_string()).collect();
            let evidence = state.sampler.evidence().tasks_of(&id);
            stubs.push(stub(&id, info.namespace.as_str(), &state.node_id, created, &tasks, &evidence));
        }
    }
    stubs.sort_by(|a, b| a.id.cmp(&b.id));
    stubs.dedup_by(|a, b| a.id == b.id);
    Ok(stubs)
}

/// One stub from the storage's tasks and the providers' evidence.
fn stub(id: &str, namespace: &str, node_id: &str, created: i64, tasks: &[String], seen: &[TaskEvidence]) -> AllocStub {
    let mut names: Vec<&str> = tasks.iter().map(String::as_str).chain(seen.iter().map(|e| e.task.as_str())).collect();
    names.sort_unstable();
    names.dedup();
    let task_states: BTreeMap<String, TaskStateStub> = names
        .iter()
        .map(|name| {
            let records: Vec<&TaskEvidence> = seen.iter().filter(|e| e.task == *name).collect();
            (name.to_string(), task_state(&records))
        })
        .collect();
    let last_exit = seen.iter().filter_map(|e| e.exited_since).max().unwrap_or(0);
    AllocStub {
        client_status: client_status(tasks, seen),
        create_time: created,
        id: id.to_string(),
        modify_time: created.max(last_exit),
        namespace: namespace.to_string(),
        node_id: node_id.to_string(),
        task_states: (!task_states.is_empty()).then_some(task_states),
    }
}

/// A task's state: `running` or `dead` when a provider proves it, `pending` otherwise.
fn task_state(records: &[&TaskEvidence]) -> TaskStateStub {
    let running = records.iter().any(|r| r.state == TaskState::RUNNING);
    let dead = !running && !records.is_empty() && records.iter().all(|r| r.state == TaskState::EXITED);
    let finished = records.iter().filter_map(|r| r.exited_since).max().filter(|_| dead);
    TaskStateStub {
        failed: false,
        finished_at: finished.map_or_else(|| ZERO_TIME.to_string(), rfc3339_nano),
        started_at: ZERO_TIME.to_string(),
        state: if running {
            "running"
        } else if dead {
            "dead"
        } else {
            "pending"
        },
    }
}

/// Nomad's `ClientStatus` from the evidence; see the module docs.
fn client_status(tasks: &[String], seen: &[TaskEvidence]) -> &'static str {
    if seen.iter().any(|e| e.state == TaskState::RUNNING) {
        return "running";
    }
    if seen.is_empty() {
        return "unknown";
    }
    if seen.iter().any(|e| e.state != TaskState::EXITED) {
        let started = seen.iter().any(|e| e.seen_running || e.exited_since.is_some());
        return if started { "unknown" } else { "pending" };
    }
    if tasks.iter().any(|t| !seen.iter().any(|e| &e.task == t)) {
        return "unknown"; // a task no provider covers may still run
    }
    "complete"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(task: &str, state: TaskState, seen_running: bool, exited_since: Option<i64>) -> TaskEvidence {
        TaskEvidence { task: task.into(), provider: "cgroup".into(), seen_running, state, exited_since }
    }

    fn tasks(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn client_status_follows_the_evidence() {
        let web = tasks(&["web"]);
        assert_eq!(client_status(&web, &[]), "unknown");
        assert_eq!(client_status(&web, &[seen("web", TaskState::RUNNING, true, None)]), "running");
        assert_eq!(client_status(&web, &[seen("web", TaskState::EXITED, true, Some(5))]), "complete");
        assert_eq!(client_status(&web, &[seen("web", TaskState::UNKNOWN, false, None)]), "pending");
        assert_eq!(client_status(&web, &[seen("web", TaskState::UNKNOWN, true, None)]), "unknown");
        let two = tasks(&["web", "raw"]);
        assert_eq!(client_status(&two, &[seen("web", TaskState::EXITED, true, Some(5))]), "unknown");
    }

    #[test]
    fn stubs_carry_task_states_and_times() {
        let evidence = [seen("web", TaskState::EXITED, true, Some(7_000_000_000))];
        let done = stub("a", "default", "n", 5, &tasks(&["web", "side"]), &evidence);
        assert_eq!(done.modify_time, 7_000_000_000);
        let states = done.task_states.unwrap();
        assert_eq!(states["web"].state, "dead");
        assert_ne!(states["web"].finished_at, ZERO_TIME);
        assert_eq!(states["side"].state, "pending");
        assert_eq!(states["side"].finished_at, ZERO_TIME);
        assert!(stub("b", "default", "n", 1, &[], &[]).task_states.is_none());
    }
}

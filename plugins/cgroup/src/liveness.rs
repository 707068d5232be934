//! Whether a task cgroup is live: the positive evidence allocd's garbage collection rests on.
//!
//! A task is *running* while its cgroup or any descendant cgroup holds a process (a frozen
//! task still lists its processes, so it stays running); *exited* when its `cgroup.procs` was
//! read and neither it nor any descendant lists one; *unknown* when that could not be read.
//! Descendants matter because a task may move its processes into child cgroups. On v2 the
//! kernel keeps that answer in `cgroup.events` (`populated`); v1 has no such file, so the
//! subtree is walked. The walk runs only for a cgroup whose own list is empty.

use std::io;
use std::path::Path;

use allocd_plugin_sdk::TaskState;

/// The task's state from its own pid list (`listed`: whether it could be read) and its subtree.
pub fn task_state(listed: bool, pids: &[u32], dir: &Path) -> TaskState {
    if !pids.is_empty() {
        return TaskState::RUNNING;
    }
    if !listed {
        return TaskState::UNKNOWN;
    }
    match subtree_populated(dir) {
        Ok(true) => TaskState::RUNNING,
        Ok(false) => TaskState::EXITED,
        // The cgroup itself vanished meanwhile: the task is gone (and is left out of the sample).
        Err(err) if err.kind() == io::ErrorKind::NotFound && !dir.exists() => TaskState::EXITED,
        Err(_) => TaskState::UNKNOWN,
    }
}

/// True when a descendant of `dir` holds a process: v2's `cgroup.events`, else a walk.
fn subtree_populated(dir: &Path) -> io::Result<bool> {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(events) => {
            if let Some(flag) = events.lines().find_map(|line| line.strip_prefix("populated ")) {
                return Ok(flag.trim() == "1");
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    children_populated(dir)
}

fn children_populated(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let child = entry.path();
        let procs = std::fs::read(child.join("cgroup.procs"))?;
        if procs.iter().any(u8::is_ascii_digit) || children_populated(&child)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn own_processes_are_running_without_looking_further() {
        assert_eq!(task_state(true, &[7], Path::new("/nonexistent")), TaskState::RUNNING);
        // Garbled list with good lines: still running.
        assert_eq!(task_state(false, &[7], Path::new("/nonexistent")), TaskState::RUNNING);
    }

    #[test]
    fn an_unreadable_list_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(task_state(false, &[], dir.path()), TaskState::UNKNOWN);
    }

    #[test]
    fn processes_in_a_child_cgroup_count() {
        let dir = tempfile::tempdir().unwrap();
        let child = dir.path().join("worker/deeper");
        fs::create_dir_all(&child).unwrap();
        fs::write(dir.path().join("worker/cgroup.procs"), "").unwrap();
        fs::write(child.join("cgroup.procs"), "42\n").unwrap();
        assert_eq!(task_state(true, &[], dir.path()), TaskState::RUNNING);
        fs::write(child.join("cgroup.procs"), "").unwrap();
        assert_eq!(task_state(true, &[], dir.path()), TaskState::EXITED);
    }

    #[test]
    fn v2_events_answer_for_the_subtree() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        assert_eq!(task_state(true, &[], dir.path()), TaskState::RUNNING, "frozen is still running");
        fs::write(dir.path().join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert_eq!(task_state(true, &[], dir.path()), TaskState::EXITED);
    }

    #[test]
    fn an_unreadable_child_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("child")).unwrap(); // no cgroup.procs in it
        assert_eq!(task_state(true, &[], dir.path()), TaskState::UNKNOWN);
    }
}

//! Finding Nomad's task cgroups on every sample (spec §6, `client/lib/cgroupslib`):
//! * v2: `<root>/nomad.slice/{share.slice,reserve.slice}/<allocID>.<task>.scope`;
//! * v1: `<root>/<controller>/nomad/<allocID>.<task>` in any of the memory, cpuacct (or
//!   co-mounted `cpu,cpuacct`), cpu and freezer controllers.
//!
//! A cgroup name is a 36-character allocation UUID, a `.`, then the task name (which may
//! itself contain dots). Other entries (`share`, `reserve`, stray directories) are ignored.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use allocd_plugin_sdk::paths::is_alloc_id;

use crate::detect::{ControllerMask, V1Controllers};
use crate::warn::{Problem, Warnings};

/// The two v2 partitions Nomad creates under `nomad.slice` (`reserve` for `resources.cores`).
pub const V2_PARTITIONS: [&str; 2] = ["share.slice", "reserve.slice"];

/// Splits `<allocID>.<task>` into its parts; `None` unless it starts with a UUID and a
/// non-empty task name follows the dot.
pub fn split_task(name: &str) -> Option<(&str, &str)> {
    let alloc = name.get(..36)?;
    let task = name.get(36..)?.strip_prefix('.')?;
    (is_alloc_id(alloc) && !task.is_empty()).then_some((alloc, task))
}

/// A v2 task cgroup: its `<allocID>.<task>` name and the partition (index into
/// [`V2_PARTITIONS`]) holding `<name>.scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Task {
    pub name: String,
    pub partition: usize,
}

/// Lists the v2 task cgroups under `root` into `out` (cleared first), sorted by name. A name
/// present in both partitions is taken from `share.slice`. False when a listing failed, or
/// when there is no `nomad.slice` at all: Nomad's client has not set up its cgroups (yet, after
/// a reboot), so its tasks' absence proves nothing.
pub fn v2_tasks(root: &Path, warnings: &mut Warnings, out: &mut Vec<V2Task>) -> bool {
    out.clear();
    let slice = root.join("nomad.slice");
    if !slice.is_dir() {
        return false;
    }
    let mut complete = true;
    for (partition, dir) in V2_PARTITIONS.iter().enumerate() {
        complete &= list_dirs(&slice.join(dir), warnings, |mut name| {
            if name.ends_with(".scope") && split_task(&name[..name.len() - 6]).is_some() {
                name.truncate(name.len() - 6);
                out.push(V2Task { name, partition });
            }
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.partition.cmp(&b.partition)));
    out.dedup_by(|later, first| later.name == first.name);
    complete
}

/// Lists the v1 task cgroups into `out` (cleared first): each `<allocID>.<task>` with the
/// controllers it was found in. False when a listing failed, or when no controller has a
/// `nomad` directory (Nomad's client has not set up its cgroups: absence proves nothing).
pub fn v1_tasks(
    controllers: &V1Controllers,
    warnings: &mut Warnings,
    out: &mut BTreeMap<String, ControllerMask>,
) -> bool {
    out.clear();
    if !controllers.each().any(|(_, dir)| dir.join("nomad").is_dir()) {
        return false;
    }
    let mut complete = true;
    for (bit, dir) in controllers.each() {
        complete &= list_dirs(&dir.join("nomad"), warnings, |name| {
            if split_task(&name).is_some() {
                *out.entry(name).or_default() |= bit;
            }
        });
    }
    complete
}

/// Calls `found` with the UTF-8 names of the subdirectories of `dir`. A missing `dir` is
/// simply empty (callers first check that Nomad's tree exists); other errors are warned about
/// once and make the answer false: the tasks below are not known.
fn list_dirs(dir: &Path, warnings: &mut Warnings, mut found: impl FnMut(String)) -> bool {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return true,
        Err(err) => {
            warnings.warn(Problem::Unreadable, "task cgroup directory", || {
                format!("cgroup: cannot list {}: {err}; its tasks are not reported (logged once)", dir.display())
            });
            return false;
        }
    };
    let mut complete = true;
    for entry in entries {
        let Ok(entry) = entry else {
            complete = false;
            continue;
        };
        // d_type from readdir: no stat per entry. cgroupfs and tmpfs always fill it in.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(name) = entry.file_name().into_string() {
            found(name);
        }
    }
    complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{CPU, CPUACCT, FREEZER, MEMORY};
    use std::fs;

    const A: &str = "5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60";
    const B: &str = "00000000-1111-2222-3333-444444444444";

    #[test]
    fn task_names() {
        assert_eq!(split_task(&format!("{A}.web")), Some((A, "web")));
        assert_eq!(split_task(&format!("{A}.my.dotted.task")), Some((A, "my.dotted.task")));
        assert_eq!(split_task(&format!("{A}.")), None);
        assert_eq!(split_task(A), None);
        assert_eq!(split_task(&format!("{A}-web")), None);
        assert_eq!(split_task("5fb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f6.web"), None);
        assert_eq!(split_task("zfb2d3a4-0b9e-4f0a-8f8e-2a1c3d4e5f60.web"), None);
        assert_eq!(split_task("share"), None);
        assert_eq!(split_task("ééééééééééééééééééé.x"), None);
        assert_eq!(split_task(""), None);
    }

    #[test]
    fn v2_scopes_in_both_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let share = root.join("nomad.slice/share.slice");
        let reserve = root.join("nomad.slice/reserve.slice");
        for d in [
            share.join(format!("{A}.web.scope")),
            share.join(format!("{A}.side.car.scope")),
            reserve.join(format!("{B}.db.scope")),
            reserve.join(format!("{A}.web.scope")), // duplicate: share wins
            share.join(format!("{A}.noscope")),
            share.join("not-a-uuid.web.scope"),
            share.join(format!("{A}..scope")),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(share.join(format!("{B}.file.scope")), "").unwrap(); // a file, not a cgroup
        let mut warnings = Warnings::default();
        let mut out = Vec::new();
        assert!(v2_tasks(root, &mut warnings, &mut out));
        assert_eq!(
            out,
            [
                V2Task { name: format!("{B}.db"), partition: 1 },
                V2Task { name: format!("{A}.side.car"), partition: 0 },
                V2Task { name: format!("{A}.web"), partition: 0 },
            ]
        );
        // No nomad.slice at all (Nomad not started since boot): nothing, and not a complete view.
        assert!(!v2_tasks(&root.join("elsewhere"), &mut warnings, &mut out));
        assert!(out.is_empty());
        // nomad.slice without reserve.slice: complete, what share.slice holds.
        fs::remove_dir_all(root.join("nomad.slice/reserve.slice")).unwrap();
        assert!(v2_tasks(root, &mut warnings, &mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn v1_union_over_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            format!("memory/nomad/{A}.web"),
            format!("cpuacct/nomad/{A}.web"),
            format!("cpu/nomad/{A}.web"),
            format!("freezer/nomad/{A}.web"),
            format!("freezer/nomad/{B}.only.frozen"),
            "memory/nomad/share".to_string(),
            format!("cpuset/nomad/reserve/{A}.web"), // cpuset is not a statistics controller
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let controllers = V1Controllers::find(root);
        let mut warnings = Warnings::default();
        let mut out = BTreeMap::new();
        assert!(v1_tasks(&controllers, &mut warnings, &mut out));
        let expected: BTreeMap<String, ControllerMask> =
            [(format!("{A}.web"), MEMORY | CPUACCT | CPU | FREEZER), (format!("{B}.only.frozen"), FREEZER)].into();
        assert_eq!(out, expected);
        // Controllers without Nomad's `nomad` directory anywhere: not a complete view.
        let bare = tempfile::tempdir().unwrap();
        for d in ["memory", "cpuacct", "cpu", "freezer"] {
            fs::create_dir_all(bare.path().join(d)).unwrap();
        }
        assert!(!v1_tasks(&V1Controllers::find(bare.path()), &mut warnings, &mut out));
        assert!(out.is_empty());
    }
}

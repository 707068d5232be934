//! Which cgroup hierarchy lives under the configured root, probed from files so tests can build
//! fake trees (the idea of Nomad's `cgroupslib` and vector's host_metrics cgroups):
//! * **v2** (unified) when `<root>/cgroup.controllers` exists;
//! * **v1** when a `memory`, `cpuacct` or `cpu,cpuacct` controller directory exists;
//! * **hybrid** — v1 controllers plus a cgroup2 mount at `<root>/unified` — is treated as v1:
//!   Nomad puts task cgroups in the v1 controllers then.
//!
//! Also resolves the v1 controller directories a task's statistics come from.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The statistics layout used for task cgroups (the config's `mode` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    V1,
    V2,
}

/// What probing found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    V1,
    /// v1 controllers and a cgroup2 hierarchy at `<root>/unified`.
    Hybrid,
    V2,
}

impl Detected {
    pub fn mode(self) -> Mode {
        match self {
            Detected::V2 => Mode::V2,
            Detected::V1 | Detected::Hybrid => Mode::V1,
        }
    }
}

/// Probes `root`; `None` when it holds no cgroup hierarchy this plugin understands.
pub fn detect(root: &Path) -> Option<Detected> {
    if root.join("cgroup.controllers").exists() {
        return Some(Detected::V2);
    }
    let v1 = ["memory", "cpuacct", "cpu,cpuacct"].iter().any(|c| root.join(c).is_dir());
    if !v1 {
        return None;
    }
    let hybrid = root.join("unified/cgroup.controllers").exists();
    Some(if hybrid { Detected::Hybrid } else { Detected::V1 })
}

/// Bits naming the v1 controllers a task cgroup was found in.
pub type ControllerMask = u8;
pub const MEMORY: ControllerMask = 1;
pub const CPUACCT: ControllerMask = 2;
pub const CPU: ControllerMask = 4;
pub const FREEZER: ControllerMask = 8;

/// The v1 controller mount directories under the root (those that exist). `cpu` and
/// `cpuacct` may be one co-mounted `cpu,cpuacct` hierarchy; both then point at it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct V1Controllers {
    pub memory: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
}

impl V1Controllers {
    pub fn find(root: &Path) -> Self {
        let first = |names: &[&str]| names.iter().map(|n| root.join(n)).find(|p| p.is_dir());
        Self {
            memory: first(&["memory"]),
            cpuacct: first(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]),
            cpu: first(&["cpu", "cpu,cpuacct", "cpuacct,cpu"]),
            freezer: first(&["freezer"]),
        }
    }

    /// The controllers with their mask bits, in the order tasks are discovered.
    pub fn each(&self) -> impl Iterator<Item = (ControllerMask, &Path)> {
        [(MEMORY, &self.memory), (CPUACCT, &self.cpuacct), (CPU, &self.cpu), (FREEZER, &self.freezer)]
            .into_iter()
            .filter_map(|(bit, dir)| Some((bit, dir.as_deref()?)))
    }

    pub fn get(&self, bit: ControllerMask) -> Option<&Path> {
        match bit {
            MEMORY => self.memory.as_deref(),
            CPUACCT => self.cpuacct.as_deref(),
            CPU => self.cpu.as_deref(),
            FREEZER => self.freezer.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(detect(root), None);
        assert_eq!(detect(&root.join("missing")), None);

        fs::create_dir(root.join("freezer")).unwrap();
        assert_eq!(detect(root), None, "freezer alone is not a statistics hierarchy");

        fs::create_dir(root.join("memory")).unwrap();
        assert_eq!(detect(root), Some(Detected::V1));
        assert_eq!(detect(root).unwrap().mode(), Mode::V1);

        fs::create_dir(root.join("unified")).unwrap();
        assert_eq!(detect(root), Some(Detected::V1), "an empty unified dir is not a cgroup2 mount");
        fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(detect(root), Some(Detected::Hybrid));
        assert_eq!(detect(root).unwrap().mode(), Mode::V1);

        fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        assert_eq!(detect(root), Some(Detected::V2));
        assert_eq!(detect(root).unwrap().mode(), Mode::V2);
    }

    #[test]
    fn comounted_cpu_cpuacct() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("cpu,cpuacct")).unwrap();
        assert_eq!(detect(root), Some(Detected::V1));
        let c = V1Controllers::find(root);
        assert_eq!(c.cpu.as_deref(), Some(root.join("cpu,cpuacct").as_path()));
        assert_eq!(c.cpuacct.as_deref(), Some(root.join("cpu,cpuacct").as_path()));
        assert_eq!(c.memory, None);
        assert_eq!(c.each().map(|(bit, _)| bit).collect::<Vec<_>>(), [CPUACCT, CPU]);
        assert_eq!(c.get(CPU), Some(root.join("cpu,cpuacct").as_path()));
        assert_eq!(c.get(MEMORY), None);
    }

    #[test]
    fn separate_controllers_win_over_comounted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for c in ["memory", "cpu", "cpuacct", "freezer", "cpu,cpuacct"] {
            fs::create_dir(root.join(c)).unwrap();
        }
        let c = V1Controllers::find(root);
        assert_eq!(c.cpu.as_deref(), Some(root.join("cpu").as_path()));
        assert_eq!(c.cpuacct.as_deref(), Some(root.join("cpuacct").as_path()));
        assert_eq!(c.freezer.as_deref(), Some(root.join("freezer").as_path()));
        assert_eq!(c.each().count(), 4);
    }

    #[test]
    fn mode_config_values() {
        let m: Mode = serde_json::from_str("\"v1\"").unwrap();
        assert_eq!(m, Mode::V1);
        let m: Mode = serde_json::from_str("\"v2\"").unwrap();
        assert_eq!(m, Mode::V2);
        assert!(serde_json::from_str::<Mode>("\"v3\"").is_err());
    }
}

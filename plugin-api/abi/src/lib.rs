//! The stable ABI between the allocd host and its plugin libraries: only the `StableAbi` types,
//! the `#[sabi_trait]` interfaces and the root module, versioned on their own (this crate's
//! version is the ABI version a plugin was built against) and changed rarely. The author SDK
//! (`allocd-plugin-sdk`) and its helpers live elsewhere and may change in every release.
//!
//! Everything here is `#[repr(C)]` + `StableAbi`, checked by abi_stable when a library is
//! loaded. The data types mirror Nomad's model (host stats, per-task `ResourceUsage` with
//! `Measured` lists, file info) but carry no wire format: the host alone turns them into
//! Nomad's JSON. Traits are synchronous `&self` interfaces; the host calls them on its
//! blocking pool.
//!
//! Evolution (the promise of `docs/plugin-abi.md`): a minor version only appends *optional*
//! trait methods (with a default body answering [`ErrorKind::UNSUPPORTED`], so a library built
//! against an older minor, whose vtable lacks them, answers "not supported") and new types.
//! [`compat`] checks a library's version and layout against the layout of the minor it was
//! built for, kept frozen in [`frozen`]. Anything else is a new major version.
#![allow(non_local_definitions)] // #[sabi_trait] expansions trip this lint on current rustc.

pub mod compat;
pub mod frozen;

pub use abi_stable;

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RSliceMut, RStr, RString, RVec},
};

/// What went wrong in a plugin call; the host maps kinds to Nomad's status codes.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct ErrorKind(pub u32);

impl ErrorKind {
    pub const NOT_FOUND: Self = Self(1);
    pub const INVALID_ARGUMENT: Self = Self(2);
    pub const PERMISSION_DENIED: Self = Self(3);
    pub const UNSUPPORTED: Self = Self(4);
    pub const UNAVAILABLE: Self = Self(5);
    pub const INTERNAL: Self = Self(6);
    pub const PANICKED: Self = Self(7);

    /// True for failures of the plugin itself (a panic, an outage, an internal error), which
    /// the host answers with 500 naming the plugin; the other kinds are answers about the
    /// request and keep the plugin's own text (Nomad's wording).
    pub fn is_plugin_fault(self) -> bool {
        matches!(self, Self::PANICKED | Self::UNAVAILABLE | Self::INTERNAL)
    }

    /// The kind's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::NOT_FOUND => "not found",
            Self::INVALID_ARGUMENT => "invalid argument",
            Self::PERMISSION_DENIED => "permission denied",
            Self::UNSUPPORTED => "unsupported",
            Self::UNAVAILABLE => "unavailable",
            Self::INTERNAL => "internal",
            Self::PANICKED => "panicked",
            _ => "unknown",
        }
    }
}

/// A plugin failure: a kind for the status code and Nomad's message text.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: RString,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: RString::from(message.into()) }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NOT_FOUND, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INVALID_ARGUMENT, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PERMISSION_DENIED, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::INTERNAL, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UNAVAILABLE, message)
    }
    /// What an optional method answers when the library does not provide it.
    pub fn unsupported(method: &str) -> Self {
        Self::new(ErrorKind::UNSUPPORTED, format!("{method} is not supported by this plugin"))
    }
    /// Maps an OS error on a requested path the way Go reports it: `<op> <path>: <text>`.
    /// It is an answer about the request, not a fault of the plugin.
    pub fn io(op: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NOT_FOUND,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PERMISSION_DENIED,
            _ => ErrorKind::INVALID_ARGUMENT,
        };
        Self::new(kind, format!("{op} {}: {}", path.display(), os_error_text(err)))
    }
}

/// Go's wording for an OS error: strerror text with a lower-case first letter.
pub fn os_error_text(err: &std::io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

/// Result type of every ABI call.
pub type PluginResult<T> = RResult<T, PluginError>;

/// Bit set of the kinds a library provides.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct PluginKinds(pub u32);

impl PluginKinds {
    pub const METRICS: Self = Self(1);
    pub const STORAGE: Self = Self(2);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    /// Names as printed by `allocd plugin inspect`.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.contains(Self::METRICS) {
            names.push("metrics");
        }
        if self.contains(Self::STORAGE) {
            names.push("storage");
        }
        names
    }
}

/// Who a library is.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct PluginDescriptor {
    pub name: RString,
    pub version: RString,
    pub kinds: PluginKinds,
}

/// Log severity passed to [`HostContext::log`]; mirrors `log::Level`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct LogLevel(pub u8);

impl LogLevel {
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);
}

/// What the host hands every constructor: a logging callback (each cdylib has its own `log`
/// crate, so logs go nowhere without it) and the agent's directories.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct HostContext {
    pub log: extern "C" fn(level: LogLevel, target: RStr<'_>, message: RStr<'_>),
    /// The agent's data directory.
    pub data_dir: RString,
    /// The agent's allocation directory (`<data_dir>/alloc` unless configured).
    pub alloc_dir: RString,
}

// ---------------------------------------------------------------------------------------------
// Host statistics (Nomad `client/hoststats/host.go`).

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct HostMemoryStats {
    pub total: u64,
    pub available: u64,
    pub used: u64,
    pub free: u64,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct HostCpuStats {
    pub cpu: RString,
    pub user: f64,
    pub system: f64,
    pub idle: f64,
    pub total_percent: f64,
    pub total_ticks: f64,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct DiskStats {
    pub device: RString,
    pub mountpoint: RString,
    pub size: u64,
    pub used: u64,
    pub available: u64,
    pub used_percent: f64,
    pub inodes_used_percent: f64,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct HostStats {
    pub memory: HostMemoryStats,
    pub cpu: RVec<HostCpuStats>,
    /// `None` is Nomad's `null` (partition listing failed or found nothing).
    pub disk_stats: ROption<RVec<DiskStats>>,
    pub alloc_dir_stats: DiskStats,
    pub uptime: u64,
    /// Unix nanoseconds at the start of collection.
    pub timestamp: i64,
    pub cpu_ticks_consumed: f64,
}

// ---------------------------------------------------------------------------------------------
// Task resource usage (Nomad `client/structs/structs.go`).

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct MemoryStats {
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub mapped_file: u64,
    pub usage: u64,
    pub max_usage: u64,
    pub kernel_usage: u64,
    pub kernel_max_usage: u64,
    /// Nomad's spaced names: "RSS", "Cache", "Swap", "Usage", "Max Usage", ...
    pub measured: RVec<RString>,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct CpuStats {
    pub system_mode: f64,
    pub user_mode: f64,
    pub total_ticks: f64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
    /// 100 = one full core.
    pub percent: f64,
    pub measured: RVec<RString>,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct ResourceUsage {
    pub memory: MemoryStats,
    pub cpu: CpuStats,
}

#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct PidUsage {
    pub pid: u32,
    pub usage: ResourceUsage,
}

/// What a provider knows of a task's life. Deleting an allocation needs positive evidence, so
/// anything a provider cannot tell for sure is `UNKNOWN`, never `EXITED`.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct TaskState(pub u8);

impl TaskState {
    /// Not known: not started yet (a created container), or unreadable.
    pub const UNKNOWN: Self = Self(0);
    /// Live: a cgroup (or a descendant) with processes, a running, paused or restarting container.
    pub const RUNNING: Self = Self(1);
    /// Positively finished: a stopped container, a cgroup whose processes are all gone.
    pub const EXITED: Self = Self(2);

    pub fn name(self) -> &'static str {
        match self {
            Self::RUNNING => "running",
            Self::EXITED => "exited",
            _ => "unknown",
        }
    }
}

/// One task's latest usage as a metric provider sees it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct TaskSample {
    pub alloc_id: RString,
    pub task: RString,
    pub state: TaskState,
    /// Unix nanoseconds when an `EXITED` task finished, 0 when the provider does not know.
    pub finished_at: i64,
    /// Unix nanoseconds when the sample was taken.
    pub timestamp: i64,
    pub usage: ResourceUsage,
    /// `None` is Nomad's `null` (no per-process data, e.g. Docker).
    pub pids: ROption<RVec<PidUsage>>,
}

/// Every task a provider sees now, and whether that view is complete: `complete` promises
/// that a task this provider reported before and does not list now is gone. A provider that
/// cannot list everything it covers (daemon unreachable, not listed yet, a read failed, its
/// root does not match the host) says `false`, and its missing tasks stay unknown.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct TaskReport {
    pub tasks: RVec<TaskSample>,
    pub complete: bool,
}

impl TaskReport {
    /// Every task the provider covers.
    pub fn complete(tasks: Vec<TaskSample>) -> Self {
        Self { tasks: tasks.into(), complete: true }
    }
    /// Some tasks may be missing: those the host saw before stay unknown.
    pub fn partial(tasks: Vec<TaskSample>) -> Self {
        Self { tasks: tasks.into(), complete: false }
    }
}

// ---------------------------------------------------------------------------------------------
// Allocation storage.

/// What a backend knows about one allocation.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct AllocInfo {
    /// Nomad namespace (`default` unless the backend knows better).
    pub namespace: RString,
    /// Task names (the per-task directories).
    pub tasks: RVec<RString>,
}

/// One entry of `ls` / the answer of `stat` (Nomad `AllocFileInfo`).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct FileInfo {
    pub name: RString,
    pub is_dir: bool,
    pub size: i64,
    /// Unix `st_mode` (type and permission bits); the host renders Go's `FileMode` string.
    pub mode: u32,
    /// Modification time, Unix nanoseconds.
    pub mod_time_ns: i64,
    /// Sniffed content type (stat only; empty in listings).
    pub content_type: RString,
}

/// Identity and size of an open file, so followers can tell truncation and replacement apart.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
}

// ---------------------------------------------------------------------------------------------
// Since 1.1: task labels and the allocation index.

/// One label: a name and its value.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct Label {
    pub name: RString,
    pub value: RString,
}

/// What a provider knows about a task beyond its usage, as labels (`job`, `task_group`,
/// `namespace`: [`TaskLabels::JOB`] ...). A list of name/value pairs rather than fields, so
/// that new labels need no ABI change; a label the provider does not know is left out.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskLabels {
    pub alloc_id: RString,
    pub task: RString,
    pub labels: RVec<Label>,
}

impl TaskLabels {
    /// The job's name (Nomad's `job` metric label).
    pub const JOB: &'static str = "job";
    /// The task group's name (`task_group`).
    pub const TASK_GROUP: &'static str = "task_group";
    /// The job's namespace (`namespace`).
    pub const NAMESPACE: &'static str = "namespace";

    /// The value of label `name`, if the provider knows it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|label| label.name == name).map(|label| label.value.as_str())
    }
}

/// One allocation of an [`AllocIndex`]: what `alloc_info` would answer for it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct IndexedAlloc {
    pub alloc_id: RString,
    pub info: AllocInfo,
}

/// The allocations a storage backend holds, as of one `generation`. The generation changes
/// whenever the set changes (an allocation appeared or was deleted), so a host that asks with
/// the generation it already has gets `allocs: None` and keeps its index: no listing and no
/// `alloc_info` per request.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq)]
pub struct AllocIndex {
    pub generation: u64,
    /// Every allocation the backend holds; `None` when `generation` is the one asked about.
    pub allocs: ROption<RVec<IndexedAlloc>>,
}

// ---------------------------------------------------------------------------------------------
// Interfaces.

/// A source of host and task metrics.
#[sabi_trait]
pub trait MetricsProvider: Send + Sync {
    /// The host sample, or `None` when this provider does not measure the host.
    fn host_stats(&self) -> PluginResult<ROption<HostStats>>;

    /// Latest usage and state of every task this provider can see.
    #[sabi(last_prefix_field)]
    fn sample_tasks(&self) -> PluginResult<TaskReport>;

    /// Since 1.1, optional: labels of the tasks this provider knows them for (those of its
    /// latest sample). A library without it answers [`ErrorKind::UNSUPPORTED`].
    fn task_labels(&self) -> PluginResult<RVec<TaskLabels>> {
        RResult::RErr(PluginError::unsupported("task_labels"))
    }
}

/// An open file inside an allocation.
#[sabi_trait]
pub trait FileReader: Send + Sync {
    /// Fills `buf` from `offset`; returns the number of bytes read (0 at end of file).
    fn read_at(&self, offset: u64, buf: RSliceMut<'_, u8>) -> PluginResult<u64>;

    /// Identity and current size of the open file.
    #[sabi(last_prefix_field)]
    fn identity(&self) -> PluginResult<FileIdentity>;
}

/// An allocation storage backend. Paths are relative to the allocation root as the user gave
/// them; backends resolve them beneath the allocation root (the SDK's `paths` module).
#[sabi_trait]
pub trait StorageBackend: Send + Sync {
    /// `None` when this backend does not hold the allocation.
    fn alloc_info(&self, alloc_id: RStr<'_>) -> PluginResult<ROption<AllocInfo>>;
    /// Every allocation this backend holds.
    fn list_allocs(&self) -> PluginResult<RVec<RString>>;
    /// Directory listing, sorted by name, entries from lstat.
    fn list(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<FileInfo>>;
    /// stat (follows symlinks) with a sniffed content type.
    fn stat(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileInfo>;
    /// Opens a file for reading; refuses `secrets/` and `private/`.
    fn open(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileReaderBox>;
    /// Identity of the file currently at `path` (follow uses it to see replacement).
    fn identify(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileIdentity>;
    /// Real filesystem paths whose changes matter when following `path`.
    fn watch_paths(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<RString>>;
    /// Deletes a terminal allocation: it is out of sight (no longer listed or served) when this
    /// returns; the deletion itself may continue in the background, never leaving the
    /// allocation (no symlink followed, no mount crossed). Not found when already gone.
    #[sabi(last_prefix_field)]
    fn gc(&self, alloc_id: RStr<'_>) -> PluginResult<()>;

    /// Since 1.1, optional: the allocations this backend holds with their [`AllocInfo`], unless
    /// `known_generation` is still current (see [`AllocIndex`]); cheap enough to call on every
    /// request. A library
    /// without it answers [`ErrorKind::UNSUPPORTED`] and the host asks `alloc_info` instead.
    fn alloc_index(&self, known_generation: u64) -> PluginResult<AllocIndex> {
        let _ = known_generation;
        RResult::RErr(PluginError::unsupported("alloc_index"))
    }
}

pub type MetricsProviderBox = MetricsProvider_TO<'static, RBox<()>>;
pub type StorageBackendBox = StorageBackend_TO<'static, RBox<()>>;
pub type FileReaderBox = FileReader_TO<'static, RBox<()>>;

/// The root module every plugin library exports (the SDK's `export_plugin!` builds it).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub descriptor: extern "C" fn() -> PluginDescriptor,
    /// Constructors take the plugin's `config` block as JSON and the host context; `None`
    /// when the library does not provide that kind.
    pub new_metrics: extern "C" fn(RStr<'_>, HostContext) -> PluginResult<ROption<MetricsProviderBox>>,
    #[sabi(last_prefix_field)]
    pub new_storage: extern "C" fn(RStr<'_>, HostContext) -> PluginResult<ROption<StorageBackendBox>>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "allocd_plugin";
    const NAME: &'static str = "allocd_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The ABI version this crate is: what a plugin built against it reports, and what a host
/// built with it speaks (it loads plugins of the same major and an equal or older minor).
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

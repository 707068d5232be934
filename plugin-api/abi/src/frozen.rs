//! The layouts of older minor versions, frozen, for checking libraries built against them.
//!
//! abi_stable accepts a library whose prefix types (vtables, the root module) are *at least as
//! long* as the layout it is checked against, never shorter. A library built against an older
//! minor has shorter vtables than this crate's, so the host checks it against the layout of
//! the minor it was built for, kept here under the same type names, then calls it through the
//! current types: the optional methods its vtables lack run their default body ("not
//! supported"). Each minor release freezes the previous minor's changed types here; data types
//! that did not change are shared with the current version.

/// ABI 1.0: the interfaces before the optional `task_labels` and `alloc_index` methods.
pub mod v1_0 {
    use abi_stable::{
        StableAbi, declare_root_module_statics,
        library::RootModule,
        sabi_trait,
        sabi_types::VersionStrings,
        std_types::{RBox, ROption, RStr, RString, RVec},
    };

    use crate::{
        AllocInfo, FileIdentity, FileInfo, FileReaderBox, HostContext, HostStats, PluginDescriptor, PluginResult,
        TaskReport,
    };

    /// `MetricsProvider` as of 1.0.
    #[sabi_trait]
    pub trait MetricsProvider: Send + Sync {
        fn host_stats(&self) -> PluginResult<ROption<HostStats>>;
        #[sabi(last_prefix_field)]
        fn sample_tasks(&self) -> PluginResult<TaskReport>;
    }

    /// `StorageBackend` as of 1.0.
    #[sabi_trait]
    pub trait StorageBackend: Send + Sync {
        fn alloc_info(&self, alloc_id: RStr<'_>) -> PluginResult<ROption<AllocInfo>>;
        fn list_allocs(&self) -> PluginResult<RVec<RString>>;
        fn list(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<FileInfo>>;
        fn stat(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileInfo>;
        fn open(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileReaderBox>;
        fn identify(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<FileIdentity>;
        fn watch_paths(&self, alloc_id: RStr<'_>, path: RStr<'_>) -> PluginResult<RVec<RString>>;
        #[sabi(last_prefix_field)]
        fn gc(&self, alloc_id: RStr<'_>) -> PluginResult<()>;
    }

    pub type MetricsProviderBox = MetricsProvider_TO<'static, RBox<()>>;
    pub type StorageBackendBox = StorageBackend_TO<'static, RBox<()>>;

    /// The root module as of 1.0.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
    #[sabi(missing_field(panic))]
    pub struct PluginMod {
        pub descriptor: extern "C" fn() -> PluginDescriptor,
        pub new_metrics: extern "C" fn(RStr<'_>, HostContext) -> PluginResult<ROption<MetricsProviderBox>>,
        #[sabi(last_prefix_field)]
        pub new_storage: extern "C" fn(RStr<'_>, HostContext) -> PluginResult<ROption<StorageBackendBox>>,
    }

    impl RootModule for PluginModRef {
        declare_root_module_statics! {PluginModRef}
        const BASE_NAME: &'static str = crate::PluginModRef::BASE_NAME;
        const NAME: &'static str = crate::PluginModRef::NAME;
        const VERSION_STRINGS: VersionStrings = VersionStrings { version: RStr::from_str("1.0.0") };
    }
}

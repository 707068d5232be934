//! `foreign-version`: a library that claims to be an allocd plugin built against a plugin ABI
//! newer than this allocd's (1.99.0), so the tests can check how the host refuses it.
//!
//! It depends on abi_stable alone, as a plugin built for a later allocd release would look
//! from this host's point of view: a root module with the right name ([`NAME`]) and a newer
//! version string. The host must refuse it by version, in one line naming both versions,
//! before trusting its layout; the module's contents are a stand-in and are never called.

use abi_stable::{
    StableAbi, declare_root_module_statics, export_root_module,
    library::RootModule,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RStr, RString},
};

/// The root module name every allocd plugin library exports.
pub const NAME: &str = "allocd_plugin";

/// The plugin ABI version this library pretends to be built against.
pub const FOREIGN_ABI_VERSION: &str = "1.99.0";

/// A stand-in for another release's root module.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ForeignModRef)))]
#[sabi(missing_field(panic))]
pub struct ForeignMod {
    #[sabi(last_prefix_field)]
    pub describe: extern "C" fn() -> RString,
}

impl RootModule for ForeignModRef {
    declare_root_module_statics! {ForeignModRef}
    const BASE_NAME: &'static str = NAME;
    const NAME: &'static str = NAME;
    const VERSION_STRINGS: VersionStrings = VersionStrings { version: RStr::from_str(FOREIGN_ABI_VERSION) };
}

extern "C" fn describe() -> RString {
    RString::from("foreign-version: a plugin from a later allocd release")
}

/// The exported root module.
#[export_root_module]
pub fn foreign_root() -> ForeignModRef {
    ForeignMod { describe }.leak_into_prefix()
}

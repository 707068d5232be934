//! Which plugin libraries this ABI version loads, checked the same way by the host and the
//! test kit.
//!
//! A library reports the ABI version it was built against (its root module's version
//! string). This ABI loads a library of the same major version and an equal or older minor:
//! an older library is checked against the layout of its own minor ([`crate::frozen`]) and
//! called through the current types, so the optional methods it lacks answer "not supported".
//! A library built against a newer minor (or another major) is refused in one line naming
//! both versions.

use std::collections::HashSet;

use abi_stable::library::{LibHeader, LibraryError, RootModule};
use abi_stable::type_layout::{TLData, TypeLayout};

use crate::{ABI_VERSION, PluginKinds, PluginModRef, frozen};

/// A `major.minor.patch` ABI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbiVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl AbiVersion {
    /// This crate's version: the ABI a host built with it speaks.
    pub fn current() -> Self {
        Self::parse(ABI_VERSION).expect("the crate version is major.minor.patch")
    }

    /// `None` unless `text` is `major.minor.patch` (a pre-release or build suffix is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
        let version = Self { major: parts.next()??, minor: parts.next()??, patch: parts.next()?? };
        parts.next().is_none().then_some(version)
    }
}

impl std::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Whether a library built against ABI `built_against` loads in this ABI; the error is the
/// reason, naming both versions.
pub fn check_version(built_against: &str) -> Result<AbiVersion, String> {
    let current = AbiVersion::current();
    let Some(plugin) = AbiVersion::parse(built_against) else {
        return Err(format!("reports plugin ABI version {built_against:?}, which is not major.minor.patch"));
    };
    let supported = format!("{}.0 to {}.{}", current.major, current.major, current.minor);
    if plugin.major != current.major {
        return Err(format!(
            "built against plugin ABI {plugin}, this allocd's is {current} (it loads {supported}); rebuild the plugin against ABI {}.{}",
            current.major, current.minor
        ));
    }
    if plugin.minor > current.minor {
        return Err(format!(
            "built against plugin ABI {plugin}, newer than this allocd's {current} (it loads {supported}); upgrade allocd or build the plugin against ABI {}.{} or older",
            current.major, current.minor
        ));
    }
    Ok(plugin)
}

/// Checks a library's version ([`check_version`]) and then its layout against the layout of
/// the minor it was built for, and returns its root module.
pub fn load_root_module(header: &LibHeader) -> Result<(AbiVersion, PluginModRef), String> {
    let built_against = header.version_strings().version.as_str();
    let plugin = check_version(built_against)?;
    let layout_error = |err: LibraryError| {
        let text = err.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        format!("ABI layout differs from plugin ABI {plugin} as this allocd knows it: {text}")
    };
    let module = if plugin.minor == AbiVersion::current().minor {
        header.init_root_module::<PluginModRef>().map_err(layout_error)?
    } else if plugin.minor == 0 {
        header.ensure_layout::<frozen::v1_0::PluginModRef>().map_err(layout_error)?;
        // SAFETY: the library's layout was just checked against ABI 1.0's, and the current
        // types extend 1.0's only with optional vtable methods after each `last_prefix_field`:
        // abi_stable's accessors see those missing from the library's vtables and run their
        // default body instead.
        unsafe { header.init_root_module_with_unchecked_layout::<PluginModRef>() }.map_err(layout_error)?
    } else {
        return Err(format!("built against plugin ABI {plugin}, whose layout this allocd does not keep"));
    };
    Ok((plugin, module))
}

/// A method a library may lack: added in a minor version, with a "not supported" default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalMethod {
    /// The interface (`MetricsProvider`, `StorageBackend`).
    pub interface: &'static str,
    /// The kind of plugin that interface is.
    pub kind: PluginKinds,
    pub method: &'static str,
    /// The ABI version that added it.
    pub since: &'static str,
}

/// Every optional method of this ABI, oldest first.
pub const OPTIONAL_METHODS: &[OptionalMethod] = &[
    OptionalMethod { interface: "MetricsProvider", kind: PluginKinds::METRICS, method: "task_labels", since: "1.1" },
    OptionalMethod { interface: "StorageBackend", kind: PluginKinds::STORAGE, method: "alloc_index", since: "1.1" },
];

/// The optional methods whose slots the library's own vtables have (read from the layout it
/// exports). A library built with the SDK has every slot of its ABI version, and a slot whose
/// method the author left out answers "not supported" at run time.
pub fn provided_methods(header: &LibHeader) -> Vec<OptionalMethod> {
    let Some(root) = header.layout() else { return Vec::new() };
    let mut provided = Vec::new();
    let mut seen = HashSet::new();
    let mut pending: Vec<&'static TypeLayout> = vec![root];
    while let Some(layout) = pending.pop() {
        if !seen.insert(layout as *const TypeLayout) {
            continue;
        }
        if let TLData::PrefixType(prefix) = layout.data() {
            let module = layout.mod_path().to_string();
            for method in OPTIONAL_METHODS {
                let in_interface = module.ends_with(&format!("{}_trait", method.interface));
                if in_interface && prefix.fields.iter().any(|field| field.name() == method.method) {
                    provided.push(*method);
                }
            }
        }
        pending.extend(layout.shared_vars().type_layouts().iter().map(|layout| layout()));
    }
    OPTIONAL_METHODS.iter().filter(|method| provided.contains(method)).copied().collect()
}

/// The root module name every plugin library exports.
pub fn module_name() -> &'static str {
    PluginModRef::NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_major_minor_patch() {
        assert_eq!(AbiVersion::parse("1.2.3"), Some(AbiVersion { major: 1, minor: 2, patch: 3 }));
        assert_eq!(AbiVersion::parse("1.2.3-rc.1"), Some(AbiVersion { major: 1, minor: 2, patch: 3 }));
        for bad in ["", "1", "1.2", "1.2.3.4", "a.b.c", "1.-2.3"] {
            assert_eq!(AbiVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn same_major_and_an_older_or_equal_minor_load() {
        let current = AbiVersion::current();
        assert_eq!(check_version(ABI_VERSION), Ok(current));
        assert!(check_version(&format!("{}.0.0", current.major)).is_ok());
        assert!(check_version(&format!("{}.{}.99", current.major, current.minor)).is_ok());
    }

    #[test]
    fn a_newer_minor_or_another_major_is_refused_naming_both_versions() {
        let current = AbiVersion::current();
        let newer = format!("{}.{}.0", current.major, current.minor + 1);
        let refusal = check_version(&newer).unwrap_err();
        assert!(
            refusal.contains(&format!("built against plugin ABI {newer}, newer than this allocd's {current}")),
            "{refusal}"
        );
        let refusal = check_version("0.2.0").unwrap_err();
        assert!(refusal.contains(&format!("built against plugin ABI 0.2.0, this allocd's is {current}")), "{refusal}");
        assert!(check_version("one").unwrap_err().contains("not major.minor.patch"));
    }
}

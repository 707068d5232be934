//! Opening plugin libraries and checking, in one readable line each, that they are allocd
//! plugins this host can load.
//!
//! Each library is opened with `lib_header_from_path` (never `load_from_file`, which caches one
//! library per root-module type); the ABI crate's `compat` then checks its ABI version (same
//! major, a minor no newer than this host's) and its layout against that minor's, the same
//! checks the plugin test kit runs. Libraries are never unloaded.

use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, lib_header_from_path};
use allocd_plugin_abi::compat::{self, AbiVersion, OptionalMethod};
use allocd_plugin_abi::{PluginDescriptor, PluginModRef};

/// A library whose root module passed every check.
pub struct OpenedLibrary {
    pub path: PathBuf,
    pub module: PluginModRef,
    pub descriptor: PluginDescriptor,
    /// The ABI version it was built against.
    pub abi_version: AbiVersion,
}

/// What `allocd plugin inspect` shows, loadable or not.
pub struct Inspection {
    pub built_against: Option<String>,
    /// The optional ABI methods the library's vtables have.
    pub optional_methods: Vec<OptionalMethod>,
    pub result: Result<OpenedLibrary, String>,
}

/// Library file name of the plugin called `name` (`liballocd_plugin_<name>.so`).
pub fn library_file_name(name: &str) -> String {
    format!("liballocd_plugin_{}.so", name.replace('-', "_"))
}

/// Opens and checks a plugin library; the error is one line naming the file.
pub fn open(path: &Path) -> Result<OpenedLibrary, String> {
    inspect(path).result
}

/// Opens a library and reports what it is, whether or not this host can use it.
pub fn inspect(path: &Path) -> Inspection {
    let shown = path.display();
    if !path.exists() {
        let result = Err(format!("{shown}: no such plugin library"));
        return Inspection { built_against: None, optional_methods: Vec::new(), result };
    }
    let header = match lib_header_from_path(path) {
        Ok(header) => header,
        Err(LibraryError::GetSymbolError { .. }) => {
            let message = format!("{shown}: not an allocd plugin (no abi_stable root module)");
            return Inspection { built_against: None, optional_methods: Vec::new(), result: Err(message) };
        }
        Err(err) => {
            let message = format!("{shown}: cannot be loaded: {}", reason(&err));
            return Inspection { built_against: None, optional_methods: Vec::new(), result: Err(message) };
        }
    };
    let consts = header.root_mod_consts();
    let built_against = consts.version_strings().version.as_str().to_string();
    let module_name = consts.name().to_string();
    let check = || -> Result<OpenedLibrary, String> {
        if module_name != compat::module_name() {
            return Err(format!("{shown}: not an allocd plugin (it exports the {module_name:?} module)"));
        }
        let (abi_version, module) = compat::load_root_module(header).map_err(|reason| format!("{shown}: {reason}"))?;
        let descriptor = (module.descriptor())();
        Ok(OpenedLibrary { path: path.to_path_buf(), module, descriptor, abi_version })
    };
    let result = check();
    let optional_methods = if result.is_ok() { compat::provided_methods(header) } else { Vec::new() };
    Inspection { built_against: Some(built_against), optional_methods, result }
}

/// The whole of a loader error on one line. For a library the dynamic loader refused, that is
/// its own text (`dlerror`: a missing dependency, not an ELF file), without abi_stable's framing.
fn reason(err: &LibraryError) -> String {
    let text = match err {
        LibraryError::OpenError { err, .. } => err.to_string(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

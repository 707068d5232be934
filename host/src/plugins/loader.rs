//! Opening plugin libraries and checking, in one readable line each, that they are allocd
//! plugins built against this host's plugin-api.
//!
//! Each library is opened with `lib_header_from_path` + `init_root_module` (never
//! `load_from_file`, which caches one library per root-module type). Libraries are never
//! unloaded. Versions must match exactly: plugins are built in lockstep with the host.

use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use allocd_plugin_api::{PLUGIN_API_VERSION, PluginDescriptor, PluginModRef};

/// A library whose root module passed every check.
pub struct OpenedLibrary {
    pub path: PathBuf,
    pub module: PluginModRef,
    pub descriptor: PluginDescriptor,
}

/// What `allocd plugin inspect` shows, loadable or not.
pub struct Inspection {
    pub built_against: Option<String>,
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
        return Inspection { built_against: None, result: Err(format!("{shown}: no such plugin library")) };
    }
    let header = match lib_header_from_path(path) {
        Ok(header) => header,
        Err(LibraryError::GetSymbolError { .. }) => {
            let message = format!("{shown}: not an allocd plugin (no abi_stable root module)");
            return Inspection { built_against: None, result: Err(message) };
        }
        Err(err) => {
            let message = format!("{shown}: cannot be loaded: {}", reason(&err));
            return Inspection { built_against: None, result: Err(message) };
        }
    };
    let consts = header.root_mod_consts();
    let built_against = consts.version_strings().version.as_str().to_string();
    let module_name = consts.name().to_string();
    let check = || -> Result<OpenedLibrary, String> {
        if module_name != PluginModRef::NAME {
            return Err(format!("{shown}: not an allocd plugin (it exports the {module_name:?} module)"));
        }
        if built_against != PLUGIN_API_VERSION {
            return Err(format!(
                "{shown}: built against allocd-plugin-api {built_against}, this allocd has {PLUGIN_API_VERSION}; rebuild the plugin with this allocd"
            ));
        }
        let module = header.init_root_module::<PluginModRef>().map_err(|err| {
            format!("{shown}: ABI layout differs from this allocd's plugin-api {PLUGIN_API_VERSION}: {}", reason(&err))
        })?;
        let descriptor = (module.descriptor())();
        Ok(OpenedLibrary { path: path.to_path_buf(), module, descriptor })
    };
    let result = check();
    Inspection { built_against: Some(built_against), result }
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

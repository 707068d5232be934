//! `allocd plugin inspect FILE`: what a plugin library is and whether this allocd loads it.

use std::path::Path;

use allocd_plugin_abi::ABI_VERSION;
use allocd_plugin_abi::compat::OPTIONAL_METHODS;

use crate::plugins::loader;

/// The report, and whether the library is loadable.
pub fn report(path: &Path) -> (String, bool) {
    let inspection = loader::inspect(path);
    let mut out = format!("file:            {}\n", path.display());
    if let Some(version) = &inspection.built_against {
        out.push_str(&format!("plugin ABI:      {version} (this allocd: {ABI_VERSION})\n"));
    }
    match &inspection.result {
        Ok(library) => {
            let d = &library.descriptor;
            out.push_str(&format!("name:            {}\n", d.name));
            out.push_str(&format!("version:         {}\n", d.version));
            out.push_str(&format!("kinds:           {}\n", d.kinds.names().join(", ")));
            for method in OPTIONAL_METHODS.iter().filter(|method| d.kinds.contains(method.kind)) {
                let provided = inspection.optional_methods.contains(method);
                let answer = if provided { "provided" } else { "not provided (answers \"not supported\")" };
                let name = format!("{}.{}", method.interface, method.method);
                out.push_str(&format!("optional:        {name} (ABI {}): {answer}\n", method.since));
            }
            out.push_str("loadable:        yes\n");
        }
        Err(reason) => out.push_str(&format!("loadable:        no: {reason}\n")),
    }
    (out, inspection.result.is_ok())
}

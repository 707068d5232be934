//! The allocation index (`StoragePlugin::alloc_index`) of a backend whose allocations are the
//! entries of one directory (`local-disk`'s alloc dir, `overlay`'s upper dir).
//!
//! The generation is the directory's modification time in nanoseconds: creating, renaming or
//! removing an entry changes it. The kernel stamps it from a coarse clock, so two changes a few
//! milliseconds apart may share one stamp; an index is therefore only answered "unchanged" when
//! the stamp is more than [`SETTLED`] old, when no later change can share it any more.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RNone, RSome};

use crate::abi::{AllocIndex, AllocInfo, IndexedAlloc, PluginError};

/// How old a stamp must be before no further change can share it (well above the coarse
/// clock's tick).
pub const SETTLED: Duration = Duration::from_secs(1);

/// The index of the allocations in `dir`: `None` when `known_generation` is still current,
/// else each allocation `list` returns with what `info` says of it (those it says nothing of,
/// deleted meanwhile, are left out).
pub fn dir_index(
    dir: &Path,
    known_generation: u64,
    list: impl FnOnce() -> Result<Vec<String>, PluginError>,
    info: impl Fn(&str) -> Result<Option<AllocInfo>, PluginError>,
) -> Result<AllocIndex, PluginError> {
    let meta = std::fs::metadata(dir).map_err(|e| PluginError::io("stat", dir, &e))?;
    let generation = (meta.mtime() as u64).saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec() as u64);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let settled = now.saturating_sub(generation) > SETTLED.as_nanos() as u64;
    if generation == known_generation && settled {
        return Ok(AllocIndex { generation, allocs: RNone });
    }
    let mut allocs = Vec::new();
    for alloc_id in list()? {
        if let Some(info) = info(&alloc_id)? {
            allocs.push(IndexedAlloc { alloc_id: alloc_id.into(), info });
        }
    }
    Ok(AllocIndex { generation, allocs: RSome(allocs.into()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(index: &AllocIndex) -> Option<Vec<String>> {
        index.allocs.as_ref().map(|allocs| allocs.iter().map(|a| a.alloc_id.to_string()).collect()).into_option()
    }

    #[test]
    fn a_settled_generation_is_unchanged_and_a_change_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let list = || Ok(vec!["a".to_string(), "gone".to_string()]);
        let info = |id: &str| Ok((id != "gone").then(AllocInfo::default));
        let first = dir_index(dir.path(), 0, list, info).unwrap();
        assert_eq!(ids(&first), Some(vec!["a".to_string()]));
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        assert_eq!(ids(&dir_index(dir.path(), first.generation, list, info).unwrap()), None, "settled and unchanged");
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let changed = dir_index(dir.path(), first.generation, list, info).unwrap();
        assert_ne!(changed.generation, first.generation);
        assert!(ids(&changed).is_some(), "a change is listed");
        assert!(
            ids(&dir_index(dir.path(), changed.generation, list, info).unwrap()).is_some(),
            "a fresh stamp is relisted"
        );
    }
}

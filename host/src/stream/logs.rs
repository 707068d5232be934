//! Task logs: `alloc/logs/<task>.<stdout|stderr>.<n>`, Nomad's start selection
//! (`findClosest`), and walking rotated files while streaming (`spec/nomad-fs.md` §11).

use allocd_plugin_abi::FileInfo;

use super::follow::{Change, Cursor, Source, StreamEnd, Woken, wait};
use super::frame::Sink;
use crate::api::wire::go_quote;

/// The directory holding task logs.
pub const LOG_DIR: &str = "alloc/logs";

/// One retained log file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogFile {
    pub index: u64,
    pub size: u64,
}

/// The log files of `task`/`log_type` in a listing of `alloc/logs`, sorted by index.
pub fn log_files(entries: &[FileInfo], task: &str, log_type: &str) -> Result<Vec<LogFile>, String> {
    let prefix = format!("{task}.{log_type}.");
    let mut files = Vec::new();
    for entry in entries.iter().filter(|e| !e.is_dir) {
        let Some(suffix) = entry.name.as_str().strip_prefix(&prefix) else { continue };
        let index = suffix.parse::<u64>().map_err(|_| {
            format!("failed to convert {0} to a log index: strconv.Atoi: parsing {0}: invalid syntax", go_quote(suffix))
        })?;
        files.push(LogFile { index, size: entry.size.max(0) as u64 });
    }
    files.sort_by_key(|f| f.index);
    Ok(files)
}

/// Nomad's `findClosest`: the position in `files` and the offset to start at. `desired`
/// is the wanted index (`None` = the newest); `offset` may be negative (back from the end).
pub fn find_closest(files: &[LogFile], desired: Option<u64>, offset: i64) -> Option<(usize, u64)> {
    let last = files.len().checked_sub(1)?;
    let mut at = desired.and_then(|want| files.iter().position(|f| f.index >= want)).unwrap_or(last);
    let mut offset = offset;
    loop {
        let size = files[at].size as i64;
        if offset >= 0 {
            if offset <= size {
                return Some((at, offset as u64));
            }
            if at == last {
                return Some((at, size as u64));
            }
            offset -= size;
            at += 1;
        } else {
            if size + offset >= 0 {
                return Some((at, (size + offset) as u64));
            }
            if at == 0 {
                return Some((0, 0));
            }
            offset += size;
            at -= 1;
        }
    }
}

/// Path of one log file inside the allocation.
pub fn log_path(task: &str, log_type: &str, index: u64) -> String {
    format!("{LOG_DIR}/{task}.{log_type}.{index}")
}

/// Lists the log files now present.
async fn list(source: &Source, task: &str, log_type: &str) -> Result<Vec<LogFile>, StreamEnd> {
    let entries = source
        .backend()
        .list(&source.alloc_id, LOG_DIR)
        .await
        .map_err(|f| StreamEnd::Failed(format!("failed to list entries: {}", f.message())))?;
    log_files(&entries, task, log_type).map_err(StreamEnd::Failed)
}

/// The smallest retained index above `index` (gaps are skipped).
fn next_after(files: &[LogFile], index: u64) -> Option<u64> {
    files.iter().map(|f| f.index).find(|&i| i > index)
}

/// Streams logs from file `index` at `offset`, moving on through rotations; without
/// `follow` it ends at the newest file's end.
pub async fn stream(
    source: &Source,
    task: &str,
    log_type: &str,
    mut index: u64,
    mut offset: u64,
    follow: bool,
    sink: &mut Sink,
) -> Result<(), StreamEnd> {
    let dir_watch = source.subscribe_dir(LOG_DIR).await;
    loop {
        let path = log_path(task, log_type, index);
        let mut cursor = match Cursor::open(source, &path, &path, offset).await {
            Ok(cursor) => Some(cursor),
            Err(failure) if failure.kind() == allocd_plugin_abi::ErrorKind::NOT_FOUND => None,
            Err(failure) => return Err(failure.into()),
        };
        // Read this file; at its end move on to a newer one, or wait. The directory is listed
        // again only when its names may have changed, not after every append.
        let mut names_may_have_changed = true;
        loop {
            let before = cursor.as_ref().map(|c| c.offset);
            if let Some(cursor) = cursor.as_mut() {
                cursor.drain(sink, &mut None).await?;
            }
            let newer =
                if names_may_have_changed { next_after(&list(source, task, log_type).await?, index) } else { None };
            if let Some(next) = newer {
                if let Some(cursor) = cursor.as_mut() {
                    cursor.drain(sink, &mut None).await?; // bytes written just before rotation
                }
                index = next;
                offset = 0;
                break;
            }
            if !follow {
                return Ok(());
            }
            if let Some(open) = cursor.as_mut()
                && Some(open.offset) == before
            {
                match open.check(sink).await? {
                    Change::Deleted => cursor = None,
                    Change::Truncated => continue,
                    Change::None => {}
                }
            }
            names_may_have_changed = match cursor.as_ref() {
                Some(open) => open.wait(sink, Some(&dir_watch)).await? == Woken::Also,
                None => {
                    wait(sink, &dir_watch, None).await?;
                    true
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[(u64, u64)]) -> Vec<LogFile> {
        sizes.iter().map(|&(index, size)| LogFile { index, size }).collect()
    }

    /// Nomad's `TestFS_findClosest` table.
    #[test]
    fn find_closest_matches_nomads_table() {
        let stdout = files(&[(0, 100), (1, 100), (2, 100), (3, 100)]);
        let pick = |desired, offset| {
            let (at, offset) = find_closest(&stdout, desired, offset).unwrap();
            (stdout[at].index, offset)
        };
        assert_eq!(pick(Some(0), -100), (0, 0));
        assert_eq!(pick(Some(1), -1000), (0, 0));
        assert_eq!(pick(Some(1), 10), (1, 10));
        assert_eq!(pick(Some(1), 110), (2, 10));
        assert_eq!(pick(None, i64::MAX), (3, 100));
        assert_eq!(pick(None, -10), (3, 90));
        let stderr = files(&[(0, 100), (1, 100), (2, 100)]);
        assert_eq!(find_closest(&stderr, None, 0).map(|(at, off)| (stderr[at].index, off)), Some((2, 0)));
        assert_eq!(find_closest(&[], None, 0), None);
    }

    #[test]
    fn log_files_filter_sort_and_reject_bad_suffixes() {
        let entry = |name: &str, size| FileInfo { name: name.into(), size, ..Default::default() };
        let entries = [
            entry("web.stdout.12", 5),
            entry("web.stdout.2", 1),
            entry(".web.stdout.fifo", 0),
            entry("web.stderr.0", 3),
        ];
        assert_eq!(log_files(&entries, "web", "stdout").unwrap(), files(&[(2, 1), (12, 5)]));
        let bad = [entry("web.stdout.x", 1)];
        assert!(log_files(&bad, "web", "stdout").unwrap_err().starts_with("failed to convert \"x\" to a log index"));
    }
}

//! Reading pseudo-files (cgroupfs, /proc) cheaply and safely.
//!
//! Syscalls dominate the cost of sampling: on this project's VM an `open`+`read`+`close` of a
//! cgroupfs file costs ~10 µs, a `pread` on a file kept open ~1.5 µs. So:
//! * [`Reader`] reads into one reused buffer and builds paths in one reused `PathBuf` (no
//!   allocation per file once warmed up, no `fstat` size probe: pseudo-files report 0 or 4096);
//!   a short read ends a file that is one record (everything but `cgroup.procs`), saving the
//!   read that would return 0.
//! * [`OpenFiles`] keeps each task's cgroup files open between samples and re-reads them with
//!   `pread(fd, 0)`, which makes the kernel regenerate a seq_file's contents — except v1's
//!   `cgroup.procs`, whose pid list the kernel caches per open file, so it is reopened every
//!   time ([`CgFile::reopened`]). An [`FdBudget`] (a quarter of `RLIMIT_NOFILE`) bounds how
//!   many stay open; beyond it files are opened per read. Optional files found missing are
//!   remembered as absent for the cgroup's lifetime.
//! * [`TaskFiles`] is the per-task view: it turns every problem into `None` (the caller
//!   reports zeros), logs each kind of problem once through [`Warnings`], notices when the
//!   task's cgroup disappeared while it was being read (so the task is skipped), and reopens a
//!   kept file whose cgroup was removed and recreated under the same name (a task restart).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::warn::{Problem, Warnings};

/// A reusable whole-file reader.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    len: usize,
    path: PathBuf,
}

impl Default for Reader {
    fn default() -> Self {
        Self { buf: vec![0; 8192], len: 0, path: PathBuf::with_capacity(256) }
    }
}

impl Reader {
    /// Reads `dir/name` (open, read, close).
    pub fn read(&mut self, dir: &Path, name: &str) -> io::Result<&[u8]> {
        self.set_path(dir, name);
        let file = File::open(&self.path)?;
        self.fill(&file, is_multi_record(name), false)
    }

    /// Reads `proc_root/<pid>/name` (open, read, close).
    pub fn read_pid(&mut self, proc_root: &Path, pid: u32, name: &str) -> io::Result<&[u8]> {
        let path = self.path.as_mut_os_string();
        path.clear();
        path.push(proc_root.as_os_str());
        path.push("/");
        push_decimal(path, pid);
        path.push("/");
        path.push(name);
        let file = File::open(&self.path)?;
        self.fill(&file, false, false)
    }

    /// Opens `dir/name` to be kept.
    pub fn open(&mut self, dir: &Path, name: &str) -> io::Result<File> {
        self.set_path(dir, name);
        File::open(&self.path)
    }

    /// Re-reads a kept file from offset 0.
    pub fn reread(&mut self, file: &File, name: &str) -> io::Result<&[u8]> {
        self.fill(file, is_multi_record(name), true)
    }

    /// The path of the last open (for messages).
    pub fn last_path(&self) -> &Path {
        &self.path
    }

    /// What the last successful read returned.
    pub fn last_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Sets the path [`Self::last_path`] reports to `dir/name`.
    pub fn set_path(&mut self, dir: &Path, name: &str) {
        let path = self.path.as_mut_os_string();
        path.clear();
        path.push(dir.as_os_str());
        path.push("/");
        path.push(name);
    }

    /// Reads `file` whole from offset 0 (`pread` when `positioned`, else from the current
    /// offset of a fresh file). A read shorter than asked ends a single-record file: seq_file
    /// hands out a whole record or nothing, regular files are at their end.
    fn fill(&mut self, mut file: &File, multi_record: bool, positioned: bool) -> io::Result<&[u8]> {
        self.len = 0;
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                // A huge file (a cgroup.procs with many thousand pids) grows the buffer, which
                // is then kept for later reads.
                let grown = (self.buf.len() * 2).max(4096);
                self.buf.resize(grown, 0);
            }
            let room = &mut self.buf[len..];
            let asked = room.len();
            let result = if positioned { file.read_at(room, len as u64) } else { file.read(room) };
            match result {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    if n < asked && !multi_record {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.len = len;
        Ok(&self.buf[..len])
    }
}

/// seq_files of many records may return less than asked before their end.
fn is_multi_record(name: &str) -> bool {
    name == "cgroup.procs"
}

fn push_decimal(out: &mut OsString, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

/// Whether a file's absence is worth a warning.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    /// Every task cgroup of this kind has it (for example `memory.stat`): warn when missing.
    Required,
    /// Depends on kernel or boot options (memsw, kmem, `memory.peak`, `memory.swap.current`):
    /// missing silently reads as 0, as in libcontainer.
    Optional,
}

/// One file of a task cgroup: its name, its slot in the task's [`OpenFiles`], its need, and
/// whether re-reading a kept descriptor gives fresh contents.
#[derive(Clone, Copy, Debug)]
pub struct CgFile {
    pub name: &'static str,
    pub slot: usize,
    pub need: Need,
    pub keep: bool,
}

impl CgFile {
    pub const fn required(name: &'static str, slot: usize) -> Self {
        Self { name, slot, need: Need::Required, keep: true }
    }
    pub const fn optional(name: &'static str, slot: usize) -> Self {
        Self { name, slot, need: Need::Optional, keep: true }
    }
    /// Opened for every read. cgroup v1's `cgroup.procs` needs this: the kernel caches its
    /// pid list per open file (`cgroup_pidlist_start`), so `pread(fd, 0)` can list processes
    /// that have exited.
    pub const fn reopened(self) -> Self {
        Self { keep: false, ..self }
    }
}

/// How many cgroup files may stay open across all tasks.
#[derive(Debug)]
pub struct FdBudget {
    limit: usize,
    used: usize,
}

impl FdBudget {
    pub fn new(limit: usize) -> Self {
        Self { limit, used: 0 }
    }

    /// A quarter of the soft `RLIMIT_NOFILE`: the agent keeps most descriptors for
    /// connections, other plugins and allocation files.
    pub fn from_rlimit() -> Self {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let soft = if ok { limit.rlim_cur } else { 1024 };
        Self::new(usize::try_from(soft / 4).unwrap_or(usize::MAX).min(1 << 20))
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Gives back the descriptors of a task's files being dropped.
    pub fn release(&mut self, files: &mut OpenFiles) {
        self.used = self.used.saturating_sub(files.close_all());
    }
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Unopened,
    Open(File),
    /// An optional file this cgroup does not have.
    Absent,
}

/// A task's cgroup files kept between samples, by [`CgFile::slot`].
#[derive(Debug, Default)]
pub struct OpenFiles {
    slots: Vec<Slot>,
    open: usize,
}

impl OpenFiles {
    /// Closes everything; returns how many descriptors were open.
    pub fn close_all(&mut self) -> usize {
        self.slots.clear();
        std::mem::take(&mut self.open)
    }

    pub fn open_count(&self) -> usize {
        self.open
    }

    fn close(&mut self, index: usize) {
        let was_open = self.slots.get_mut(index).is_some_and(|slot| matches!(std::mem::take(slot), Slot::Open(_)));
        if was_open {
            self.open -= 1;
        }
    }

    fn slot(&mut self, index: usize) -> &mut Slot {
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        &mut self.slots[index]
    }
}

/// The files of one task cgroup, read with the problem handling described in the module docs.
pub struct TaskFiles<'a> {
    reader: &'a mut Reader,
    warnings: &'a mut Warnings,
    files: &'a mut OpenFiles,
    budget: &'a mut FdBudget,
    vanished: bool,
}

impl<'a> TaskFiles<'a> {
    pub fn new(
        reader: &'a mut Reader,
        warnings: &'a mut Warnings,
        files: &'a mut OpenFiles,
        budget: &'a mut FdBudget,
    ) -> Self {
        Self { reader, warnings, files, budget, vanished: false }
    }

    /// True once a read showed that the task's cgroup directory is gone: the task ended while
    /// it was being sampled, and it is left out of this sample. Later reads are skipped.
    pub fn vanished(&self) -> bool {
        self.vanished
    }

    /// Reads and parses `file` in `dir`; `None` (after warning once, where that is warranted)
    /// when it is missing, unreadable or garbled.
    pub fn get<T>(&mut self, dir: &Path, file: &CgFile, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        if self.vanished {
            return None;
        }
        let Self { reader, warnings, files, budget, vanished } = self;
        let err = match load(reader, files, budget, dir, file) {
            Load::Absent => return None,
            Load::Failed(err) => err,
            Load::Read => {
                let bytes = reader.last_bytes();
                if let Some(value) = parse(bytes) {
                    return Some(value);
                }
                if !warnings.reported(Problem::Garbled, file.name) {
                    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
                    reader.set_path(dir, file.name);
                    let path = reader.last_path();
                    warnings.warn(Problem::Garbled, file.name, || {
                        format!("cgroup: cannot parse {} ({shown:?}); reporting 0 (logged once)", path.display())
                    });
                }
                return None;
            }
        };
        // ENODEV: the cgroup was removed between open and read.
        if err.raw_os_error() == Some(libc::ENODEV) || (err.kind() == io::ErrorKind::NotFound && !dir.is_dir()) {
            *vanished = true;
            return None;
        }
        let path = reader.last_path();
        if err.kind() == io::ErrorKind::NotFound {
            match file.need {
                Need::Required => {
                    warnings.warn(Problem::Missing, file.name, || {
                        format!("cgroup: {} does not exist; reporting 0 (logged once)", path.display())
                    });
                }
                Need::Optional => *files.slot(file.slot) = Slot::Absent,
            }
        } else {
            warnings.warn(Problem::Unreadable, file.name, || {
                format!("cgroup: cannot read {}: {err}; reporting 0 (logged once)", path.display())
            });
        }
        None
    }

    /// Reads the pid list `file` (a `cgroup.procs`) of `dir` into `out` (cleared first); false
    /// when it could not be read whole (missing, unreadable or garbled).
    pub fn procs(&mut self, dir: &Path, file: &CgFile, out: &mut Vec<u32>) -> bool {
        out.clear();
        self.get(dir, file, |bytes| crate::parse::pids(bytes, out).then_some(())).is_some()
    }
}

enum Load {
    Read,
    Absent,
    Failed(io::Error),
}

/// Reads `file` into `reader`: through the kept descriptor if there is one, else by opening
/// it (and keeping it while the budget allows).
fn load(reader: &mut Reader, files: &mut OpenFiles, budget: &mut FdBudget, dir: &Path, file: &CgFile) -> Load {
    if !file.keep {
        return match reader.read(dir, file.name) {
            Ok(_) => Load::Read,
            Err(err) => Load::Failed(err),
        };
    }
    let kept = match files.slot(file.slot) {
        Slot::Absent => return Load::Absent,
        Slot::Open(handle) => Some(reader.reread(handle, file.name).is_ok()),
        Slot::Unopened => None,
    };
    match kept {
        Some(true) => return Load::Read,
        Some(false) => {
            // The cgroup was removed (ENODEV), perhaps recreated under the same name: reopen.
            files.close(file.slot);
            budget.used = budget.used.saturating_sub(1);
        }
        None => {}
    }
    if budget.used >= budget.limit {
        return match reader.read(dir, file.name) {
            Ok(_) => Load::Read,
            Err(err) => Load::Failed(err),
        };
    }
    let handle = match reader.open(dir, file.name) {
        Ok(handle) => handle,
        Err(err) => return Load::Failed(err),
    };
    if let Err(err) = reader.reread(&handle, file.name) {
        return Load::Failed(err);
    }
    *files.slot(file.slot) = Slot::Open(handle);
    files.open += 1;
    budget.used += 1;
    Load::Read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_files_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let big = "x".repeat(20_000);
        std::fs::write(dir.path().join("big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), "42\n").unwrap();
        let mut reader = Reader::default();
        assert_eq!(reader.read(dir.path(), "big").unwrap(), big.as_bytes());
        assert_eq!(reader.read(dir.path(), "small").unwrap(), b"42\n");
        assert_eq!(reader.last_path(), dir.path().join("small"));
        assert!(reader.read(dir.path(), "none").is_err());
    }

    #[test]
    fn pid_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1207")).unwrap();
        std::fs::write(dir.path().join("1207/statm"), "1 2 3").unwrap();
        let mut reader = Reader::default();
        assert_eq!(reader.read_pid(dir.path(), 1207, "statm").unwrap(), b"1 2 3");
        assert_eq!(reader.last_path(), dir.path().join("1207/statm"));
        std::fs::create_dir(dir.path().join("0")).unwrap();
        std::fs::write(dir.path().join("0/x"), "").unwrap();
        assert_eq!(reader.read_pid(dir.path(), 0, "x").unwrap(), b"");
    }

    const CURRENT: CgFile = CgFile::required("memory.current", 0);
    const PEAK: CgFile = CgFile::optional("memory.peak", 1);
    const STAT: CgFile = CgFile::required("memory.stat", 2);
    const PROCS: CgFile = CgFile::required("cgroup.procs", 3);

    struct Parts {
        reader: Reader,
        warnings: Warnings,
        open: OpenFiles,
        budget: FdBudget,
    }

    impl Parts {
        fn new(budget: usize) -> Self {
            Self {
                reader: Reader::default(),
                warnings: Warnings::default(),
                open: OpenFiles::default(),
                budget: FdBudget::new(budget),
            }
        }
        fn files(&mut self) -> TaskFiles<'_> {
            TaskFiles::new(&mut self.reader, &mut self.warnings, &mut self.open, &mut self.budget)
        }
    }

    #[test]
    fn problems_become_none_and_warnings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "oops\n").unwrap();
        let mut parts = Parts::new(8);
        let mut files = parts.files();
        assert_eq!(files.get(dir.path(), &CURRENT, crate::parse::single), None);
        assert_eq!(files.get(dir.path(), &PEAK, crate::parse::single), None);
        assert_eq!(files.get(dir.path(), &STAT, crate::parse::single), None);
        assert!(!files.vanished());
        assert!(parts.warnings.reported(Problem::Garbled, "memory.current"));
        assert!(parts.warnings.reported(Problem::Missing, "memory.stat"));
        assert!(!parts.warnings.reported(Problem::Missing, "memory.peak"));
    }

    #[test]
    fn kept_files_are_reread_fresh_and_absent_optional_files_remembered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "1\n").unwrap();
        let mut parts = Parts::new(8);
        assert_eq!(parts.files().get(dir.path(), &CURRENT, crate::parse::single), Some(1));
        assert_eq!(parts.files().get(dir.path(), &PEAK, crate::parse::single), None);
        assert_eq!((parts.open.open_count(), parts.budget.used()), (1, 1));
        // Rewritten in place (as the kernel regenerates a seq_file): the kept fd sees it.
        std::fs::write(dir.path().join("memory.current"), "22\n").unwrap();
        assert_eq!(parts.files().get(dir.path(), &CURRENT, crate::parse::single), Some(22));
        // An optional file missing once stays absent for this cgroup (no more opens).
        std::fs::write(dir.path().join("memory.peak"), "5\n").unwrap();
        assert_eq!(parts.files().get(dir.path(), &PEAK, crate::parse::single), None);
        assert_eq!(parts.open.open_count(), 1);
        parts.budget.release(&mut parts.open);
        assert_eq!((parts.open.open_count(), parts.budget.used()), (0, 0));
        // Released: a fresh start opens it again.
        assert_eq!(parts.files().get(dir.path(), &PEAK, crate::parse::single), Some(5));
    }

    #[test]
    fn beyond_the_budget_files_are_read_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "1\n").unwrap();
        std::fs::write(dir.path().join("memory.stat"), "2\n").unwrap();
        let mut parts = Parts::new(1);
        for _ in 0..3 {
            assert_eq!(parts.files().get(dir.path(), &CURRENT, crate::parse::single), Some(1));
            assert_eq!(parts.files().get(dir.path(), &STAT, crate::parse::single), Some(2));
            assert_eq!((parts.open.open_count(), parts.budget.used()), (1, 1));
        }
        assert!(FdBudget::from_rlimit().limit >= 1);
    }

    #[test]
    fn a_removed_directory_marks_the_task_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let mut parts = Parts::new(8);
        let mut files = parts.files();
        assert_eq!(files.get(&gone, &STAT, crate::parse::single), None);
        assert!(files.vanished());
        assert!(!parts.warnings.reported(Problem::Missing, "memory.stat"), "a vanished task is not a problem");
    }

    #[test]
    fn procs_keeps_the_good_lines_of_a_garbled_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "12\nbad\n13\n").unwrap();
        let mut parts = Parts::new(8);
        let mut pids = vec![99];
        parts.files().procs(dir.path(), &PROCS, &mut pids);
        assert_eq!(pids, [12, 13]);
        assert!(parts.warnings.reported(Problem::Garbled, "cgroup.procs"));
    }

    #[test]
    fn garbled_message_names_the_kept_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.current"), "1\n").unwrap();
        std::fs::write(dir.path().join("memory.stat"), "2\n").unwrap();
        let mut parts = Parts::new(8);
        parts.files().get(dir.path(), &CURRENT, crate::parse::single);
        parts.files().get(dir.path(), &STAT, crate::parse::single);
        std::fs::write(dir.path().join("memory.current"), "x\n").unwrap();
        assert_eq!(parts.files().get(dir.path(), &CURRENT, crate::parse::single), None);
        assert_eq!(parts.reader.last_path(), dir.path().join("memory.current"));
    }
}

//! The sandbox on real trees: escapes, links that stay inside, secrets through links, special
//! files refused without blocking, and the walk answering as openat2 does.

use std::os::unix::fs::{FileExt, symlink};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::author::FilePlugin;
use crate::files::{self, LocalFile};

const BOTH: [Resolver; 2] = [Resolver::Openat2, Resolver::Walk];

/// A root with links in and out, and the outside dir they point to.
fn tree() -> (tempfile::TempDir, tempfile::TempDir, AllocRoot) {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("alloc/data")).unwrap();
    std::fs::create_dir_all(p.join("web/secrets")).unwrap();
    std::fs::write(p.join("alloc/data/file"), b"inside").unwrap();
    std::fs::write(p.join("web/secrets/token"), b"s").unwrap();
    std::fs::write(outside.path().join("x"), b"outside").unwrap();
    symlink("file", p.join("alloc/data/rel-in")).unwrap();
    symlink("../../alloc/data/file", p.join("alloc/data/up-and-in")).unwrap();
    symlink(p.canonicalize().unwrap().join("alloc/data/file"), p.join("abs-in")).unwrap();
    let root_name = p.canonicalize().unwrap().file_name().unwrap().to_owned();
    symlink(Path::new("..").join(&root_name).join("alloc"), p.join("out-and-back")).unwrap();
    symlink(outside.path().join("x"), p.join("abs-out")).unwrap();
    let to_slash = "../".repeat(p.canonicalize().unwrap().components().count() + 1);
    symlink(Path::new(&to_slash).join(outside.path().strip_prefix("/").unwrap()), p.join("alloc/data/rel-out"))
        .unwrap();
    symlink(outside.path(), p.join("dir-out")).unwrap();
    symlink("..", p.join("parent")).unwrap();
    symlink("../web/secrets/token", p.join("alloc/leak")).unwrap();
    let root = AllocRoot::new(p).unwrap();
    (dir, outside, root)
}

fn content(root: &AllocRoot, path: &str) -> String {
    let file = LocalFile::open(root, path).unwrap();
    let mut buf = [0u8; 64];
    let n = file.read_at(0, &mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn lexical_escapes_follow_nomad() {
    for escaping in ["..", "../", "../foo", "a/../../b", "..foo", "./../x"] {
        assert!(escapes_lexically(escaping), "{escaping} should escape");
    }
    for inside in ["", "/", "/foo", "./", "alloc/logs", "a/../b", "/alloc/../alloc/logs", "a..b"] {
        assert!(!escapes_lexically(inside), "{inside} should not escape");
    }
}

#[test]
fn links_that_stay_inside_work() {
    let (_dir, _outside, root) = tree();
    for path in ["alloc/data/rel-in", "alloc/data/up-and-in", "abs-in", "out-and-back/data/file"] {
        for resolver in BOTH {
            let found = root.resolve_with(resolver, path).unwrap().found.unwrap();
            assert_eq!(found.location, ["alloc", "data", "file"], "{path} by {resolver:?}");
        }
        assert_eq!(content(&root, path), "inside", "{path}");
    }
    assert!(root.resolve("no-exist").unwrap().found.is_none());
    assert!(root.resolve("alloc/no-exist/x").unwrap().found.is_none());
    assert_eq!(root.resolve("/").unwrap().found.unwrap().location, Vec::<String>::new());
}

#[test]
fn links_out_are_escapes() {
    let (_dir, _outside, root) = tree();
    for path in ["abs-out", "alloc/data/rel-out", "dir-out", "dir-out/x", "dir-out/missing", "parent", "parent/x"] {
        for resolver in BOTH {
            let err = root.resolve_with(resolver, path).unwrap_err();
            assert_eq!(err.message.as_str(), ESCAPE_MESSAGE, "{path} by {resolver:?}");
            assert_eq!(err.kind, crate::abi::ErrorKind::INVALID_ARGUMENT);
        }
    }
}

#[test]
fn a_root_deleted_meanwhile_is_not_an_escape() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = dir.path().join("alloc-id");
    std::fs::create_dir_all(alloc.join("alloc/logs")).unwrap();
    let root = AllocRoot::new(&alloc).unwrap();
    std::fs::remove_dir_all(&alloc).unwrap();
    assert!(root.resolve("alloc/logs/web.stdout.0").unwrap().found.is_none());
}

#[test]
fn loops_and_file_components_are_check_failures() {
    let dir = tempfile::tempdir().unwrap();
    symlink("loop", dir.path().join("loop")).unwrap();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let root = AllocRoot::new(dir.path()).unwrap();
    for resolver in BOTH {
        let err = root.resolve_with(resolver, "loop").unwrap_err();
        assert!(err.message.starts_with("Failed to check if path escapes alloc directory: lstat "), "{err}");
        assert!(err.message.ends_with("/loop: too many levels of symbolic links"), "{err}");
        let err = root.resolve_with(resolver, "file/x").unwrap_err();
        assert!(err.message.ends_with("/file/x: not a directory"), "{err}");
    }
}

#[test]
fn secrets_and_private_are_refused_even_through_links() {
    let (dir, _outside, root) = tree();
    std::fs::create_dir_all(dir.path().join("web/private")).unwrap();
    let open = |p: &str| LocalFile::open(&root, p).err().map(|e| e.message.to_string());
    assert_eq!(open("web/secrets/token").unwrap(), "Reading secret file prohibited: web/secrets/token");
    assert!(open("/web/SECRETS/token").is_some());
    assert_eq!(open("alloc/leak").unwrap(), "Reading secret file prohibited: alloc/leak");
    assert!(open("web/private/x").unwrap().contains("private file prohibited"));
    assert!(open("alloc/data/file").is_none());
    // ls and stat inside secrets stay allowed, as in Nomad.
    assert_eq!(files::stat(&root, "alloc/leak", "id").unwrap().size, 1);
}

/// Runs `f` on a thread and fails if it does not finish within five seconds.
fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(5)).expect("blocked: a special file was opened for reading")
}

#[test]
fn fifos_sockets_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert!(Command::new("mkfifo").arg(p.join("fifo")).status().unwrap().success());
    let _socket = std::os::unix::net::UnixListener::bind(p.join("socket")).unwrap();
    let device = Command::new("mknod").arg(p.join("null")).args(["c", "1", "3"]).status().is_ok_and(|s| s.success());
    symlink("fifo", p.join("to-fifo")).unwrap();
    let root = AllocRoot::new(p).unwrap();
    let mut names = vec!["fifo", "socket", "to-fifo"];
    if device {
        names.push("null");
    }
    for name in names {
        let (root, name) = (root.clone(), name.to_owned());
        let (opened, stat) = within_seconds(move || {
            let opened = LocalFile::open(&root, &name).err().map(|e| e.message.to_string());
            (opened, files::stat(&root, &name, "id"))
        });
        assert!(opened.unwrap().ends_with(": not a regular file"));
        let stat = stat.unwrap();
        assert!(!stat.is_dir && stat.content_type.as_str() == "application/octet-stream");
    }
}

#[test]
fn what_was_found_is_what_is_read_even_if_the_name_is_swapped_meanwhile() {
    let (dir, _outside, root) = tree();
    let data = dir.path().join("alloc/data");
    for resolver in BOTH {
        std::fs::write(data.join("swapped"), b"found").unwrap();
        let resolved = root.resolve_with(resolver, "alloc/data/swapped").unwrap();
        let found = resolved.existing("open").unwrap();
        assert!(found.is_file());
        // The task renames a FIFO over the name between the lookup and the open.
        let fifo = data.join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        std::fs::rename(&fifo, data.join("swapped")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut found.open_read().unwrap(), &mut text).unwrap();
        assert_eq!(text, "found", "{resolver:?}");
        std::fs::remove_file(data.join("swapped")).unwrap();
    }
}

#[test]
fn listing_and_stat_go_through_the_descriptor() {
    let (_dir, _outside, root) = tree();
    let names: Vec<String> = files::list(&root, "alloc/data").unwrap().iter().map(|e| e.name.to_string()).collect();
    assert_eq!(names, ["file", "rel-in", "rel-out", "up-and-in"]);
    let err = files::list(&root, "alloc/data/file").unwrap_err();
    assert!(err.message.starts_with("readdirent ") && err.message.ends_with("/alloc/data/file: not a directory"));
    let err = files::list(&root, "nope").unwrap_err();
    assert!(err.message.starts_with("open ") && err.message.ends_with("/nope: no such file or directory"));
    assert_eq!(files::list(&root, "out-and-back/data").unwrap().len(), 4);
    let info = files::stat(&root, "alloc/data/rel-in", "id").unwrap();
    assert_eq!((info.name.as_str(), info.size, info.content_type.as_str()), ("rel-in", 6, "text/plain; charset=utf-8"));
    assert_eq!(files::stat(&root, "/", "id").unwrap().name.as_str(), "id");
    assert_eq!(files::identify(&root, "abs-in").unwrap(), files::identify(&root, "alloc/data/file").unwrap());
}

#[test]
fn openat2_answers_for_paths_that_stay_beneath() {
    let (_dir, _outside, root) = tree();
    if OPENAT2_UNAVAILABLE.load(Ordering::Relaxed) {
        println!("skipped: openat2 is not available here");
        return;
    }
    for path in ["", "alloc/data/file", "alloc/data/rel-in", "alloc/data/up-and-in", "alloc/leak"] {
        let kernel = root.try_openat2(path).unwrap_or_else(|| panic!("openat2 did not answer for {path:?}"));
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let walked = root.walk(&components).ok().flatten().unwrap();
        assert_eq!((kernel.stat.st_ino, &kernel.location), (walked.stat.st_ino, &walked.location), "{path}");
    }
    for path in ["abs-in", "abs-out", "dir-out/x", "parent"] {
        assert!(root.try_openat2(path).is_none(), "{path} leaves the root on the way: the walk decides");
    }
}

#[test]
fn alloc_ids_are_full_uuids() {
    assert!(is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c-0d2e4f6a8b1c"));
    assert!(!is_alloc_id("3a7b9c2e"));
    assert!(!is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c-0d2e4f6a8b1g"));
    assert!(!is_alloc_id("3a7b9c2e-1f4d-4e8a-9b6c0-d2e4f6a8b1c"));
}

#[test]
fn os_errors_read_like_go() {
    let err = std::io::Error::from_raw_os_error(libc::ENOENT);
    assert_eq!(os_error_text(&err), "no such file or directory");
}

/// Swaps `f` (file ↔ absolute link out), `d` (directory ↔ link to an outside directory) and
/// `p` (file ↔ FIFO) in `dir` until `stop`.
fn swap_until(dir: &Path, outside: &Path, stop: &AtomicBool) {
    let staged = dir.join(".staged");
    std::fs::create_dir(&staged).unwrap();
    std::fs::write(staged.join("file"), b"inside").unwrap();
    std::fs::create_dir(staged.join("d")).unwrap();
    std::fs::write(staged.join("d/x"), b"inside").unwrap();
    symlink(outside.join("x"), staged.join("link-out")).unwrap();
    symlink(outside, staged.join("dir-out")).unwrap();
    assert!(Command::new("mkfifo").arg(staged.join("fifo")).status().unwrap().success());
    let swap = |name: &str, source: &str| {
        std::fs::hard_link(staged.join(source), staged.join("next")).unwrap();
        std::fs::rename(staged.join("next"), dir.join(name)).unwrap();
    };
    while !stop.load(Ordering::Relaxed) {
        swap("f", "link-out");
        swap("p", "fifo");
        std::fs::rename(staged.join("d"), dir.join("d")).unwrap();
        swap("f", "file");
        swap("p", "file");
        std::fs::rename(dir.join("d"), staged.join("d")).unwrap();
        std::fs::rename(staged.join("dir-out"), dir.join("d")).unwrap();
        std::fs::rename(dir.join("d"), staged.join("dir-out")).unwrap();
    }
}

/// What reading `path` gives through `resolver`, as LocalFile::open would read it.
fn read_through(root: &AllocRoot, resolver: Resolver, path: &str) -> Option<Vec<u8>> {
    let found = root.resolve_with(resolver, path).ok()?.found?;
    if !found.is_file() {
        return None;
    }
    let mut buf = vec![0u8; 64];
    let n = found.open_read().ok()?.read_at(&mut buf, 0).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn both_resolvers_stay_inside_while_a_task_swaps_links_and_fifos() {
    let (dir, outside, root) = tree();
    let data = dir.path().join("alloc/data");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swapper = {
        let (data, outside, stop) = (data.clone(), outside.path().to_owned(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || swap_until(&data, &outside, &stop))
    };
    let reads = within_seconds(move || {
        let mut reads = 0;
        for round in 0..3000 {
            let resolver = BOTH[round % 2];
            for path in ["alloc/data/f", "alloc/data/d/x", "alloc/data/p"] {
                if let Some(bytes) = read_through(&root, resolver, path) {
                    assert_ne!(bytes, b"outside", "{path} by {resolver:?} read outside bytes");
                    reads += 1;
                }
            }
        }
        reads
    });
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(reads > 0, "nothing was ever read inside");
}

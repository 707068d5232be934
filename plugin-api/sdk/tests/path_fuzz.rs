//! Fuzzing the sandbox: a kept corpus of hostile paths (`tests/corpus/paths.txt`) plus
//! proptest-generated ones, resolved against a real tree with symlinks in and out (absolute,
//! relative, to directories, chained, looping). Whatever the input: openat2 and the fallback
//! walk give the same answer, nothing outside the root is ever found or read, and secrets are
//! never readable.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use allocd_plugin_sdk::FilePlugin;
use allocd_plugin_sdk::files::LocalFile;
use allocd_plugin_sdk::paths::{AllocRoot, Resolver, clean_components};
use proptest::prelude::*;

const OUTSIDE: &[u8] = b"outside the allocation";

/// The root with its traps, the outside dir they point at, and every (dev, ino) inside.
struct Trap {
    _root: tempfile::TempDir,
    _outside: tempfile::TempDir,
    root: AllocRoot,
    inside: HashSet<(u64, u64)>,
}

fn trap() -> Trap {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = dir.path();
    let real = p.canonicalize().unwrap();
    for sub in ["alloc/logs", "web/secrets", "web/private"] {
        std::fs::create_dir_all(p.join(sub)).unwrap();
    }
    std::fs::write(p.join("alloc/logs/web.stdout.0"), b"log").unwrap();
    std::fs::write(p.join("web/secrets/token"), b"secret").unwrap();
    std::fs::write(p.join("web/private/key"), b"key").unwrap();
    std::fs::write(outside.path().join("x"), OUTSIDE).unwrap();
    let to_slash = "../".repeat(real.components().count());
    let links: [(&str, &Path); 12] = [
        ("escape", outside.path()),
        ("abs-out", &outside.path().join("x")),
        ("alloc/rel-out", &Path::new(&to_slash).join(outside.path().join("x").strip_prefix("/").unwrap())),
        ("dir-out", outside.path()),
        ("abs-in", &real.join("alloc/logs")),
        ("back-in", &Path::new("..").join(real.file_name().unwrap()).join("alloc")),
        ("parent", Path::new("..")),
        ("loop", Path::new("loop")),
        ("link-in", Path::new("alloc")),
        ("leak", Path::new("web/secrets/token")),
        ("chain", Path::new("link-in/logs/leak-up")),
        ("alloc/logs/leak-up", Path::new("../../leak")),
    ];
    for (name, target) in links {
        symlink(target, p.join(name)).unwrap();
    }
    let mut inside = HashSet::new();
    collect_inodes(&real, &mut inside);
    Trap { root: AllocRoot::new(p).unwrap(), inside, _root: dir, _outside: outside }
}

/// (dev, ino) of `dir` and everything below it, links not followed.
fn collect_inodes(dir: &Path, inodes: &mut HashSet<(u64, u64)>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    inodes.insert((meta.dev(), meta.ino()));
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            collect_inodes(&entry.unwrap().path(), inodes);
        }
    }
}

/// The sandbox invariants for one input.
fn check(trap: &Trap, input: &str) {
    if let Some(parts) = clean_components(input) {
        assert!(!parts.contains(&".."), "{input:?} cleaned to {parts:?}");
    }
    let answer = |resolver| match trap.root.resolve_with(resolver, input) {
        Ok(resolved) => Ok(resolved.found.map(|found| ((found.stat.st_dev, found.stat.st_ino), found.location))),
        Err(err) => Err(err.message.to_string()),
    };
    let (kernel, walked) = (answer(Resolver::Openat2), answer(Resolver::Walk));
    assert_eq!(kernel, walked, "openat2 and the walk disagree on {input:?}");
    if let Ok(Some((inode, location))) = &kernel {
        assert!(trap.inside.contains(inode), "{input:?} found something outside: {location:?}");
    }
    if let Ok(file) = LocalFile::open(&trap.root, input) {
        let mut buf = [0u8; 64];
        let n = file.read_at(0, &mut buf).unwrap_or(0);
        assert_ne!(&buf[..n], OUTSIDE, "{input:?} read outside bytes");
        let Ok(Some((_, location))) = &kernel else { panic!("{input:?} opened but not found") };
        let secret = location.get(1).is_some_and(|dir| ["secrets", "private"].contains(&dir.as_str()));
        assert!(!secret, "{input:?} reads a secret at {location:?}");
    }
}

#[test]
fn the_kept_corpus_stays_inside() {
    let trap = trap();
    let corpus = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/paths.txt")).unwrap();
    for line in corpus.lines() {
        check(&trap, line);
        check(&trap, &format!("/{line}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_paths_stay_inside(parts in prop::collection::vec(
        prop_oneof!["\\.\\.", "\\.", "", "alloc", "logs", "web", "secrets", "private", "escape", "loop", "link-in",
            "leak", "token", "x", "abs-out", "rel-out", "dir-out", "abs-in", "back-in", "parent", "chain",
            "leak-up", "web\\.stdout\\.0", "\\.\\.[a-z]", "[a-z%\u{0}\u{ff}]{1,3}"],
        0..8,
    ), leading_slash in any::<bool>()) {
        let trap = trap();
        let input = format!("{}{}", if leading_slash { "/" } else { "" }, parts.join("/"));
        check(&trap, &input);
    }
}

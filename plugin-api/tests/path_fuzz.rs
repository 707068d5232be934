//! Fuzzing the sandbox: a kept corpus of hostile paths (`tests/corpus/paths.txt`) plus
//! proptest-generated ones. Whatever the input, a resolved path stays inside the root (also
//! after following symlinks), and secrets are never readable.

use std::path::Path;

use allocd_plugin_api::paths::{AllocRoot, clean_components};
use proptest::prelude::*;

/// A root with the traps the corpus names: links out, loops, a secret, a link to it.
fn trap_root() -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let p = root.path();
    std::fs::create_dir_all(p.join("alloc/logs")).unwrap();
    std::fs::create_dir_all(p.join("web/secrets")).unwrap();
    std::fs::create_dir_all(p.join("web/private")).unwrap();
    std::fs::write(p.join("alloc/logs/web.stdout.0"), b"log").unwrap();
    std::fs::write(p.join("web/secrets/token"), b"secret").unwrap();
    std::fs::write(p.join("web/private/key"), b"key").unwrap();
    std::fs::write(outside.path().join("x"), b"outside").unwrap();
    std::os::unix::fs::symlink(outside.path(), p.join("escape")).unwrap();
    std::os::unix::fs::symlink("loop", p.join("loop")).unwrap();
    std::os::unix::fs::symlink("alloc", p.join("link-in")).unwrap();
    std::os::unix::fs::symlink("web/secrets/token", p.join("leak")).unwrap();
    (root, outside)
}

/// The sandbox invariants for one input.
fn check(root: &AllocRoot, input: &str) {
    if let Some(parts) = clean_components(input) {
        assert!(!parts.contains(&".."), "{input:?} cleaned to {parts:?}");
    }
    let Ok(resolved) = root.resolve(input) else { return };
    assert!(resolved.joined.starts_with(root.path()), "{input:?} joined outside: {:?}", resolved.joined);
    if let Ok(real) = resolved.joined.canonicalize() {
        assert!(real.starts_with(root.path()), "{input:?} resolves outside: {real:?}");
        let secret =
            real.starts_with(root.path().join("web/secrets")) || real.starts_with(root.path().join("web/private"));
        if secret && real.is_file() {
            assert!(root.check_readable(input, &resolved).is_err(), "{input:?} reads a secret");
        }
    }
}

#[test]
fn the_kept_corpus_stays_inside() {
    let (dir, _outside) = trap_root();
    let root = AllocRoot::new(dir.path()).unwrap();
    let corpus = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/paths.txt")).unwrap();
    for line in corpus.lines() {
        check(&root, line);
        check(&root, &format!("/{line}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_paths_stay_inside(parts in prop::collection::vec(
        prop_oneof!["\\.\\.", "\\.", "", "alloc", "logs", "web", "secrets", "private", "escape", "loop", "link-in",
            "leak", "token", "x", "\\.\\.[a-z]", "[a-z%\u{0}\u{ff}]{1,3}"],
        0..8,
    ), leading_slash in any::<bool>()) {
        let (dir, _outside) = trap_root();
        let root = AllocRoot::new(dir.path()).unwrap();
        let input = format!("{}{}", if leading_slash { "/" } else { "" }, parts.join("/"));
        check(&root, &input);
    }
}

//! The overlay backend driven in-process through its native `StoragePlugin` trait, on layer
//! trees built in temporary directories: merging, shadowing, whiteouts (OCI files and 0/0
//! character devices), opaque directories, sandboxing per layer, GC and per-allocation layers.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use abi_stable::std_types::RStr;
use allocd_plugin_overlay::Overlay;
use allocd_plugin_sdk::paths::ESCAPE_MESSAGE;
use allocd_plugin_sdk::{ErrorKind, FileInfo, HostContext, LogLevel, PluginError};
use allocd_plugin_sdk::{FilePlugin, PluginConfig, StoragePlugin};
use serde_json::json;

const ID: &str = "3a7b9c2e-1f4d-4e8a-9b6c-0d2e4f6a8b1c";
const OTHER: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";

extern "C" fn no_log(_: LogLevel, _: RStr<'_>, _: RStr<'_>) {}

fn host() -> HostContext {
    HostContext { log: no_log, data_dir: "/nonexistent".into(), alloc_dir: "/nonexistent/alloc".into() }
}

fn build(config: serde_json::Value) -> Result<Overlay, PluginError> {
    Overlay::new(&PluginConfig { json: config.to_string(), host: host() })
}

/// `upper/<ID>` over the shared lowers `l1` (top) and `l2`.
struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    overlay: Overlay,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        for dir in ["upper", "l1", "l2"] {
            std::fs::create_dir(base.join(dir)).unwrap();
        }
        std::fs::create_dir(base.join("upper").join(ID)).unwrap();
        let overlay = build(json!({
            "upper_dir": base.join("upper"),
            "lower_dirs": [base.join("l1"), base.join("l2")],
        }))
        .unwrap();
        Self { _tmp: tmp, base, overlay }
    }

    /// The directory of a layer: "up" for this allocation's upper layer, else a base-relative dir.
    fn layer(&self, layer: &str) -> PathBuf {
        match layer {
            "up" => self.base.join("upper").join(ID),
            other => self.base.join(other),
        }
    }

    fn file(&self, layer: &str, path: &str, content: &str) -> PathBuf {
        let full = self.layer(layer).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
        full
    }

    fn dir(&self, layer: &str, path: &str) -> PathBuf {
        let full = self.layer(layer).join(path);
        std::fs::create_dir_all(&full).unwrap();
        full
    }

    fn symlink(&self, layer: &str, path: &str, target: impl AsRef<Path>) {
        let full = self.layer(layer).join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
    }

    fn names(&self, path: &str) -> Vec<String> {
        names(&self.overlay.list(ID, path).unwrap())
    }

    fn read(&self, path: &str) -> String {
        read_all(&self.overlay.open(ID, path).unwrap())
    }

    fn upper_path(&self, path: &str) -> String {
        self.layer("up").join(path).display().to_string()
    }
}

fn names(entries: &[FileInfo]) -> Vec<String> {
    entries.iter().map(|e| e.name.to_string()).collect()
}

fn read_all(file: &impl FilePlugin) -> String {
    let mut buf = vec![0u8; 4096];
    let n = file.read_at(0, &mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn assert_not_found(err: PluginError, op: &str, upper_path: &str) {
    assert_eq!(err.kind, ErrorKind::NOT_FOUND, "{err}");
    assert_eq!(err.message.as_str(), format!("{op} {upper_path}: no such file or directory"));
}

fn assert_escape<T>(result: Result<T, PluginError>) {
    let Err(err) = result else { panic!("the path should escape") };
    assert_eq!(err.message.as_str(), ESCAPE_MESSAGE);
    assert_eq!(err.kind, ErrorKind::INVALID_ARGUMENT);
}

/// mknod a 0/0 character device (overlayfs's whiteout); `false` when not permitted here.
fn whiteout_device(path: &Path) -> bool {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(0, 0)) };
    if rc != 0 {
        println!("skipped: mknod of a 0/0 char device failed: {}", std::io::Error::last_os_error());
    }
    rc == 0
}

#[test]
fn merged_listing_across_three_layers() {
    let fx = Fixture::new();
    fx.file("up", "alloc/logs/web.stdout.0", "up");
    fx.file("l1", "alloc/logs/web.stderr.0", "l1");
    fx.file("l2", "alloc/logs/init.stdout.0", "l2");
    fx.file("l2", "web/local/app.conf", "conf");
    fx.dir("l1", "alloc/data");
    assert_eq!(fx.names("/"), ["alloc", "web"]);
    assert_eq!(fx.names("alloc"), ["data", "logs"]);
    assert_eq!(fx.names("/alloc/logs/"), ["init.stdout.0", "web.stderr.0", "web.stdout.0"]);
    assert_eq!(fx.names("web/local"), ["app.conf"]);
    let entries = fx.overlay.list(ID, "alloc/logs").unwrap();
    assert!(entries.iter().all(|e| !e.is_dir && e.size == 2 && e.content_type.is_empty()));
    let info = fx.overlay.alloc_info(ID).unwrap().unwrap();
    assert_eq!(info.namespace.as_str(), "default");
    assert_eq!(info.tasks.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["web"]);
}

#[test]
fn upper_shadows_lower_and_topmost_entry_wins() {
    let fx = Fixture::new();
    fx.file("up", "alloc/logs/web.stdout.0", "from the upper layer");
    fx.file("l1", "alloc/logs/web.stdout.0", "from l1");
    fx.file("l2", "alloc/logs/web.stdout.0", "from l2, the longest of the three");
    assert_eq!(fx.read("alloc/logs/web.stdout.0"), "from the upper layer");
    assert_eq!(fx.overlay.stat(ID, "alloc/logs/web.stdout.0").unwrap().size, 20);
    assert_eq!(fx.names("alloc/logs"), ["web.stdout.0"]);

    // A file in an upper layer shadows a directory below it...
    fx.file("up", "web/local", "now a file");
    fx.file("l1", "web/local/app.conf", "hidden");
    let listed = fx.overlay.list(ID, "web").unwrap();
    assert_eq!(names(&listed), ["local"]);
    assert!(!listed[0].is_dir);
    let err = fx.overlay.list(ID, "web/local").unwrap_err();
    assert!(err.message.contains("not a directory"), "{err}");
    assert!(fx.overlay.stat(ID, "web/local/app.conf").is_err());

    // ...and a directory shadows a file below it, which in turn hides deeper directories.
    fx.file("up", "db/data/mine", "u");
    fx.file("l1", "db/data", "a file in l1");
    fx.file("l2", "db/data/theirs", "never merged through l1's file");
    assert_eq!(fx.names("db/data"), ["mine"]);
    assert_not_found(fx.overlay.stat(ID, "db/data/theirs").unwrap_err(), "stat", &fx.upper_path("db/data/theirs"));
}

#[test]
fn oci_whiteout_file_hides_lower_entries_and_never_shows() {
    let fx = Fixture::new();
    fx.file("up", "alloc/logs/keep", "k");
    fx.file("up", "alloc/logs/.wh.gone", "");
    fx.file("l1", "alloc/logs/gone", "deleted in the upper layer");
    fx.file("l1", "alloc/logs/.wh.deep", "");
    fx.file("l2", "alloc/logs/deep", "deleted in l1");
    // A whiteout hides lower layers only: the same layer's entry still shows.
    fx.file("l1", "alloc/logs/.wh.again", "");
    fx.file("l1", "alloc/logs/again", "re-created in l1");
    fx.file("l2", "alloc/logs/again", "old");
    // A whited-out directory hides its whole subtree.
    fx.file("up", ".wh.old-task", "");
    fx.file("l2", "old-task/local/x", "x");

    assert_eq!(fx.names("alloc/logs"), ["again", "keep"]);
    assert_eq!(fx.names("/"), ["alloc"]);
    assert_eq!(fx.read("alloc/logs/again"), "re-created in l1");
    for (path, op) in [("alloc/logs/gone", "stat"), ("alloc/logs/deep", "stat"), ("old-task/local/x", "stat")] {
        assert_not_found(fx.overlay.stat(ID, path).unwrap_err(), op, &fx.upper_path(path));
    }
    assert_not_found(fx.overlay.open(ID, "alloc/logs/gone").err().unwrap(), "open", &fx.upper_path("alloc/logs/gone"));
    assert_not_found(fx.overlay.list(ID, "old-task").unwrap_err(), "open", &fx.upper_path("old-task"));
    assert_not_found(
        fx.overlay.identify(ID, "alloc/logs/deep").unwrap_err(),
        "stat",
        &fx.upper_path("alloc/logs/deep"),
    );
    // The bookkeeping entries themselves are never found either.
    assert!(fx.overlay.stat(ID, "alloc/logs/.wh.gone").is_err());
    assert!(fx.overlay.open(ID, "alloc/logs/.wh.gone").is_err());
    assert!(fx.overlay.alloc_info(ID).unwrap().unwrap().tasks.is_empty());
}

#[test]
fn opaque_directory_hides_lower_content() {
    let fx = Fixture::new();
    fx.file("up", "alloc/data/.wh..wh..opq", "");
    fx.file("up", "alloc/data/fresh", "new");
    fx.file("l1", "alloc/data/stale", "old");
    fx.file("l2", "alloc/data/cache/blob", "older");
    fx.file("l1", "alloc/logs/still-merged", "l1");
    assert_eq!(fx.names("alloc/data"), ["fresh"]);
    assert_eq!(fx.names("alloc"), ["data", "logs"]);
    assert!(fx.overlay.stat(ID, "alloc/data").unwrap().is_dir);
    assert_not_found(fx.overlay.stat(ID, "alloc/data/stale").unwrap_err(), "stat", &fx.upper_path("alloc/data/stale"));
    assert!(fx.overlay.list(ID, "alloc/data/cache").is_err());

    // An opaque directory in a middle layer still merges with the layers above it.
    fx.file("l1", "web/local/.wh..wh..opq", "");
    fx.file("l1", "web/local/l1.conf", "");
    fx.file("l2", "web/local/l2.conf", "");
    fx.file("up", "web/local/up.conf", "");
    assert_eq!(fx.names("web/local"), ["l1.conf", "up.conf"]);
}

#[test]
fn opaque_xattr_from_overlayfs() {
    let fx = Fixture::new();
    let dir = fx.dir("up", "alloc/data");
    fx.file("up", "alloc/data/fresh", "");
    fx.file("l1", "alloc/data/stale", "");
    let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings and a one-byte value buffer of the given length.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), c"trusted.overlay.opaque".as_ptr(), c"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        println!("skipped: setting trusted.overlay.opaque failed: {}", std::io::Error::last_os_error());
        return;
    }
    assert_eq!(fx.names("alloc/data"), ["fresh"]);
}

#[test]
fn char_device_whiteout_from_overlay2() {
    let fx = Fixture::new();
    fx.dir("up", "alloc/logs");
    fx.file("up", "alloc/logs/kept", "k");
    fx.file("l1", "alloc/logs/removed", "r");
    fx.file("l2", "web/local/x", "x");
    if !whiteout_device(&fx.layer("up").join("alloc/logs/removed")) || !whiteout_device(&fx.layer("up").join("web")) {
        return;
    }
    assert_eq!(fx.names("alloc/logs"), ["kept"]);
    assert_eq!(fx.names("/"), ["alloc"]);
    assert_not_found(
        fx.overlay.stat(ID, "alloc/logs/removed").unwrap_err(),
        "stat",
        &fx.upper_path("alloc/logs/removed"),
    );
    assert_not_found(fx.overlay.stat(ID, "web/local/x").unwrap_err(), "stat", &fx.upper_path("web/local/x"));
    assert!(fx.overlay.open(ID, "alloc/logs/removed").is_err());
    // A character device that is not 0/0 is an ordinary entry.
    let dev = fx.layer("up").join("alloc/logs/null");
    let c_path = CString::new(dev.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) }, 0);
    assert_eq!(fx.names("alloc/logs"), ["kept", "null"]);
}

#[test]
fn stat_open_and_identify_through_the_merge() {
    let fx = Fixture::new();
    fx.file("l2", "web/local/app.conf", "listen = 8080\n");
    fx.file("l1", "alloc/data/state.json", "{}");
    fx.dir("up", "alloc/logs");
    let root = fx.overlay.stat(ID, "/").unwrap();
    assert_eq!(root.name.as_str(), ID);
    assert!(root.is_dir);
    let conf = fx.overlay.stat(ID, "/web/./local/../local/app.conf").unwrap();
    assert_eq!(conf.name.as_str(), "app.conf");
    assert_eq!(conf.size, 14);
    assert_eq!(conf.content_type.as_str(), "text/plain; charset=utf-8");
    assert_eq!(fx.overlay.stat(ID, "alloc/data/state.json").unwrap().content_type.as_str(), "application/json");
    let web = fx.overlay.stat(ID, "web").unwrap();
    assert!(web.is_dir && web.name.as_str() == "web");

    let file = fx.overlay.open(ID, "web/local/app.conf").unwrap();
    assert_eq!(read_all(&file), "listen = 8080\n");
    assert_eq!(file.identity().unwrap(), fx.overlay.identify(ID, "web/local/app.conf").unwrap());

    // Copy-up: once the task writes the file in the upper layer, it resolves there.
    let before = fx.overlay.identify(ID, "web/local/app.conf").unwrap();
    fx.file("up", "web/local/app.conf", "listen = 9090\n");
    assert_ne!(fx.overlay.identify(ID, "web/local/app.conf").unwrap(), before);
    assert_eq!(fx.read("web/local/app.conf"), "listen = 9090\n");

    // Symlinks are followed inside their layer: stat follows, list shows the link.
    fx.symlink("l2", "web/local/current", "app.conf");
    let linked = fx.overlay.stat(ID, "web/local/current").unwrap();
    assert_eq!((linked.name.as_str(), linked.size), ("current", 14));
    assert_eq!(fx.read("web/local/current"), "listen = 8080\n");
    let listed = fx.overlay.list(ID, "web/local").unwrap();
    let link = listed.iter().find(|e| e.name.as_str() == "current").unwrap();
    assert_eq!(link.mode & libc::S_IFMT, libc::S_IFLNK);
    fx.symlink("l1", "shared", "alloc/data");
    assert_eq!(fx.names("shared"), ["state.json"]);

    let err = fx.overlay.stat(ID, "web/local/app.conf/x").unwrap_err();
    assert!(err.message.starts_with("Failed to check if path escapes alloc directory: lstat"), "{err}");
}

#[test]
fn watch_paths_name_the_upper_layer_and_the_resolved_lower_path() {
    let fx = Fixture::new();
    fx.file("l1", "alloc/logs/web.stdout.0", "x");
    fx.file("up", "alloc/logs/web.stderr.0", "y");
    let lower = fx.layer("l1").join("alloc/logs/web.stdout.0").display().to_string();
    assert_eq!(
        fx.overlay.watch_paths(ID, "alloc/logs/web.stdout.0").unwrap(),
        [fx.upper_path("alloc/logs/web.stdout.0"), fx.upper_path("alloc/logs"), lower]
    );
    assert_eq!(
        fx.overlay.watch_paths(ID, "alloc/logs/web.stderr.0").unwrap(),
        [fx.upper_path("alloc/logs/web.stderr.0"), fx.upper_path("alloc/logs")]
    );
    // Not there yet: the upper paths, where it will appear.
    assert_eq!(
        fx.overlay.watch_paths(ID, "alloc/logs/web.stdout.1").unwrap(),
        [fx.upper_path("alloc/logs/web.stdout.1"), fx.upper_path("alloc/logs")]
    );
    assert_escape(fx.overlay.watch_paths(ID, "../x"));
}

#[test]
fn path_escapes_are_refused_in_every_layer() {
    let fx = Fixture::new();
    fx.dir("up", "alloc/logs");
    let outside = fx.file("outside", "secret.txt", "not yours");
    assert_escape(fx.overlay.list(ID, ".."));
    assert_escape(fx.overlay.stat(ID, "../foo"));
    assert_escape(fx.overlay.open(ID, "alloc/../../foo"));
    assert_escape(fx.overlay.identify(ID, "..foo"));
    // A symlink in a lower layer may not leave that layer: not to the host...
    fx.symlink("l2", "web/local/out", fx.base.join("outside"));
    fx.symlink("l1", "web/local/file", &outside);
    fx.symlink("l1", "web/local/up", "../../../outside/secret.txt");
    assert_escape(fx.overlay.stat(ID, "web/local/out"));
    assert_escape(fx.overlay.list(ID, "web/local/out"));
    assert_escape(fx.overlay.open(ID, "web/local/out/secret.txt"));
    assert_escape(fx.overlay.open(ID, "web/local/file"));
    assert_escape(fx.overlay.stat(ID, "web/local/up"));
    // ...nor into another layer, even this allocation's own upper layer.
    fx.file("up", "alloc/logs/web.stdout.0", "upper");
    fx.symlink("l2", "alloc/link", fx.layer("up").join("alloc/logs/web.stdout.0"));
    assert_escape(fx.overlay.open(ID, "alloc/link"));
    // The listing itself still shows the links (lstat), as Nomad's does.
    assert_eq!(fx.names("web/local"), ["file", "out", "up"]);
    // A symlink loop fails the escape check.
    fx.symlink("l1", "loop", "loop");
    let err = fx.overlay.stat(ID, "loop").unwrap_err();
    assert!(err.message.starts_with("Failed to check if path escapes alloc directory"), "{err}");
}

#[test]
fn secrets_and_private_reads_are_refused() {
    let fx = Fixture::new();
    fx.file("l1", "web/secrets/token", "s3cr3t");
    fx.file("up", "web/private/key", "k");
    fx.file("up", "web/secrets/upper-token", "s");
    fx.symlink("up", "web/local/leak2", "../secrets/upper-token");
    let denied = |path: &str| fx.overlay.open(ID, path).err().expect("should be refused");
    let err = denied("web/secrets/token");
    assert_eq!(err.kind, ErrorKind::PERMISSION_DENIED);
    assert_eq!(err.message.as_str(), "Reading secret file prohibited: web/secrets/token");
    assert_eq!(denied("/web/SECRETS/missing").message.as_str(), "Reading secret file prohibited: /web/SECRETS/missing");
    assert_eq!(denied("web/private/key").message.as_str(), "Reading private file prohibited: web/private/key");
    assert_eq!(denied("web/local/leak2").message.as_str(), "Reading secret file prohibited: web/local/leak2");
    assert_eq!(denied("web/secrets").message.as_str(), "Reading secret file prohibited: web/secrets");
    // ls and stat inside secrets are allowed, as in Nomad.
    assert_eq!(fx.names("web/secrets"), ["token", "upper-token"]);
    assert_eq!(fx.overlay.stat(ID, "web/secrets/token").unwrap().size, 6);
}

#[test]
fn gc_deletes_only_the_upper_layer() {
    let fx = Fixture::new();
    fx.file("up", "alloc/logs/web.stdout.0", "u");
    let l1 = fx.file("l1", "alloc/logs/web.stderr.0", "l1");
    let l2 = fx.file("l2", "web/local/app.conf", "l2");
    let extra = fx.file("extra", "web/local/extra.conf", "e");
    let lower_file = fx.base.join("upper").join(format!("{ID}.lower"));
    std::fs::write(&lower_file, format!("{}\n", fx.base.join("extra").display())).unwrap();
    assert_eq!(fx.names("web/local"), ["app.conf", "extra.conf"]);

    fx.overlay.gc(ID).unwrap();
    assert!(!fx.layer("up").exists());
    assert!(!lower_file.exists());
    assert!(l1.exists() && l2.exists() && extra.exists());
    assert!(fx.overlay.alloc_info(ID).unwrap().is_none());
    assert_eq!(fx.overlay.stat(ID, "/").unwrap_err().kind, ErrorKind::NOT_FOUND);
    assert_eq!(fx.overlay.gc(ID).unwrap_err().kind, ErrorKind::NOT_FOUND);
    assert_eq!(fx.overlay.gc("not-a-uuid").unwrap_err().message.as_str(), "Unknown allocation \"not-a-uuid\"");

    // A symlinked upper layer (Docker's UpperDir) loses the link, not its content.
    let diff = fx.file("docker/diff", "etc/hostname", "web-1");
    std::os::unix::fs::symlink(fx.base.join("docker/diff"), fx.base.join("upper").join(OTHER)).unwrap();
    assert_eq!(read_all(&fx.overlay.open(OTHER, "etc/hostname").unwrap()), "web-1");
    fx.overlay.gc(OTHER).unwrap();
    assert!(diff.exists());
    assert!(fx.base.join("upper").join(OTHER).symlink_metadata().is_err());
}

#[test]
fn unknown_allocations_and_the_allocation_list() {
    let fx = Fixture::new();
    assert!(fx.overlay.alloc_info(OTHER).unwrap().is_none());
    assert!(fx.overlay.alloc_info("not-a-uuid").unwrap().is_none());
    assert!(fx.overlay.alloc_info("").unwrap().is_none());
    let err = fx.overlay.list(OTHER, "/").unwrap_err();
    assert_eq!(err.kind, ErrorKind::NOT_FOUND);
    assert_eq!(err.message.as_str(), format!("Unknown allocation \"{OTHER}\""));
    // Only UUID-named directories are allocations: not files, not .lower files, not other dirs.
    std::fs::write(fx.base.join("upper").join(OTHER), "a file").unwrap();
    std::fs::write(fx.base.join("upper").join(format!("{ID}.lower")), "").unwrap();
    std::fs::create_dir(fx.base.join("upper/lost+found")).unwrap();
    assert!(fx.overlay.alloc_info(OTHER).unwrap().is_none());
    assert_eq!(fx.overlay.list_allocs().unwrap(), [ID]);
    assert!(fx.overlay.alloc_info(ID).unwrap().is_some());
}

#[test]
fn per_allocation_extra_lower_layers() {
    let fx = Fixture::new();
    fx.file("l1", "web/local/base.conf", "shared base");
    fx.file("l1", "web/local/app.conf", "shared app");
    fx.file("l2", "web/local/obsolete", "shared");
    fx.file("img-top", "web/local/app.conf", "image app");
    fx.file("img-top", "web/local/.wh.obsolete", "");
    fx.file("img-bottom", "web/local/app.conf", "image base app");
    fx.file("img-bottom", "web/local/tool", "image tool");
    let lower_file = fx.base.join("upper").join(format!("{ID}.lower"));
    let text = format!(
        "# image layers of web, topmost first\n{}\n\n  {}  \n",
        fx.base.join("img-top").display(),
        fx.base.join("img-bottom").display()
    );
    std::fs::write(&lower_file, text).unwrap();
    assert_eq!(fx.names("web/local"), ["app.conf", "base.conf", "tool"]);
    assert_eq!(fx.read("web/local/app.conf"), "image app");
    assert_eq!(fx.read("web/local/tool"), "image tool");
    assert!(fx.overlay.stat(ID, "web/local/obsolete").is_err());

    // Other allocations see only the shared layers.
    std::fs::create_dir(fx.base.join("upper").join(OTHER)).unwrap();
    assert_eq!(names(&fx.overlay.list(OTHER, "web/local").unwrap()), ["app.conf", "base.conf", "obsolete"]);

    // A broken .lower file fails loudly instead of showing another tree.
    std::fs::write(&lower_file, "relative/layer\n").unwrap();
    let err = fx.overlay.list(ID, "/").unwrap_err();
    assert_eq!(err.kind, ErrorKind::INTERNAL);
    assert!(err.message.contains("line 1: lower dir \"relative/layer\" is not an absolute path"), "{err}");
    std::fs::write(&lower_file, format!("{}\n", fx.base.join("missing").display())).unwrap();
    let err = fx.overlay.stat(ID, "/").unwrap_err();
    assert!(err.message.contains("line 1: lower dir") && err.message.contains("no such file or directory"), "{err}");
    std::fs::write(&lower_file, format!("{}\n", fx.base.join("upper").join(OTHER).display())).unwrap();
    let err = fx.overlay.alloc_info(ID).unwrap_err();
    assert!(err.message.contains("is inside upper_dir"), "{err}");
}

#[test]
fn config_is_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    std::fs::create_dir(base.join("upper")).unwrap();
    std::fs::create_dir(base.join("lower")).unwrap();
    std::fs::write(base.join("file"), "").unwrap();
    assert!(build(json!({"upper_dir": base.join("upper"), "lower_dirs": [base.join("lower")]})).is_ok());
    let message = |config| build(config).unwrap_err().message.to_string();
    assert!(message(json!({})).contains("missing field `upper_dir`"));
    assert!(message(json!({"upper_dir": base.join("upper"), "alloc_dir": "/x"})).contains("unknown field `alloc_dir`"));
    assert!(message(json!({"upper_dir": base.join("nope")})).contains("is not a directory"));
    assert!(
        message(json!({"upper_dir": base.join("upper"), "lower_dirs": [base.join("file")]}))
            .contains("is not a directory")
    );
    assert!(
        message(json!({"upper_dir": base.join("upper"), "lower_dirs": [base.join("nope")]})).contains("no such file")
    );
    let inside = base.join("upper/layer");
    std::fs::create_dir(&inside).unwrap();
    assert!(message(json!({"upper_dir": base.join("upper"), "lower_dirs": [inside]})).contains("inside upper_dir"));
}

#[test]
fn exported_descriptor_names_the_plugin() {
    let root = allocd_plugin_overlay::allocd_plugin_root();
    let descriptor = root.descriptor()();
    assert_eq!(descriptor.name.as_str(), "overlay");
    assert!(descriptor.kinds.contains(allocd_plugin_sdk::PluginKinds::STORAGE));
    assert!(!descriptor.kinds.contains(allocd_plugin_sdk::PluginKinds::METRICS));
}

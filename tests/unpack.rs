//! Hostile layers, one per attack class, against the unpacker; and a real
//! umoci-built image unpacked as umoci unpacks it.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use dedge::runtime::unpack::{Options, Report, apply_layer};

/// A layer tar built entry by entry.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Writes the path bytes as given: the tar crate's own checks (which
    /// refuse `..`) must not stop us from crafting hostile names.
    fn raw(mut self, path: &str, mut h: tar::Header, data: &[u8]) -> Layer {
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, path: &str, mode: u32, data: &[u8]) -> Layer {
        let h = Layer::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.raw(path, h, data)
    }

    fn dir(self, path: &str, mode: u32) -> Layer {
        self.raw(path, Layer::header(tar::EntryType::Directory, mode, 0), &[])
    }

    fn link(self, kind: tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = Layer::header(kind, 0o777, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.raw(path, h, &[])
    }

    fn device(self, path: &str) -> Layer {
        self.raw(path, Layer::header(tar::EntryType::Char, 0o666, 0), &[])
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(root: &Path, layer: Layer) -> Result<Report, dedge::runtime::Error> {
    apply_layer(root, layer.bytes().as_slice(), Options::default())
}

/// A root inside a scratch dir, with a "host" file next to it that no layer
/// may touch.
fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    fs::create_dir(&root).unwrap();
    let host = dir.path().join("host-secret");
    fs::write(&host, "host").unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
    (dir, root, host)
}

fn host_untouched(host: &Path) {
    assert_eq!(
        fs::read_to_string(host).unwrap(),
        "host",
        "host file content"
    );
    assert_eq!(
        fs::metadata(host).unwrap().permissions().mode() & 0o777,
        0o600,
        "host file mode"
    );
}

#[test]
fn dot_dot_in_a_path_is_refused() {
    let (dir, root, host) = setup();
    let err = apply(&root, Layer::new().file("../host-secret", 0o644, b"pwned")).unwrap_err();
    assert!(err.to_string().contains("climb out"), "{err}");
    let err = apply(
        &root,
        Layer::new().file("a/../../host-secret", 0o644, b"pwned"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("climb out"), "{err}");
    host_untouched(&host);
    drop(dir);
}

#[test]
fn absolute_paths_stay_inside() {
    let (_dir, root, host) = setup();
    apply(&root, Layer::new().file("/etc/motd", 0o644, b"hi")).unwrap();
    assert_eq!(fs::read_to_string(root.join("etc/motd")).unwrap(), "hi");
    host_untouched(&host);
}

/// Layer 1 plants a symlink to the host; layer 2 writes through it. The
/// write must land inside the root (the link resolves as if root were /).
#[test]
fn a_symlink_from_a_lower_layer_cannot_carry_writes_out() {
    let (dir, root, host) = setup();
    let outside = dir.path().to_str().unwrap().to_string();
    apply(
        &root,
        Layer::new().link(tar::EntryType::Symlink, "evil", &outside),
    )
    .unwrap();
    apply(
        &root,
        Layer::new().link(tar::EntryType::Symlink, "up", "../../../.."),
    )
    .unwrap();
    apply(
        &root,
        Layer::new().file("evil/host-secret", 0o644, b"pwned"),
    )
    .unwrap();
    apply(&root, Layer::new().file("up/host-secret", 0o644, b"pwned")).unwrap();
    host_untouched(&host);
    // Both landed in the root's own copy of the path.
    assert_eq!(
        fs::read_to_string(
            root.join(outside.trim_start_matches('/'))
                .join("host-secret")
        )
        .unwrap(),
        "pwned"
    );
    assert_eq!(
        fs::read_to_string(root.join("host-secret")).unwrap(),
        "pwned"
    );
}

/// The final component is never followed: a file, a directory or a chmod
/// aimed at a symlink replaces the symlink.
#[test]
fn entries_replace_symlinks_instead_of_writing_through_them() {
    let (_dir, root, host) = setup();
    let target = host.to_str().unwrap();
    apply(
        &root,
        Layer::new()
            .link(tar::EntryType::Symlink, "f", target)
            .link(tar::EntryType::Symlink, "d", target),
    )
    .unwrap();
    apply(
        &root,
        Layer::new().file("f", 0o777, b"pwned").dir("d", 0o777),
    )
    .unwrap();
    host_untouched(&host);
    assert!(root.join("d").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "pwned");
}

/// A hard link names its target inside the root: a host path resolves to
/// the root's copy (missing here), and a link to a symlink links the symlink.
#[test]
fn hard_links_cannot_reach_host_files() {
    let (_dir, root, host) = setup();
    let target = host.to_str().unwrap();
    let err = apply(&root, Layer::new().link(tar::EntryType::Link, "h", target)).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    apply(
        &root,
        Layer::new()
            .link(tar::EntryType::Symlink, "s", target)
            .link(tar::EntryType::Link, "h2", "s"),
    )
    .unwrap();
    let h2 = root.join("h2").symlink_metadata().unwrap();
    assert!(
        h2.file_type().is_symlink(),
        "the link is to the symlink itself"
    );
    assert_ne!(h2.ino(), fs::metadata(&host).unwrap().ino());
    assert!(
        apply(
            &root,
            Layer::new().link(tar::EntryType::Link, "h3", "../host-secret")
        )
        .is_err()
    );
    host_untouched(&host);
}

/// Whiteouts delete inside the root only: not through a symlinked parent,
/// not `..`.
#[test]
fn whiteouts_cannot_delete_outside() {
    let (dir, root, host) = setup();
    let outside = dir.path().to_str().unwrap();
    apply(
        &root,
        Layer::new().link(tar::EntryType::Symlink, "s", outside),
    )
    .unwrap();
    apply(&root, Layer::new().file("s/.wh.host-secret", 0o644, b"")).unwrap();
    host_untouched(&host);
    let err = apply(&root, Layer::new().file(".wh..", 0o644, b"")).unwrap_err();
    assert!(err.to_string().contains("whiteout must name"), "{err}");
    let err = apply(&root, Layer::new().file("x/.wh./", 0o644, b""));
    assert!(err.is_err() || root.exists());
    host_untouched(&host);
}

#[test]
fn whiteouts_and_opaque_directories_apply_in_layer_order() {
    let (_dir, root, _host) = setup();
    apply(
        &root,
        Layer::new()
            .dir("etc", 0o755)
            .file("etc/a", 0o644, b"a")
            .file("etc/b", 0o644, b"b")
            .dir("opt", 0o755)
            .file("opt/old", 0o644, b"o"),
    )
    .unwrap();
    apply(
        &root,
        Layer::new()
            .file("etc/.wh.a", 0o644, b"")
            .dir("opt", 0o755)
            .file("opt/.wh..wh..opq", 0o644, b"")
            .file("opt/new", 0o644, b"n"),
    )
    .unwrap();
    assert!(!root.join("etc/a").exists(), "whiteout removed a");
    assert!(root.join("etc/b").exists(), "b stays");
    assert!(
        !root.join("opt/old").exists(),
        "opaque dir hides the lower layer"
    );
    assert!(
        root.join("opt/new").exists(),
        "but keeps this layer's files"
    );
}

#[test]
fn devices_setuid_and_bad_dot_entries() {
    let (_dir, root, _host) = setup();
    let report = apply(
        &root,
        Layer::new()
            .device("dev/kmem")
            .file("bin/su", 0o4755, b"x")
            .dir("tmp", 0o1777),
    )
    .unwrap();
    assert_eq!(report.dropped, ["dev/kmem"]);
    assert!(!root.join("dev/kmem").exists());
    assert_eq!(
        fs::metadata(root.join("bin/su"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755,
        "setuid dropped"
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777,
        "sticky kept"
    );
    let err = apply(&root, Layer::new().file(".", 0o644, b"x")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    let err = apply(&root, Layer::new().file("./", 0o644, b"x")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn symlink_loops_are_refused() {
    let (_dir, root, _host) = setup();
    apply(
        &root,
        Layer::new().link(tar::EntryType::Symlink, "a", "b").link(
            tar::EntryType::Symlink,
            "b",
            "a",
        ),
    )
    .unwrap();
    let err = apply(&root, Layer::new().file("a/x", 0o644, b"x")).unwrap_err();
    assert!(err.to_string().contains("too many symlinks"), "{err}");
}

#[test]
fn entry_count_is_bounded() {
    let (_dir, root, _host) = setup();
    let mut l = Layer::new();
    for i in 0..20 {
        l = l.file(&format!("f{i}"), 0o644, b"");
    }
    let err = apply_layer(
        &root,
        l.bytes().as_slice(),
        Options {
            chown: false,
            max_entries: 10,
        },
    )
    .unwrap_err();
    assert!(matches!(err, dedge::runtime::Error::TooLarge(_)), "{err}");
}

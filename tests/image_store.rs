//! The image store with images made by the real tools: umoci builds an OCI
//! layout holding busybox-static, skopeo turns it into a docker-save archive.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use dedge::board::values::Arch;
use dedge::runtime::Error;
use dedge::runtime::image::{ImageStore, Limits, Platform};
use dedge::store::Store;
use sha2::{Digest as _, Sha256};

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/oci.rs"]
mod oci;
use oci::{busybox_layout, run};

fn here() -> Platform {
    Platform::of(Arch::of_this_build().expect("a supported build arch"))
}

fn store(dir: &Path, limits: Limits) -> (Store, ImageStore) {
    let s = Store::temporary().unwrap();
    let images = ImageStore::open(&dir.join("images"), &s, limits).unwrap();
    (s, images)
}

fn skip_unless_amd64() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIP: the test images are built for amd64");
        return true;
    }
    false
}

#[test]
fn imports_layout_dir_layout_tar_and_docker_archive_alike() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let (_s, images) = store(dir.path(), Limits::default());

    let from_dir = images.import(&img, None, &here(), "a").unwrap();
    assert_eq!(
        from_dir.run.cmd.as_deref(),
        Some(&["/bin/echo".to_string(), "hello".to_string()][..])
    );
    assert_eq!(
        from_dir.run.env.as_deref(),
        Some(&["GREETING=hi".to_string()][..])
    );
    assert_eq!(from_dir.layers.len(), 1);
    assert!(images.blob_path(&from_dir.layers[0].digest).exists());

    let tarball = dir.path().join("img.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    let from_tar = images
        .import(&tarball, Some("latest"), &here(), "b")
        .unwrap();
    assert_eq!(from_tar, from_dir);

    let docker = dir.path().join("img.docker.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", img.display()))
        .arg(format!(
            "docker-archive:{}:busybox:latest",
            docker.display()
        )));
    let from_docker = images.import(&docker, None, &here(), "c").unwrap();
    assert_eq!(
        from_docker.layers[0].diff_id, from_dir.layers[0].diff_id,
        "same layer content"
    );
    assert_eq!(from_docker.run, from_dir.run);

    let names: Vec<String> = images.list().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn a_tampered_blob_is_refused_by_digest() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let (_s, images) = store(dir.path(), Limits::default());
    let ok = images.import(&img, None, &here(), "ok").unwrap();
    let layer = img.join("blobs/sha256").join(ok.layers[0].digest.hex());
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&layer, &bytes).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let (_s2, other) = store(fresh.path(), Limits::default());
    let err = other.import(&img, None, &here(), "bad").unwrap_err();
    assert!(
        matches!(&err, Error::Blob { digest, .. } if digest == ok.layers[0].digest.as_str()),
        "{err}"
    );
    assert!(err.to_string().contains("content hashes to"), "{err}");
    assert!(
        !other.blob_path(&ok.layers[0].digest).exists(),
        "nothing unverified is stored"
    );
}

/// Rewrites the config's diff_id (and the digests that chain to it): the
/// layer then no longer matches what the config promises.
#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let blob = |d: &str| {
        img.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = format!(
            "sha256:{}",
            alloy_primitives::hex::encode(Sha256::digest(bytes))
        );
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("index.json")).unwrap()).unwrap();
    let mdesc = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&mdesc)).unwrap()).unwrap();
    let cdesc = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&cdesc)).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][0] = serde_json::json!(format!("sha256:{}", "0".repeat(64)));
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    std::fs::write(img.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let (_s, images) = store(dir.path(), Limits::default());
    let err = images.import(&img, None, &here(), "x").unwrap_err();
    assert!(err.to_string().contains("diff_id"), "{err}");
}

#[test]
fn a_layer_that_inflates_past_the_limit_is_refused() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let limits = Limits {
        max_layer_unpacked: 256 << 10,
        ..Limits::default()
    };
    let (_s, images) = store(dir.path(), limits);
    let err = images.import(&img, None, &here(), "bomb").unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    let limits = Limits {
        max_blob: 1 << 10,
        ..Limits::default()
    };
    let (_s, images) = store(dir.path(), limits);
    assert!(matches!(
        images.import(&img, None, &here(), "big").unwrap_err(),
        Error::TooLarge(_)
    ));
}

#[test]
fn platform_and_reference_are_checked() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "v1");
    busybox_layout(dir.path(), "v2");
    let (_s, images) = store(dir.path(), Limits::default());
    let err = images.import(&img, None, &here(), "x").unwrap_err();
    assert!(err.to_string().contains("name one with IMAGE:REF"), "{err}");
    let err = images.import(&img, Some("v3"), &here(), "x").unwrap_err();
    assert!(err.to_string().contains("no manifest tagged `v3`"), "{err}");
    let err = images
        .import(&img, Some("v2"), &Platform::of(Arch::Aarch64), "x")
        .unwrap_err();
    assert!(
        err.to_string().contains("image is for linux/amd64"),
        "{err}"
    );
    assert!(images.import(&img, Some("v2"), &here(), "v2").is_ok());
    let err = images
        .import(&dir.path().join("bundle-v1"), None, &here(), "x")
        .unwrap_err();
    assert!(
        matches!(err, Error::NotAnImage(_) | Error::Io { .. }),
        "{err}"
    );
}

#[test]
fn gc_frees_only_unreferenced_blobs() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let (_s, images) = store(dir.path(), Limits::default());
    let a = images.import(&img, None, &here(), "a").unwrap();
    images.import(&img, None, &here(), "b").unwrap();
    assert_eq!(images.gc().unwrap().0, 0, "both images hold their blobs");
    images.remove("a").unwrap();
    assert_eq!(
        images.gc().unwrap().0,
        0,
        "b still references the same blobs"
    );
    images.remove("b").unwrap();
    let (n, bytes) = images.gc().unwrap();
    assert_eq!(n, 3, "manifest, config, layer");
    assert!(bytes > 1_000_000);
    assert!(!images.blob_path(&a.layers[0].digest).exists());
    assert!(matches!(images.remove("a"), Err(Error::NoSuchImage(_))));
}

/// Our unpack of a umoci-built image gives the same tree as `umoci unpack`.
#[test]
fn unpacks_like_umoci() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let (_s, images) = store(dir.path(), Limits::default());
    let image = images.import(&img, None, &here(), "bb").unwrap();
    let ours = dir.path().join("ours");
    std::fs::create_dir(&ours).unwrap();
    let report = images
        .unpack(&image, &ours, dedge::runtime::unpack::Options::default())
        .unwrap();
    assert!(report.files >= 1 && report.symlinks >= 2, "{report:?}");
    let theirs = dir.path().join("theirs");
    run(Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:latest", img.display())])
        .arg(&theirs));
    let list = |root: &Path| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && find . | sort", root.display()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(list(&ours), list(&theirs.join("rootfs")));
    let out = Command::new(ours.join("bin/busybox"))
        .arg("echo")
        .arg("unpacked")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unpacked\n");
}

/// `dedge image` as a vendor uses it, with the dev board's data directory.
#[test]
fn image_commands_import_list_remove_and_collect() {
    if skip_unless_amd64() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = busybox_layout(dir.path(), "latest");
    let boards = dir.path().join("boards");
    std::fs::create_dir(&boards).unwrap();
    let board = boards.join("dev.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/dev-x86_64.toml"),
        &board,
    )
    .unwrap();
    let dedge = |args: &[&str]| {
        let o = bounded::output(
            Command::new(env!("CARGO_BIN_EXE_dedge"))
                .args(args)
                .arg("--board")
                .arg(&board),
            bounded::DEFAULT,
        )
        .unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = dedge(&[
        "image",
        "import",
        img.to_str().unwrap(),
        "--name",
        "busybox",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("busybox sha256:") && out.contains("verified"),
        "{out}"
    );
    let (_, out, _) = dedge(&["image", "ls", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "busybox");
    assert_eq!(v[0]["platform"]["architecture"], "amd64");
    let (code, out, _) = dedge(&["image", "gc"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("freed 0 blobs"), "{out}");
    assert_eq!(dedge(&["image", "rm", "busybox"]).0, 0);
    let (_, out, _) = dedge(&["image", "gc"]);
    assert!(out.starts_with("freed 3 blobs"), "{out}");
    let (code, _, err) = dedge(&["image", "rm", "busybox"]);
    assert_eq!(code, 1, "{err}");
    // A tampered layout fails with the digest named.
    let layer = std::fs::read_dir(img.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let (code, _, err) = dedge(&["image", "import", img.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("content hashes to"), "{err}");
}

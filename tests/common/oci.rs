//! OCI images made by the real tools for tests: umoci builds a layout from
//! a rootfs holding Debian's busybox-static.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dedge::board::values::Arch;
use dedge::runtime::image::Platform;

use super::bounded;

pub fn run(cmd: &mut Command) {
    let out = bounded::output(cmd, bounded::DEFAULT).unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (run tests/setup.sh: umoci, skopeo, busybox-static)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds (or adds tag `tag` to) the OCI layout `dir/img`: an empty rootfs
/// that `fill` populates, repacked as one layer, then `umoci config` with
/// `config` (plus the platform this test binary runs on, as the gateway's
/// own images would say).
pub fn build_image(dir: &Path, tag: &str, fill: impl FnOnce(&Path), config: &[&str]) -> PathBuf {
    let img = dir.join("img");
    if !img.exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(&img));
    }
    let image = format!("{}:{tag}", img.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    let bundle = dir.join(format!("bundle-{tag}"));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    fill(&bundle.join("rootfs"));
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    let mut args = vec!["config", "--image", &image];
    args.extend_from_slice(config);
    let here = Platform::of(Arch::of_this_build().expect("a gateway architecture"));
    // umoci cannot set a variant; the store matches a missing one (ARMv7's "v7").
    args.extend_from_slice(&["--os", "linux", "--architecture", &here.architecture]);
    run(Command::new("umoci").args(&args));
    img
}

/// Puts /bin/busybox and a symlink per applet in `applets` into `rootfs`
/// (every applet busybox has when `applets` is empty).
pub fn install_busybox(rootfs: &Path, applets: &[&str]) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let all;
    let list: Vec<&str> = if applets.is_empty() {
        let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
        all = String::from_utf8(out.stdout).unwrap();
        all.lines().filter(|a| *a != "busybox").collect()
    } else {
        applets.to_vec()
    };
    for applet in list {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// busybox with `sh` and `echo`, Cmd `echo hello`, Env GREETING=hi.
pub fn busybox_layout(dir: &Path, tag: &str) -> PathBuf {
    build_image(
        dir,
        tag,
        |rootfs| install_busybox(rootfs, &["sh", "echo"]),
        &[
            "--config.cmd",
            "/bin/echo",
            "--config.cmd",
            "hello",
            "--config.env",
            "GREETING=hi",
            "--config.workingdir",
            "/",
        ],
    )
}

/// busybox with every applet, Cmd `sh -c script`: the layout and its
/// manifest's digest (what a buyer names when it deploys).
pub fn script_image(dir: &Path, script: &str) -> (PathBuf, String) {
    let layout = build_image(
        dir,
        "v1",
        |root| install_busybox(root, &[]),
        &[
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            script,
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json names its manifest")
        .to_string();
    (layout, manifest)
}

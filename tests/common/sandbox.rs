//! A sandbox test environment: a temporary data dir, image store and
//! runtime under a test-only cgroup parent, images built from busybox by
//! umoci; everything removed on drop. `can_run` says SKIP loudly when the
//! machine lacks root or cgroup controllers.

#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dedge::board::host::CgroupSupport;
use dedge::board::values::{Arch, CgroupMode};
use dedge::runtime::cgroup::{Cgroup, Limits};
use dedge::runtime::container::{Config, Record, RecordStore, Rootfs, Runtime, Stdio};
use dedge::runtime::image::{ImageStore, Limits as ImageLimits, Platform};
use dedge::runtime::spec::{Overrides, Spec};
use dedge::runtime::unpack::Options;
use dedge::store::Store;

use super::oci::{build_image, install_busybox};

static N: AtomicU32 = AtomicU32::new(0);

/// `false` (after a loud SKIP) when this machine cannot run sandboxes. Where
/// a skip would hide a failure (CI, the VM rig's guests) `DEDGE_REQUIRE_SANDBOX=1`
/// turns it into a failed test.
pub fn can_run(test: &str) -> bool {
    let skip = |why: String| {
        if std::env::var_os("DEDGE_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
            panic!("{test}: DEDGE_REQUIRE_SANDBOX=1 but {why}");
        }
        eprintln!("SKIP {test}: {why}");
        false
    };
    if !nix::unistd::Uid::effective().is_root() {
        return skip("SANDBOX TESTS NEED ROOT (CI runs them as root)".into());
    }
    let cg = CgroupSupport::detect();
    let v2_ok = cg.missing_v2().is_some_and(|m| m.is_empty())
        && std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| m.contains(" /sys/fs/cgroup rw") && m.contains("cgroup2"));
    if !cg.missing_v1().is_empty() && !v2_ok {
        return skip(format!("CGROUP CONTROLLERS MISSING: {:?}", cg.missing_v1()));
    }
    true
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub images: ImageStore,
    pub rt: Option<Runtime>,
    pub parent: String,
    /// Records as files (the CLI's way) instead of in sled (the agent's).
    pub files: bool,
}

impl Env {
    pub fn new() -> Env {
        Env::with_records(false)
    }

    pub fn with_records(files: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::temporary().unwrap();
        let images =
            ImageStore::open(&dir.path().join("images"), &store, ImageLimits::default()).unwrap();
        let parent = format!(
            "dedge-test/{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut env = Env {
            dir,
            store,
            images,
            rt: None,
            parent,
            files,
        };
        env.rt = Some(env.open_runtime());
        env
    }

    pub fn config(&self) -> Config {
        Config {
            dir: self.dir.path().join("containers"),
            cgroup: CgroupMode::Auto,
            cgroup_parent: self.parent.clone(),
            cgroup_delegated: None,
            die_with_parent: false,
        }
    }

    /// A second runtime on the same state, as an agent after a restart.
    pub fn open_runtime(&self) -> Runtime {
        let records = if self.files {
            RecordStore::Files
        } else {
            RecordStore::sled(&self.store).unwrap()
        };
        Runtime::open(self.config(), records).unwrap()
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    /// Imports a busybox image with every applet; `fill` adds to its rootfs.
    pub fn image(&self, name: &str, fill: impl FnOnce(&Path), config: &[&str]) {
        let layout = build_image(
            self.dir.path(),
            name,
            |root| {
                install_busybox(root, &[]);
                fill(root);
            },
            config,
        );
        let here = Platform::of(Arch::of_this_build().unwrap());
        self.images
            .import(&layout, Some(name), &here, name)
            .unwrap();
    }

    pub fn spec(&self, image: &str, rootfs: &Path, cmd: &[&str], limits: Limits) -> Spec {
        let img = self.images.get(image).unwrap();
        Spec::new(
            &img.run,
            rootfs,
            Overrides {
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                hostname: "sandbox".into(),
                limits,
            },
        )
        .unwrap()
    }

    pub fn create(
        &self,
        id: &str,
        image: &str,
        cmd: &[&str],
        limits: Limits,
    ) -> dedge::runtime::Result<Record> {
        let rootfs = self.rt().prepare(id).unwrap();
        let img = self.images.get(image).unwrap();
        self.images
            .unpack(&img, &rootfs, Options::default())
            .unwrap();
        let spec = self.spec(image, &rootfs, cmd, limits);
        self.rt().create(
            id,
            Rootfs::Prepared,
            &spec,
            Stdio::Logs { cap: 64 * 1024 },
            false,
        )
    }

    /// Creates, starts and waits; returns the record and stdout.
    pub fn run(&self, id: &str, image: &str, cmd: &[&str], limits: Limits) -> (Record, String) {
        self.create(id, image, cmd, limits).unwrap();
        self.rt().start(id).unwrap();
        let r = self.rt().wait(id, Some(Duration::from_secs(60))).unwrap();
        (r, self.stdout(id))
    }

    pub fn stdout(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.rt().logs(id).unwrap().0).into_owned()
    }

    pub fn stderr(&self, id: &str) -> String {
        String::from_utf8_lossy(&self.rt().logs(id).unwrap().1).into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(rt) = &self.rt {
            for r in rt.list().unwrap_or_default() {
                let _ = rt.delete(&r.id);
            }
        }
        let _ = Cgroup::load(CgroupMode::Auto, &self.parent).and_then(|c| c.remove());
    }
}

/// The dev board's text for the architecture these tests run on (the VM
/// rig runs them on aarch64 and ARMv7 kernels too).
pub fn dev_board_text() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/dev-x86_64.toml"),
    )
    .unwrap();
    let here = Arch::of_this_build().expect("a gateway architecture");
    text.replacen(
        "arch = \"x86_64\"",
        &format!("arch = \"{}\"", here.as_str()),
        1,
    )
}

pub fn limits(memory_mib: u64, pids: u64, millicores: u32) -> Limits {
    Limits {
        cpu_millicores: Some(millicores),
        memory: Some(memory_mib << 20),
        pids: Some(pids),
    }
}

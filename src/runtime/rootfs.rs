//! The container's filesystem view, built in its new mount namespace: one
//! function per step, called in the order of `docs/sandbox.md` §3.
//!
//! Everything after `pivot` resolves paths inside the new root, so a symlink
//! the image planted at `/proc` or `/dev` can only point back into the
//! container; such a symlink is refused anyway (`ensure_dir`). Nothing here
//! allocates: it runs between `fork` and `execve` (see `sys.rs`).

use std::ffi::CStr;

use libc::c_ulong;
use nix::errno::Errno;

use super::sys::{Kind, Sys};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// proc files hidden behind /dev/null, directories behind an empty
/// read-only tmpfs (they leak host details or allow kernel interaction).
const MASKED: &[&CStr] = &[
    c"/proc/acpi",
    c"/proc/asound",
    c"/proc/interrupts",
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/latency_stats",
    c"/proc/sched_debug",
    c"/proc/scsi",
    c"/proc/timer_list",
    c"/proc/timer_stats",
];

/// proc paths left readable but not writable.
const READ_ONLY: &[&CStr] = &[
    c"/proc/bus",
    c"/proc/fs",
    c"/proc/irq",
    c"/proc/sys",
    c"/proc/sysrq-trigger",
];

/// Character devices created in the fresh /dev: (path, major, minor).
const DEVICES: &[(&CStr, u32, u32)] = &[
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
    (c"/dev/tty", 5, 0),
];

/// Standard /dev symlinks: (target, link).
const DEV_LINKS: &[(&CStr, &CStr)] = &[
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
    (c"pts/ptmx", c"/dev/ptmx"),
];

const NOSUID: c_ulong = libc::MS_NOSUID;
const NODEV: c_ulong = libc::MS_NODEV;
const NOEXEC: c_ulong = libc::MS_NOEXEC;

/// Stops mount events flowing back to the host: every mount in the copied
/// namespace becomes private, recursively.
pub(crate) fn make_private(sys: &dyn Sys) -> Result<(), Errno> {
    sys.mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// Makes the rootfs a mount point of its own, which `pivot_root` needs.
pub(crate) fn bind_rootfs(sys: &dyn Sys, rootfs: &CStr) -> Result<(), Errno> {
    sys.mount(
        Some(rootfs),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

/// Swaps the root for the rootfs and detaches the old one, so no path in
/// the container leads back to the host's files (`pivot_root(".", ".")`:
/// the old root ends up stacked on `/`, then is lazily unmounted).
pub(crate) fn pivot(sys: &dyn Sys, rootfs: &CStr) -> Result<(), Errno> {
    sys.chdir(rootfs)?;
    sys.pivot_root(c".", c".")?;
    sys.umount_detach(c".")?;
    sys.chdir(c"/")
}

/// `path` must be a real directory of the image, or absent (then made).
/// A symlink or file there is refused: it is how images redirect mounts.
fn ensure_dir(sys: &dyn Sys, path: &CStr) -> Result<(), Errno> {
    match sys.kind(path)? {
        Kind::Dir => Ok(()),
        Kind::Missing => sys.mkdir(path, 0o755),
        _ => Err(Errno::ENOTDIR),
    }
}

/// A fresh procfs for the new PID namespace, checked to be procfs (a FUSE
/// or tmpfs posing as /proc would hide the masks).
pub(crate) fn mount_proc(sys: &dyn Sys) -> Result<(), Errno> {
    ensure_dir(sys, c"/proc")?;
    sys.mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        NOSUID | NODEV | NOEXEC,
        None,
    )?;
    if sys.fs_magic(c"/proc")? != PROC_SUPER_MAGIC {
        return Err(Errno::EXDEV);
    }
    Ok(())
}

/// A minimal /dev on a small tmpfs: device nodes made here, never bound
/// from the host; a private devpts and a /dev/shm.
pub(crate) fn mount_dev(sys: &dyn Sys) -> Result<(), Errno> {
    ensure_dir(sys, c"/dev")?;
    sys.mount(
        Some(c"tmpfs"),
        c"/dev",
        Some(c"tmpfs"),
        NOSUID | NOEXEC,
        Some(c"mode=755,size=64k,nr_inodes=64"),
    )?;
    for (path, major, minor) in DEVICES {
        sys.mknod(path, libc::S_IFCHR | 0o666, libc::makedev(*major, *minor))?;
    }
    for (target, link) in DEV_LINKS {
        sys.symlink(target, link)?;
    }
    sys.mkdir(c"/dev/pts", 0o755)?;
    sys.mount(
        Some(c"devpts"),
        c"/dev/pts",
        Some(c"devpts"),
        NOSUID | NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620"),
    )?;
    sys.mkdir(c"/dev/shm", 0o1777)?;
    sys.mount(
        Some(c"shm"),
        c"/dev/shm",
        Some(c"tmpfs"),
        NOSUID | NODEV | NOEXEC,
        Some(c"mode=1777,size=65536k"),
    )
}

/// Hides the `MASKED` proc paths and makes the `READ_ONLY` ones so. Paths
/// the kernel does not have are skipped.
pub(crate) fn mask_proc(sys: &dyn Sys) -> Result<(), Errno> {
    for path in MASKED {
        match sys.kind(path)? {
            Kind::Missing => {}
            Kind::Dir => sys.mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
                Some(c"size=0"),
            )?,
            _ => sys.mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None)?,
        }
    }
    for path in READ_ONLY {
        if sys.kind(path)? == Kind::Missing {
            continue;
        }
        sys.mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
        sys.mount(
            None,
            path,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV | NOEXEC,
            None,
        )?;
    }
    Ok(())
}

/// The container's only writable place: a tmpfs at /tmp whose pages are
/// charged to its memory cgroup. `opts` carries the size.
pub(crate) fn mount_tmp(sys: &dyn Sys, opts: &CStr) -> Result<(), Errno> {
    ensure_dir(sys, c"/tmp")?;
    sys.mount(
        Some(c"tmpfs"),
        c"/tmp",
        Some(c"tmpfs"),
        NOSUID | NODEV,
        Some(opts),
    )
}

/// Remounts the rootfs read-only, nosuid, nodev: a tenant never writes to
/// the gateway's flash, and nothing in the image gains privileges.
pub(crate) fn seal_rootfs(sys: &dyn Sys) -> Result<(), Errno> {
    sys.mount(
        None,
        c"/",
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | NOSUID | NODEV,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Records every call; answers `kind` from a map of the image's paths.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        image: HashMap<&'static str, Kind>,
        magic: i64,
    }

    fn s(c: Option<&CStr>) -> String {
        c.map_or("-".into(), |c| c.to_string_lossy().into_owned())
    }

    impl Sys for Recorder {
        fn mount(
            &self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: c_ulong,
            data: Option<&CStr>,
        ) -> Result<(), Errno> {
            self.calls.borrow_mut().push(format!(
                "mount {} {} {} {flags:#x} {}",
                s(source),
                s(Some(target)),
                s(fstype),
                s(data)
            ));
            Ok(())
        }
        fn umount_detach(&self, target: &CStr) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("umount {}", s(Some(target))));
            Ok(())
        }
        fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
            self.calls.borrow_mut().push(format!(
                "pivot_root {} {}",
                s(Some(new_root)),
                s(Some(put_old))
            ));
            Ok(())
        }
        fn chdir(&self, path: &CStr) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("chdir {}", s(Some(path))));
            Ok(())
        }
        fn mkdir(&self, path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("mkdir {} {mode:o}", s(Some(path))));
            Ok(())
        }
        fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), Errno> {
            self.calls.borrow_mut().push(format!(
                "mknod {} {mode:o} {}:{}",
                s(Some(path)),
                libc::major(dev),
                libc::minor(dev)
            ));
            Ok(())
        }
        fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("symlink {} {}", s(Some(target)), s(Some(link))));
            Ok(())
        }
        fn kind(&self, path: &CStr) -> Result<Kind, Errno> {
            let p = path.to_str().unwrap_or("");
            Ok(*self.image.get(p).unwrap_or(&Kind::Missing))
        }
        fn fs_magic(&self, _: &CStr) -> Result<i64, Errno> {
            Ok(self.magic)
        }
    }

    fn recorder(image: &[(&'static str, Kind)]) -> Recorder {
        Recorder {
            image: image.iter().copied().collect(),
            magic: PROC_SUPER_MAGIC,
            ..Recorder::default()
        }
    }

    #[test]
    fn pivot_detaches_the_old_root_and_leaves_cwd_at_the_new_one() {
        let r = recorder(&[]);
        make_private(&r).unwrap();
        bind_rootfs(&r, c"/data/c/rootfs").unwrap();
        pivot(&r, c"/data/c/rootfs").unwrap();
        assert_eq!(
            *r.calls.borrow(),
            [
                "mount - / - 0x44000 -",
                "mount /data/c/rootfs /data/c/rootfs - 0x5000 -",
                "chdir /data/c/rootfs",
                "pivot_root . .",
                "umount .",
                "chdir /",
            ]
        );
    }

    #[test]
    fn a_symlink_or_file_where_proc_or_dev_goes_is_refused() {
        for (path, kind) in [("/proc", Kind::Symlink), ("/proc", Kind::File)] {
            let r = recorder(&[(path, kind)]);
            assert_eq!(mount_proc(&r), Err(Errno::ENOTDIR));
            assert!(r.calls.borrow().is_empty(), "mounted over a {kind:?}");
        }
        let r = recorder(&[("/dev", Kind::Symlink)]);
        assert_eq!(mount_dev(&r), Err(Errno::ENOTDIR));
        let r = recorder(&[("/tmp", Kind::Other)]);
        assert_eq!(mount_tmp(&r, c"size=1m"), Err(Errno::ENOTDIR));
    }

    #[test]
    fn proc_must_really_be_procfs() {
        let mut r = recorder(&[("/proc", Kind::Dir)]);
        r.magic = 0x0102_1994; // tmpfs
        assert_eq!(mount_proc(&r), Err(Errno::EXDEV));
        r.magic = PROC_SUPER_MAGIC;
        mount_proc(&r).unwrap();
    }

    #[test]
    fn missing_dirs_are_made_and_dev_is_built_not_bound() {
        let r = recorder(&[]);
        mount_dev(&r).unwrap();
        let calls = r.calls.borrow();
        assert_eq!(calls[0], "mkdir /dev 755");
        assert!(calls[1].starts_with("mount tmpfs /dev tmpfs"));
        assert!(calls.contains(&"mknod /dev/null 20666 1:3".to_string()));
        assert!(calls.contains(&"mknod /dev/urandom 20666 1:9".to_string()));
        // Nothing comes from the host: no bind mount of any device.
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("0x1000 ") && c.contains("/dev/"))
        );
    }

    #[test]
    fn masks_cover_files_and_dirs_and_skip_what_the_kernel_lacks() {
        let r = recorder(&[
            ("/proc/kcore", Kind::File),
            ("/proc/acpi", Kind::Dir),
            ("/proc/sys", Kind::Dir),
        ]);
        mask_proc(&r).unwrap();
        let calls = r.calls.borrow();
        assert!(calls.contains(&"mount /dev/null /proc/kcore - 0x1000 -".to_string()));
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("mount tmpfs /proc/acpi tmpfs 0x"))
        );
        assert!(
            calls
                .iter()
                .any(|c| c == "mount /proc/sys /proc/sys - 0x5000 -")
        );
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("mount - /proc/sys - 0x"))
        );
        assert!(!calls.iter().any(|c| c.contains("/proc/keys")));
        assert_eq!(calls.len(), 4);
    }
}

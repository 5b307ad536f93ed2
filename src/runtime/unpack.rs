//! Applying image layers to a lease's root filesystem without ever touching
//! a byte outside it.
//!
//! Every path is resolved from a directory file descriptor of the root, one
//! component at a time with `O_NOFOLLOW`: `..` stops at the root, and a
//! symlink met on the way is expanded *inside* the root (an absolute target
//! restarts at the root), as `openat2(RESOLVE_IN_ROOT)` would. The last
//! component is never followed: an entry replaces a symlink, it does not
//! write through it. So no layer, alone or with the ones below it, can write,
//! link, chmod, chown or delete outside the root (the tar path traversal,
//! cross-layer symlink and whiteout-through-symlink classes: runc/umoci
//! CVE-2018-15664, CVE-2021-29136 and their kin; `tests/unpack.rs` crafts
//! one image per class).
//!
//! Refused: entries whose path holds `..`, a `.` entry that is not a
//! directory, whiteouts naming `.` or `..`. Dropped (and reported): device
//! nodes and FIFOs (the sandbox builds its own /dev), setuid/setgid bits.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use super::{Error, Result};

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_LINKS: u32 = 40;
const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub files: u64,
    pub(crate) dirs: u64,
    pub symlinks: u64,
    pub(crate) hardlinks: u64,
    pub(crate) whiteouts: u64,
    pub bytes: u64,
    /// Entries left out on purpose (devices, FIFOs), by path.
    pub dropped: Vec<String>,
}

fn escape(path: &str, why: &str) -> Error {
    Error::Invalid(format!("layer entry `{path}`: {why}"))
}

fn sys(path: &str, what: &str, e: Errno) -> Error {
    Error::Io {
        path: path.to_string(),
        source: io::Error::other(format!("{what}: {e}")),
    }
}

/// Splits an entry path into components: leading `/` and `./` dropped (a
/// layer's paths are root-relative), `.` skipped, `..` refused.
fn components(raw: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(escape(raw, "`..` would climb out of the root")),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

fn open_dir(at: &impl AsFd, name: &str) -> nix::Result<OwnedFd> {
    openat(
        at,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `dirs` under `root`, resolving symlinks inside the
/// root; creates missing directories (mode 0755) when `create`. `None` when
/// it does not exist and `create` is false.
fn open_in_root(
    root: &OwnedFd,
    dirs: &[String],
    create: bool,
    path: &str,
) -> Result<Option<OwnedFd>> {
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut queue: VecDeque<String> = dirs.iter().cloned().collect();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                stack.pop(); // never above the root
                continue;
            }
            _ => {}
        }
        let cur: &OwnedFd = stack.last().unwrap_or(root);
        match open_dir(cur, c.as_str()) {
            Ok(fd) => stack.push(fd),
            Err(Errno::ENOENT) if create => {
                match mkdirat(cur, c.as_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys(path, "mkdir", e)),
                }
                stack.push(open_dir(cur, c.as_str()).map_err(|e| sys(path, "open", e))?);
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                // A symlink: expand it here, inside the root. Anything else
                // (a file where a directory should be) is an error.
                let target = readlinkat(cur, c.as_str())
                    .map_err(|_| escape(path, &format!("`{c}` is not a directory")))?;
                links += 1;
                if links > MAX_LINKS {
                    return Err(escape(path, "too many symlinks"));
                }
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    stack.clear();
                }
                for part in target.split('/').rev() {
                    queue.push_front(part.to_string());
                }
            }
            Err(e) => return Err(sys(path, "open", e)),
        }
    }
    match stack.pop() {
        Some(fd) => Ok(Some(fd)),
        None => root.try_clone().map(Some).map_err(|e| Error::Io {
            path: path.to_string(),
            source: e,
        }),
    }
}

/// Reads a small file of an unpacked root, every symlink on the way (the
/// last one too) resolved inside the root: an image's `/etc/passwd` may be a
/// link to anywhere. `None` when the file does not exist.
pub(crate) fn read_in_root(root: &Path, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys(&root.display().to_string(), "open root", e))?;
    let mut want = path.to_string();
    for _ in 0..MAX_LINKS {
        // `..` is kept: `open_in_root` stops it at the root.
        let comps: Vec<String> = want
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect();
        let Some((name, parents)) = comps.split_last().filter(|(n, _)| *n != "..") else {
            return Err(escape(path, "names a directory"));
        };
        let Some(dir) = open_in_root(&root_fd, parents, false, path)? else {
            return Ok(None);
        };
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        match openat(&dir, name.as_str(), flags, Mode::empty()) {
            Ok(fd) => {
                let mut out = Vec::new();
                File::from(fd)
                    .take(max + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| Error::Io {
                        path: path.to_string(),
                        source: e,
                    })?;
                if out.len() as u64 > max {
                    return Err(Error::TooLarge(format!("{path} is over {max} bytes")));
                }
                return Ok(Some(out));
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                let target =
                    readlinkat(&dir, name.as_str()).map_err(|e| sys(path, "readlink", e))?;
                let target = target.to_string_lossy();
                want = if target.starts_with('/') {
                    target.into_owned()
                } else {
                    format!("{}/{target}", parents.join("/"))
                };
            }
            Err(e) => return Err(sys(path, "open", e)),
        }
    }
    Err(escape(path, "too many symlinks"))
}

/// Removes `name` in `dir`: a file or symlink itself (never its target), a
/// directory with everything below it.
fn remove_at(dir: &OwnedFd, name: &str) -> Result<()> {
    match open_dir(dir, name) {
        Ok(fd) => {
            let children: Vec<String> = {
                let list = fd.try_clone().map_err(|e| Error::Io {
                    path: name.to_string(),
                    source: e,
                })?;
                let mut d = nix::dir::Dir::from_fd(list).map_err(|e| sys(name, "readdir", e))?;
                d.iter()
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        OsStr::from_bytes(e.file_name().to_bytes())
                            .to_string_lossy()
                            .into_owned()
                    })
                    .filter(|n| n != "." && n != "..")
                    .collect()
            };
            for child in children {
                remove_at(&fd, &child)?;
            }
            unlinkat(dir, name, UnlinkatFlags::RemoveDir).map_err(|e| sys(name, "rmdir", e))
        }
        Err(Errno::ENOENT) => Ok(()),
        Err(_) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(sys(name, "unlink", e)),
        },
    }
}

/// Options for [`apply_layer`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Set owners from the tar headers (needs root or the lease's user
    /// namespace); otherwise files belong to whoever unpacks.
    pub chown: bool,
    /// Stop after this many entries (a layer of a million empty files is an attack).
    pub max_entries: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chown: Uid::effective().is_root(),
            max_entries: 1_000_000,
        }
    }
}

/// Applies one uncompressed layer tar to the root filesystem at `root`.
pub fn apply_layer(root: &Path, layer: impl Read, opts: Options) -> Result<Report> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys(&root.display().to_string(), "open root", e))?;
    let mut report = Report::default();
    // Paths this layer wrote: an opaque whiteout keeps them, removes the rest.
    let mut written: HashSet<Vec<String>> = HashSet::new();
    let mut archive = tar::Archive::new(layer);
    let entries = archive.entries().map_err(|e| Error::Io {
        path: "layer".into(),
        source: e,
    })?;
    for (n, entry) in entries.enumerate() {
        if n as u64 >= opts.max_entries {
            return Err(Error::TooLarge(format!(
                "layer has more than {} entries",
                opts.max_entries
            )));
        }
        let mut entry = entry.map_err(|e| Error::Io {
            path: "layer".into(),
            source: e,
        })?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let comps = components(&raw)?;
        let kind = entry.header().entry_type();
        let Some((name, parents)) = comps.split_last() else {
            if !kind.is_dir() {
                return Err(escape(&raw, "a `.` entry that is not a directory"));
            }
            continue;
        };
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            report.whiteouts += 1;
            // Whiteouts only remove; a missing parent means nothing to remove.
            let Some(dir) = open_in_root(&root_fd, parents, false, &raw)? else {
                continue;
            };
            if name == OPAQUE {
                opaque(&dir, parents, &written, &raw)?;
            } else {
                if hidden.is_empty() || hidden == "." || hidden == ".." {
                    return Err(escape(&raw, "a whiteout must name an entry"));
                }
                remove_at(&dir, hidden)?;
            }
            continue;
        }
        let dir = open_in_root(&root_fd, parents, true, &raw)?
            .ok_or_else(|| escape(&raw, "parent missing"))?;
        let mode = entry.header().mode().unwrap_or(0o644);
        match kind {
            tar::EntryType::Directory => {
                let fd = match open_dir(&dir, name) {
                    Ok(fd) => fd,
                    Err(_) => {
                        remove_at(&dir, name)?;
                        mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o700))
                            .map_err(|e| sys(&raw, "mkdir", e))?;
                        open_dir(&dir, name).map_err(|e| sys(&raw, "open", e))?
                    }
                };
                // Sticky stays (/tmp); setuid and setgid go.
                fchmod(&fd, Mode::from_bits_truncate(mode & 0o1777))
                    .map_err(|e| sys(&raw, "chmod", e))?;
                report.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_at(&dir, name)?;
                let fd = openat(
                    &dir,
                    name.as_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| sys(&raw, "create", e))?;
                fchmod(&fd, Mode::from_bits_truncate(mode & 0o777))
                    .map_err(|e| sys(&raw, "chmod", e))?;
                let mut file = File::from(fd);
                report.bytes += io::copy(&mut entry, &mut file).map_err(|e| Error::Io {
                    path: raw.clone(),
                    source: e,
                })?;
                report.files += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| escape(&raw, "symlink without a target"))?;
                remove_at(&dir, name)?;
                // The target is stored as data; it is only ever resolved inside the root.
                symlinkat(OsStr::from_bytes(&target), &dir, name.as_str())
                    .map_err(|e| sys(&raw, "symlink", e))?;
                report.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let tcomps = components(&target)?;
                let (tname, tparents) = tcomps
                    .split_last()
                    .ok_or_else(|| escape(&raw, "hard link to the root"))?;
                let tdir = open_in_root(&root_fd, tparents, false, &raw)?.ok_or_else(|| {
                    escape(&raw, &format!("hard link target `{target}` does not exist"))
                })?;
                remove_at(&dir, name)?;
                // Flags empty: a link to a symlink links the symlink itself.
                linkat(&tdir, tname.as_str(), &dir, name.as_str(), AtFlags::empty())
                    .map_err(|e| sys(&raw, &format!("link to `{target}`"), e))?;
                report.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                report.dropped.push(raw.clone());
                continue;
            }
            _ => continue, // pax and GNU long-name headers are consumed by the tar reader
        }
        if opts.chown {
            let uid = entry
                .header()
                .uid()
                .ok()
                .and_then(|u| u32::try_from(u).ok())
                .map(Uid::from_raw);
            let gid = entry
                .header()
                .gid()
                .ok()
                .and_then(|g| u32::try_from(g).ok())
                .map(Gid::from_raw);
            fchownat(&dir, name.as_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| sys(&raw, "chown", e))?;
        }
        // With its parents: they hold what this layer wrote.
        for i in 1..=comps.len() {
            written.insert(comps[..i].to_vec());
        }
    }
    Ok(report)
}

/// An opaque whiteout: everything in the directory that this layer did not
/// write itself comes from lower layers and goes.
fn opaque(
    dir: &OwnedFd,
    parents: &[String],
    written: &HashSet<Vec<String>>,
    raw: &str,
) -> Result<()> {
    let list = dir.try_clone().map_err(|e| Error::Io {
        path: raw.to_string(),
        source: e,
    })?;
    let mut d = nix::dir::Dir::from_fd(list).map_err(|e| sys(raw, "readdir", e))?;
    let names: Vec<String> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| {
            OsStr::from_bytes(e.file_name().to_bytes())
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in names {
        let mut path = parents.to_vec();
        path.push(name.clone());
        if !written.contains(&path) {
            remove_at(dir, &name)?;
        }
    }
    Ok(())
}

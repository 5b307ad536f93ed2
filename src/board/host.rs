//! Checks of a board against the machine the agent runs on: a file that
//! passes `check.rs` on a laptop can still offer more memory than the gateway
//! has, or ask for a cgroup controller its kernel was booted without.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::check::Finding;
use super::locate::{KeyPath, key_path};
use super::schema::Board;
use super::values::{Arch, CgroupMode};
use crate::units::ByteSize;

/// What the machine offers, read once so checks are plain functions of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub(crate) arch: Option<Arch>,
    pub(crate) cpus: u32,
    pub(crate) memory: Option<ByteSize>,
    pub(crate) cgroups: CgroupSupport,
}

/// Controllers available on each cgroup hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSupport {
    /// Controllers mounted as v1 hierarchies.
    pub v1: Vec<String>,
    /// Controllers enabled at the root of the v2 (unified) hierarchy, if one is mounted.
    pub v2: Option<Vec<String>>,
    /// Where that hierarchy is mounted.
    pub(crate) v2_mount: Option<PathBuf>,
}

/// Controllers a lease's sandbox needs on each version. On v2 the freezer is
/// built into every cgroup (`cgroup.freeze`), so it is not listed.
const NEEDED_V1: &[&str] = &["cpu", "memory", "pids", "freezer"];
const NEEDED_V2: &[&str] = &["cpu", "memory", "pids"];

/// v1 super-options that name a controller (the rest are mount flags).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "freezer",
    "devices",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
];

impl CgroupSupport {
    /// Reads `/proc/self/mountinfo` and the v2 root's `cgroup.controllers`.
    pub fn detect() -> CgroupSupport {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_mountinfo(&mountinfo, |mount_point| {
            fs::read_to_string(mount_point.join("cgroup.controllers")).ok()
        })
    }

    /// Parses mountinfo text; `read_controllers` reads a v2 mount's
    /// `cgroup.controllers` (a parameter so tests need no real mounts).
    fn from_mountinfo(
        mountinfo: &str,
        read_controllers: impl Fn(&Path) -> Option<String>,
    ) -> CgroupSupport {
        let mut support = CgroupSupport::default();
        for line in mountinfo.lines() {
            // Fields: id parent maj:min root mount-point opts [optional...] - fstype source super-opts
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split(' ');
            let (Some(fstype), Some(_source), Some(super_opts)) =
                (post.next(), post.next(), post.next())
            else {
                continue;
            };
            let Some(mount_point) = pre.split(' ').nth(4) else {
                continue;
            };
            match fstype {
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) && !support.v1.iter().any(|c| c == opt) {
                            support.v1.push(opt.to_string());
                        }
                    }
                }
                "cgroup2" if support.v2.is_none() => {
                    let mp = PathBuf::from(unescape_mountinfo(mount_point));
                    let controllers = read_controllers(&mp).unwrap_or_default();
                    support.v2 = Some(controllers.split_whitespace().map(String::from).collect());
                    support.v2_mount = Some(mp);
                }
                _ => {}
            }
        }
        support
    }

    pub fn missing_v1(&self) -> Vec<&'static str> {
        missing(NEEDED_V1, &self.v1)
    }

    /// `None` when no v2 hierarchy is mounted at all.
    pub fn missing_v2(&self) -> Option<Vec<&'static str>> {
        self.v2.as_ref().map(|have| missing(NEEDED_V2, have))
    }
}

fn missing(needed: &[&'static str], have: &[String]) -> Vec<&'static str> {
    needed
        .iter()
        .copied()
        .filter(|n| !have.iter().any(|h| h == n))
        .collect()
}

/// Mount points in mountinfo escape space, tab, newline and `\` as octal.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl HostFacts {
    pub(crate) fn detect() -> HostFacts {
        HostFacts {
            arch: Arch::of_this_build(),
            cpus: std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            memory: fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total(&m)),
            cgroups: CgroupSupport::detect(),
        }
    }
}

/// `MemTotal:  3884376 kB` from /proc/meminfo.
fn mem_total(meminfo: &str) -> Option<ByteSize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024).map(ByteSize)
}

/// Problems running `board` on the machine described by `facts`.
pub(crate) fn check_host(board: &Board, facts: &HostFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |path: KeyPath, message: String, hint: Option<String>| {
        out.push(Finding {
            path,
            message,
            hint,
        });
    };
    match facts.arch {
        Some(arch) if arch == board.board.arch => {}
        other => add(
            key_path!("board", "arch"),
            format!(
                "the board is {} but this machine runs {}",
                board.board.arch,
                other.map_or(std::env::consts::ARCH, Arch::as_str)
            ),
            Some("use the board file made for this gateway".into()),
        ),
    }
    let host_millicores = u64::from(facts.cpus) * 1000;
    if u64::from(board.resources.cpu_millicores) > host_millicores {
        add(
            key_path!("resources", "cpu_millicores"),
            format!(
                "{} millicores offered but this machine has {} CPUs",
                board.resources.cpu_millicores, facts.cpus
            ),
            Some(format!("offer at most {host_millicores}")),
        );
    }
    match facts.memory {
        Some(mem) if board.resources.memory > mem => add(
            key_path!("resources", "memory"),
            format!(
                "{} offered but this machine has {} of physical memory",
                board.resources.memory, mem
            ),
            Some(format!("offer less than {mem}")),
        ),
        Some(_) => {}
        None => add(
            key_path!("resources", "memory"),
            "cannot read MemTotal from /proc/meminfo to check the memory offered".into(),
            None,
        ),
    }
    if let Some(finding) = check_disk(board) {
        out.push(finding);
    }
    if let Some(finding) = check_cgroups(board.board.cgroup, &facts.cgroups) {
        out.push(finding);
    } else if let Some(finding) = check_cgroup_parent(board, &facts.cgroups) {
        out.push(finding);
    }
    out.extend(check_secret_files(board));
    out
}

/// Disk offered must fit the filesystem that holds the data directory.
fn check_disk(board: &Board) -> Option<Finding> {
    let dir = &board.agent.data_dir;
    let existing = dir.ancestors().find(|p| p.exists())?;
    let stat = match nix::sys::statvfs::statvfs(existing) {
        Ok(s) => s,
        Err(e) => {
            return Some(Finding {
                path: key_path!("agent", "data_dir"),
                message: format!("cannot stat {}: {e}", existing.display()),
                hint: None,
            });
        }
    };
    // Block counts and sizes are u32 on 32-bit targets (ARMv7).
    #[allow(clippy::useless_conversion)]
    let total = ByteSize(u64::from(stat.blocks()).saturating_mul(u64::from(stat.fragment_size())));
    (board.resources.disk > total).then(|| Finding {
        path: key_path!("resources", "disk"),
        message: format!(
            "{} of disk offered but the filesystem holding {} is only {}",
            board.resources.disk,
            dir.display(),
            total
        ),
        hint: Some("offer less disk or move data_dir to a larger filesystem".into()),
    })
}

fn check_cgroups(mode: CgroupMode, have: &CgroupSupport) -> Option<Finding> {
    let v1_missing = have.missing_v1();
    let v2_missing = have.missing_v2();
    let v1_ok = v1_missing.is_empty();
    let v2_ok = v2_missing.as_ref().is_some_and(|m| m.is_empty());
    let describe_v2 = || match &v2_missing {
        None => "no cgroup2 hierarchy is mounted".to_string(),
        Some(m) => format!("the cgroup2 root lacks controllers: {}", m.join(", ")),
    };
    let describe_v1 = || format!("cgroup v1 lacks controllers: {}", v1_missing.join(", "));
    let memory_hint = || {
        let memory_missing = v1_missing.contains(&"memory")
            || v2_missing.as_ref().is_some_and(|m| m.contains(&"memory"));
        memory_missing.then(|| {
            "the memory controller is off (Raspberry Pi kernels boot with `cgroup_disable=memory`): \
             add `cgroup_enable=memory` at the end of the kernel command line (the one line of \
             /boot/firmware/cmdline.txt on Raspberry Pi OS Bookworm, /boot/cmdline.txt before) \
             and reboot; `cat /sys/fs/cgroup/cgroup.controllers` must then list memory \
             (6.12 kernels no longer list it in /proc/cgroups)"
                .to_string()
        })
    };
    let message = match mode {
        CgroupMode::V1 if !v1_ok => describe_v1(),
        CgroupMode::V2 if !v2_ok => describe_v2(),
        CgroupMode::Auto if !v1_ok && !v2_ok => format!("{}; {}", describe_v2(), describe_v1()),
        _ => return None,
    };
    Some(Finding {
        path: key_path!("board", "cgroup"),
        message,
        hint: memory_hint().or(Some("set cgroup to the version this OS mounts".into())),
    })
}

/// On a unified (v2) host, the cgroup leases go under must be one the
/// agent may use: present when named (under systemd it is the delegated
/// `dedge-leases.service`, never made by the agent), given cpu, memory and
/// pids by its parent, and a domain cgroup (memory and pids cannot run in
/// threaded mode).
fn check_cgroup_parent(board: &Board, have: &CgroupSupport) -> Option<Finding> {
    // The runtime drives v2 only where it is mounted at /sys/fs/cgroup.
    let mount = have
        .v2_mount
        .as_deref()
        .filter(|m| *m == Path::new("/sys/fs/cgroup"))?;
    let v2_in_use = match board.board.cgroup {
        CgroupMode::V1 => false,
        CgroupMode::V2 => true,
        CgroupMode::Auto => have.missing_v2().is_some_and(|m| m.is_empty()),
    };
    v2_in_use.then(|| check_parent_dir(board, mount)).flatten()
}

fn check_parent_dir(board: &Board, mount: &Path) -> Option<Finding> {
    let parent = &board.agent.cgroup_parent;
    let dir = mount.join(parent.relative());
    let finding = |message: String, hint: &str| Finding {
        path: key_path!("agent", "cgroup_parent"),
        message,
        hint: Some(hint.into()),
    };
    if !dir.is_dir() {
        parent.delegated()?; // the default: the agent makes /dedge itself
        return Some(finding(
            format!("the cgroup {parent} does not exist"),
            "under systemd it is the cgroup of dedge-leases.service: install \
             boards/dedge-leases.service and `systemctl enable --now dedge-leases`",
        ));
    }
    let kind = match fs::read_to_string(dir.join("cgroup.type")) {
        Ok(kind) => kind,
        Err(e) => {
            return Some(finding(
                format!("cannot read {}/cgroup.type: {e}", dir.display()),
                "run the check as root on the gateway",
            ));
        }
    };
    if kind.trim() != "domain" {
        return Some(finding(
            format!(
                "the cgroup {parent} is `{}`, not a domain cgroup",
                kind.trim()
            ),
            "leases need the memory and pids controllers, which threaded cgroups cannot \
             have: use a cgroup outside any threaded subtree",
        ));
    }
    let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let have: Vec<String> = controllers.split_whitespace().map(String::from).collect();
    let lacking = missing(NEEDED_V2, &have);
    (!lacking.is_empty()).then(|| {
        finding(
            format!(
                "the cgroup {parent} is not given controllers: {}",
                lacking.join(", ")
            ),
            "its unit needs Delegate=yes (boards/dedge-leases.service has it), and each \
             ancestor must enable them in cgroup.subtree_control",
        )
    })
}

/// The key and passphrase must exist and be private to their owner.
fn check_secret_files(board: &Board) -> Vec<Finding> {
    let mut files = vec![(
        key_path!("identity", "key_file"),
        &board.identity.key_file,
        "the gateway's keystore (Web3 Secret Storage v3)",
    )];
    if let Some(p) = &board.identity.passphrase_file {
        files.push((
            key_path!("identity", "passphrase_file"),
            p,
            "the keystore's passphrase",
        ));
    }
    if let Some(p) = board
        .edgex
        .as_ref()
        .and_then(|e| e.credentials_file.as_ref())
    {
        files.push((
            key_path!("edgex", "credentials_file"),
            p,
            "the secret-store user's credentials",
        ));
    }
    files
        .into_iter()
        .filter_map(|(key, file, holds)| {
            let (message, hint) = match fs::metadata(file) {
                Err(e) => (
                    format!("cannot read {}: {e}", file.display()),
                    format!("put {holds} there, readable by the agent's user only"),
                ),
                Ok(m) if !m.is_file() => (
                    format!("{} is not a regular file", file.display()),
                    format!("point this key at the file holding {holds}"),
                ),
                Ok(m) if m.mode() & 0o077 != 0 => (
                    format!(
                        "{} is readable by others (mode {:o})",
                        file.display(),
                        m.mode() & 0o777
                    ),
                    format!("run: chmod 600 {}", file.display()),
                ),
                Ok(_) => return None,
            };
            Some(Finding {
                path: key,
                message,
                hint: Some(hint),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Trimmed from this development machine: v1 controllers plus an empty
    // cgroup2 mount at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw shared:15 - cgroup cgroup rw,pids
32 25 0:29 / /sys/fs/cgroup/freezer rw shared:16 - cgroup cgroup rw,freezer
";
    // A pure v2 system (Debian 12, Raspberry Pi OS Bookworm).
    const UNIFIED: &str = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn hybrid_hierarchy_offers_v1_only() {
        let s = CgroupSupport::from_mountinfo(HYBRID, |p| {
            assert_eq!(p, Path::new("/sys/fs/cgroup/unified"));
            Some("\n".into())
        });
        assert!(s.missing_v1().is_empty(), "{s:?}");
        assert_eq!(s.missing_v2(), Some(vec!["cpu", "memory", "pids"]));
        assert!(check_cgroups(CgroupMode::V1, &s).is_none());
        assert!(check_cgroups(CgroupMode::Auto, &s).is_none());
        let f = check_cgroups(CgroupMode::V2, &s).unwrap();
        assert!(
            f.message.contains("lacks controllers: cpu, memory, pids"),
            "{}",
            f.message
        );
    }

    #[test]
    fn unified_hierarchy_without_memory_points_at_the_kernel_flag() {
        let s = CgroupSupport::from_mountinfo(UNIFIED, |_| Some("cpuset cpu io pids".into()));
        assert_eq!(s.missing_v2(), Some(vec!["memory"]));
        let f = check_cgroups(CgroupMode::Auto, &s).unwrap();
        assert!(f.hint.unwrap().contains("cgroup_enable=memory"));
        let s = CgroupSupport::from_mountinfo(UNIFIED, |_| Some("cpu memory pids io".into()));
        assert!(check_cgroups(CgroupMode::V2, &s).is_none());
        assert!(check_cgroups(CgroupMode::V1, &s).is_some());
    }

    #[test]
    fn the_cgroup_parent_must_exist_be_a_domain_and_have_controllers() {
        let dev = include_str!("../../boards/dev-x86_64.toml").to_string();
        let mut board = crate::board::BoardFile::parse(Path::new("/b/dev.toml"), dev)
            .unwrap()
            .board;
        let root = tempfile::tempdir().unwrap();
        // The default parent may be missing: the agent makes it.
        assert!(check_parent_dir(&board, root.path()).is_none());
        board.agent.cgroup_parent = "/system.slice/dedge-leases.service".parse().unwrap();
        let f = check_parent_dir(&board, root.path()).unwrap();
        assert!(f.message.contains("does not exist"), "{}", f.message);
        assert!(f.hint.unwrap().contains("dedge-leases"));
        let dir = root.path().join("system.slice/dedge-leases.service");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.type"), "threaded\n").unwrap();
        fs::write(dir.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let f = check_parent_dir(&board, root.path()).unwrap();
        assert!(f.message.contains("not a domain cgroup"), "{}", f.message);
        fs::write(dir.join("cgroup.type"), "domain\n").unwrap();
        fs::write(dir.join("cgroup.controllers"), "cpu pids\n").unwrap();
        let f = check_parent_dir(&board, root.path()).unwrap();
        assert!(f.message.ends_with("controllers: memory"), "{}", f.message);
        assert!(f.hint.unwrap().contains("Delegate=yes"));
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert!(check_parent_dir(&board, root.path()).is_none());
    }

    #[test]
    fn no_cgroups_at_all_is_reported() {
        let s = CgroupSupport::from_mountinfo("", |_| None);
        let f = check_cgroups(CgroupMode::Auto, &s).unwrap();
        assert!(f.message.contains("no cgroup2 hierarchy"), "{}", f.message);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let m = "MemTotal:        3884376 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total(m), Some(ByteSize(3_884_376 * 1024)));
        assert_eq!(mem_total("MemFree: 1 kB"), None);
    }
}

//! A lease's control group: CPU quota, memory limit with swap off, pids
//! limit, freezer, stats, kill-all and removal, on cgroup v1 or v2.
//!
//! cgroups-rs finds the hierarchies and writes the limits. Its v1 `create`
//! only logs a failed `mkdir`, its v2 `create` ignores a refused
//! `cgroup.subtree_control` write, its v2 freezer reports the state asked for
//! rather than the one reached, and its v2 memory statistics unwrap missing
//! files, so this module makes v2 cgroups itself (controllers enabled top
//! down, each refusal named), checks every directory it asked for, reads
//! `cgroup.events` for the frozen state and the few statistics it reports
//! itself: a limit that silently did not apply is a tenant with the whole
//! gateway.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::FreezerState;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::{self, V1, V2};
use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, Hierarchy, MaxValue};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// v1 controllers a lease's cgroup is made in (cpuacct for CPU time).
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "freezer"];
/// v2 controllers enabled for it (the freezer is built in).
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];
/// CFS period: 100 ms, the kernel's default; the quota scales with it.
const CFS_PERIOD_US: u64 = 100_000;
/// How long `kill_all` waits for the kernel to reap a killed cgroup.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resource limits of one sandbox; `None` leaves the parent's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time as thousandths of a core (500 = half a core).
    pub cpu_millicores: Option<u32>,
    /// Memory in bytes; swap is off (the limit covers memory + swap).
    pub memory: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u64>,
}

/// What a cgroup has used, read from the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time of all its tasks, in nanoseconds.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
    /// High-water mark of memory (0 where the kernel does not keep one).
    memory_peak: u64,
    pub pids: u64,
    /// Tasks killed by the OOM killer inside this cgroup.
    pub oom_kills: u64,
}

/// One lease's control group, at the same relative path in every hierarchy.
pub struct Cgroup {
    cg: cgroups_rs::fs::Cgroup,
    path: String,
    v2: bool,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cgroup")
            .field("path", &self.path)
            .field("v2", &self.v2)
            .finish()
    }
}

fn err(path: &str, why: impl std::fmt::Display) -> Error {
    Error::Cgroup(format!("{path}: {why}"))
}

/// Which cgroup hierarchy to drive: the one the OS mounts (`auto`), or a
/// fixed one so a misconfigured image fails at start rather than mid-lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    Auto,
    V1,
    V2,
}

/// The hierarchy the board asks for. cgroups-rs only knows v2 mounted at
/// `/sys/fs/cgroup` (unified mode); a hybrid machine's `unified` mount has no
/// controllers worth using, so `auto` means v1 there.
fn hierarchy(mode: CgroupMode) -> Result<Box<dyn Hierarchy>> {
    let unified = hierarchies::is_cgroup2_unified_mode();
    match mode {
        CgroupMode::Auto if unified => Ok(Box::new(V2::new())),
        CgroupMode::Auto | CgroupMode::V1 => Ok(Box::new(V1::new())),
        CgroupMode::V2 if unified => Ok(Box::new(V2::new())),
        CgroupMode::V2 => Err(Error::Cgroup(
            "the board asks for cgroup v2, but /sys/fs/cgroup is not a cgroup2 mount".into(),
        )),
    }
}

fn controllers(v2: bool) -> Vec<String> {
    let list = if v2 { V2_CONTROLLERS } else { V1_CONTROLLERS };
    list.iter().map(|s| s.to_string()).collect()
}

/// Refuses paths that could leave the dedge parent: `..`, empty or absolute
/// components (cgroups-rs panics on some of these instead of failing).
fn check_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(err(path, "not a plain relative cgroup path"))
    }
}

impl Cgroup {
    /// Handle on an existing (or absent) cgroup, for recovery and cleanup.
    pub fn load(mode: CgroupMode, path: &str) -> Result<Cgroup> {
        check_path(path)?;
        let hier = hierarchy(mode)?;
        let v2 = hier.v2();
        let cg =
            cgroups_rs::fs::Cgroup::load_with_specified_controllers(hier, path, controllers(v2));
        Ok(Cgroup {
            cg,
            path: path.to_string(),
            v2,
        })
    }

    /// Makes the cgroup and applies `limits`; fails closed: if a controller
    /// is missing or a limit does not stick, nothing is left behind.
    pub fn create(mode: CgroupMode, path: &str, limits: &Limits) -> Result<Cgroup> {
        Cgroup::create_within(mode, None, path, limits)
    }

    /// `create`, below `delegated` when given: a cgroup someone else owns
    /// (systemd's `dedge-leases.service`) that must already exist. It is
    /// never made and nothing at or above it is written but its own
    /// `cgroup.subtree_control`, so a lease can never re-create a unit's
    /// cgroup that systemd removed (it would run outside every unit, and
    /// the unit could not start again).
    pub(crate) fn create_within(
        mode: CgroupMode,
        delegated: Option<&str>,
        path: &str,
        limits: &Limits,
    ) -> Result<Cgroup> {
        let cg = Cgroup::load(mode, path)?;
        if cg.exists_any() {
            return Err(err(path, "already exists (a leftover of an earlier run?)"));
        }
        let (start, below) = match delegated {
            Some(base) => {
                let below = path
                    .strip_prefix(base)
                    .and_then(|r| r.strip_prefix('/'))
                    .ok_or_else(|| err(path, format!("is not below /{base}")))?;
                let dirs = Cgroup::load(mode, base)?.dirs();
                if dirs.is_empty() || dirs.iter().any(|d| !d.is_dir()) {
                    return Err(err(
                        path,
                        format!(
                            "its delegated parent /{base} does not exist (under systemd: is \
                             dedge-leases.service running?)"
                        ),
                    ));
                }
                (Path::new(V2_ROOT).join(base), below)
            }
            None => (PathBuf::from(V2_ROOT), path),
        };
        // v2: the directories this call made, so a failure removes exactly
        // those (never a leaf someone else made between the check and mkdir).
        let mut made_dirs = Vec::new();
        let made = if cg.v2 {
            create_v2(&start, below, &mut made_dirs)
        } else {
            cg.cg.create().map_err(|e| err(path, e))
        };
        if let Err(e) = made {
            if !cg.v2 {
                let _ = cg.remove();
            }
            remove_made(&made_dirs);
            return Err(e);
        }
        if let Err(e) = cg.check_made().and_then(|()| cg.apply(limits)) {
            let _ = cg.remove();
            remove_made(&made_dirs);
            return Err(e);
        }
        log::debug!(
            "cgroup {path}: created ({})",
            if cg.v2 { "v2" } else { "v1" }
        );
        Ok(cg)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `path` exists (in any hierarchy, on v1).
    pub fn exists(mode: CgroupMode, path: &str) -> Result<bool> {
        Ok(Cgroup::load(mode, path)?.exists_any())
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// The directory of each controller this cgroup lives in.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().to_path_buf())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn exists_any(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Every controller the sandbox relies on must be there, or no limit
    /// holds: v1 needs a directory per controller, v2 the controllers
    /// enabled in the new cgroup.
    fn check_made(&self) -> Result<()> {
        let dirs = self.dirs();
        if let Some(d) = dirs.iter().find(|d| !d.is_dir()) {
            return Err(err(&self.path, format!("{} was not created", d.display())));
        }
        let missing: Vec<&str> = if self.v2 {
            let have = dirs
                .first()
                .and_then(|d| fs::read_to_string(d.join("cgroup.controllers")).ok())
                .unwrap_or_default();
            V2_CONTROLLERS
                .iter()
                .copied()
                .filter(|c| !have.split_whitespace().any(|h| h == *c))
                .collect()
        } else {
            let have = [
                self.cg.controller_of::<CpuController>().is_some(),
                self.cg
                    .controller_of::<cgroups_rs::fs::cpuacct::CpuAcctController>()
                    .is_some(),
                self.cg.controller_of::<MemController>().is_some(),
                self.cg.controller_of::<PidController>().is_some(),
                self.cg.controller_of::<FreezerController>().is_some(),
            ];
            V1_CONTROLLERS
                .iter()
                .zip(have)
                .filter(|(_, ok)| !ok)
                .map(|(c, _)| *c)
                .collect()
        };
        if missing.is_empty() && !dirs.is_empty() {
            Ok(())
        } else {
            Err(err(
                &self.path,
                format!("cgroup controllers missing: {missing:?} (see `dedge board check --host`)"),
            ))
        }
    }

    fn controller<'a, T>(&'a self) -> Result<&'a T>
    where
        T: Controller + cgroups_rs::fs::ControllIdentifier,
        &'a T: From<&'a cgroups_rs::fs::Subsystem>,
    {
        self.cg
            .controller_of::<T>()
            .ok_or_else(|| err(&self.path, "a needed controller is not mounted"))
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        if let Some(m) = limits.cpu_millicores {
            let quota = (u64::from(m) * CFS_PERIOD_US / 1000).max(1000);
            self.controller::<CpuController>()?
                .set_cfs_quota_and_period(Some(quota as i64), Some(CFS_PERIOD_US))
                .map_err(|e| err(&self.path, format!("cpu quota: {e}")))?;
        }
        if let Some(bytes) = limits.memory {
            self.set_memory(bytes)?;
        }
        if let Some(n) = limits.pids {
            self.controller::<PidController>()?
                .set_pid_max(MaxValue::Value(n as i64))
                .map_err(|e| err(&self.path, format!("pids limit: {e}")))?;
        }
        Ok(())
    }

    fn set_memory(&self, bytes: u64) -> Result<()> {
        let mem = self.controller::<MemController>()?;
        let e = |what: &str| {
            let path = self.path.clone();
            let what = what.to_string();
            move |x: cgroups_rs::fs::error::Error| err(&path, format!("{what}: {x}"))
        };
        if self.v2 {
            mem.set_mem(SetMemory {
                max: Some(MaxValue::Value(bytes as i64)),
                ..SetMemory::default()
            })
            .map_err(e("memory.max"))?;
            // Absent when the kernel has no swap support at all: nothing to turn off.
            write_if_present(&mem.path().join("memory.swap.max"), "0")?;
        } else {
            mem.set_limit(bytes as i64).map_err(e("memory limit"))?;
            // memsw (memory + swap) equal to the limit means no swap; the file
            // is absent without swap accounting, where swappiness 0 is the
            // best v1 offers.
            let memsw = mem.path().join("memory.memsw.limit_in_bytes");
            write_if_present(&memsw, &bytes.to_string())?;
            write_if_present(&mem.path().join("memory.swappiness"), "0")?;
        }
        Ok(())
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(|e| err(&self.path, format!("cannot add pid {pid}: {e}")))
    }

    /// The cgroup's directory in the unified hierarchy (v2 only).
    fn v2_dir(&self) -> PathBuf {
        Path::new(V2_ROOT).join(&self.path)
    }

    /// Stops every task. v2's freezer is `cgroup.freeze` in the cgroup
    /// itself (no controller to enable), written here directly: cgroups-rs
    /// only reaches it through a controller list the v2 sandbox never names.
    pub(crate) fn freeze(&self) -> Result<()> {
        if self.v2 {
            if !self.v2_dir().join("cgroup.events").exists() {
                return Err(err(
                    &self.path,
                    "no cgroup.events: this kernel has no cgroup v2 freezer (it came in 5.2)",
                ));
            }
            write_cgroup_file(&self.v2_dir().join("cgroup.freeze"), "1")?;
        } else {
            self.controller::<FreezerController>()?
                .freeze()
                .map_err(|e| err(&self.path, format!("freeze: {e}")))?;
        }
        // Freezing takes time on both versions (v1 passes through FREEZING,
        // v2 sets `frozen 1` in cgroup.events); wait until every task is stopped.
        let until = Instant::now() + REAP_TIMEOUT;
        while !self.is_frozen() {
            if Instant::now() > until {
                // Never leave a tenant half frozen behind a failed pause:
                // the caller still thinks it runs, and nothing would thaw it.
                let _ = self.thaw();
                return Err(err(&self.path, "did not freeze within 5 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        if self.v2 {
            return write_cgroup_file(&self.v2_dir().join("cgroup.freeze"), "0");
        }
        self.controller::<FreezerController>()?
            .thaw()
            .map_err(|e| err(&self.path, format!("thaw: {e}")))
    }

    /// Whether every task is stopped. On v2 `cgroup.freeze` only says what
    /// was asked; `cgroup.events` says whether the kernel got there.
    fn is_frozen(&self) -> bool {
        if self.v2 {
            return read_keyed(&self.v2_dir().join("cgroup.events"), "frozen") == Some(1);
        }
        self.controller::<FreezerController>()
            .is_ok_and(|f| matches!(f.state(), Ok(FreezerState::Frozen)))
    }

    /// Process ids in the cgroup (as seen from the agent's PID namespace).
    pub fn pids(&self) -> Vec<i32> {
        self.cg.procs().into_iter().map(|p| p.pid as i32).collect()
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        if let Ok(pids) = self.controller::<PidController>() {
            s.pids = read_u64(&pids.path().join("pids.current")).unwrap_or(0);
        }
        if let Ok(mem) = self.controller::<MemController>() {
            let d = mem.path();
            if self.v2 {
                s.memory_bytes = read_u64(&d.join("memory.current")).unwrap_or(0);
                s.memory_peak = read_u64(&d.join("memory.peak")).unwrap_or(0);
                s.oom_kills = read_keyed(&d.join("memory.events"), "oom_kill").unwrap_or(0);
            } else {
                s.memory_bytes = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
                s.memory_peak = read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
                s.oom_kills = read_keyed(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0);
            }
        }
        s.cpu_ns = if self.v2 {
            self.controller::<CpuController>()
                .ok()
                .and_then(|c| read_keyed(&c.path().join("cpu.stat"), "usage_usec"))
                .map_or(0, |us| us.saturating_mul(1000))
        } else {
            self.controller::<cgroups_rs::fs::cpuacct::CpuAcctController>()
                .ok()
                .and_then(|c| read_u64(&c.path().join("cpuacct.usage")))
                .unwrap_or(0)
        };
        s
    }

    /// Whether any task is left in the cgroup or below it (v2 says so in
    /// `cgroup.events`; v1 has only the cgroup's own task list).
    fn populated(&self) -> bool {
        if self.v2
            && let Some(p) = read_keyed(&self.v2_dir().join("cgroup.events"), "populated")
        {
            return p == 1;
        }
        !self.pids().is_empty()
    }

    /// Kills every task and waits until the cgroup is empty: on v2 through
    /// `cgroup.kill` where the kernel has it; elsewhere frozen first so
    /// nothing forks while it is being killed, SIGKILL to each, thawed so
    /// the kills land.
    pub(crate) fn kill_all(&self) -> Result<()> {
        if !self.exists_any() || !self.populated() {
            // Nothing to kill (the usual case once init has exited: its
            // PID namespace took every other task with it).
            return Ok(());
        }
        // v2 kernels from 5.14 kill a whole cgroup in one write, forks in
        // flight included; elsewhere freeze, kill each task, thaw.
        let kill_file = self.v2_dir().join("cgroup.kill");
        let killed_at_once = self.v2 && kill_file.exists() && fs::write(&kill_file, "1").is_ok();
        if !killed_at_once {
            let froze = self.freeze();
            for pid in self.pids() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            // Thawed even when the freeze timed out: tasks it did stop
            // cannot act on SIGKILL until they run again.
            let thawed = self.thaw();
            if froze.is_ok() {
                thawed?;
            }
        }
        let until = Instant::now() + REAP_TIMEOUT;
        loop {
            let left = self.pids();
            if left.is_empty() && !self.populated() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(err(&self.path, format!("tasks {left:?} survived SIGKILL")));
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills what is left and removes the cgroup from every hierarchy.
    pub fn remove(&self) -> Result<()> {
        self.kill_all()?;
        let until = Instant::now() + REAP_TIMEOUT;
        for d in self.dirs() {
            // rmdir can briefly answer EBUSY while the kernel finishes exits.
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > until => {
                        return Err(err(&self.path, format!("rmdir {}: {e}", d.display())));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        Ok(())
    }

    /// Removes the cgroup if nothing is in it (no tasks, no children); a
    /// parent left by a short-lived runtime (the CLI) goes this way.
    pub(crate) fn remove_if_empty(&self) {
        for d in self.dirs() {
            let _ = fs::remove_dir(&d);
        }
    }

    /// Names of the cgroups directly under `parent` (in any controller): the
    /// agent compares them with its records to remove leftovers.
    pub fn children(mode: CgroupMode, parent: &str) -> Result<Vec<String>> {
        let cg = Cgroup::load(mode, parent)?;
        let mut names = Vec::new();
        for d in cg.dirs() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        Ok(names)
    }
}

/// Where cgroups-rs (and so this module) expects the unified hierarchy.
const V2_ROOT: &str = "/sys/fs/cgroup";

/// Makes `root/path` one level at a time and enables the sandbox's
/// controllers in each ancestor's `cgroup.subtree_control`, top down, as v2
/// requires: a controller can only be enabled below a cgroup that has it,
/// and only in a cgroup with no processes of its own (the no-internal-
/// processes rule: the kernel answers EBUSY). Every refusal is an error
/// that names the cgroup, the controller and the remedy.
fn create_v2(root: &Path, path: &str, made: &mut Vec<PathBuf>) -> Result<()> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        enable_v2_controllers(&dir, path)?;
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => made.push(dir.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && i + 1 < parts.len() => {}
            Err(e) => return Err(err(path, format!("mkdir {}: {e}", dir.display()))),
        }
    }
    Ok(())
}

/// Enables V2_CONTROLLERS for the children of `dir` unless they already are.
fn enable_v2_controllers(dir: &Path, path: &str) -> Result<()> {
    let read = |file: PathBuf| {
        fs::read_to_string(&file)
            .map_err(|e| err(path, format!("cannot read {}: {e}", file.display())))
    };
    let control = dir.join("cgroup.subtree_control");
    let enabled = read(control.clone())?;
    let available = read(dir.join("cgroup.controllers"))?;
    for c in V2_CONTROLLERS {
        if enabled.split_whitespace().any(|h| h == *c) {
            continue;
        }
        if !available.split_whitespace().any(|h| h == *c) {
            return Err(err(
                path,
                format!(
                    "the {c} controller is not available in {} (its parent does not \
                     delegate it, or the kernel was booted without it; see `dedge board \
                     check --host`)",
                    dir.display()
                ),
            ));
        }
        if let Err(e) = write_existing(&control, &format!("+{c}")) {
            let why = match e.raw_os_error() {
                Some(libc::EBUSY) => format!(
                    "{} has processes of its own, so cgroup v2 lets no controller be \
                     enabled below it (the no-internal-processes rule): move them into a \
                     leaf cgroup first",
                    dir.display()
                ),
                _ => format!("cannot enable {c} in {}: {e}", control.display()),
            };
            return Err(err(path, why));
        }
    }
    Ok(())
}

/// Removes the directories a failed `create_v2` made, deepest first; one
/// another runtime has meanwhile put a child in stays (rmdir refuses).
fn remove_made(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// Writes a control file that must exist. Never `O_CREAT`: cgroupfs
/// answers a create of a missing file with EACCES, which would hide the
/// real cause (an absent file, ENOENT) behind "permission denied".
fn write_existing(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

fn write_cgroup_file(path: &Path, value: &str) -> Result<()> {
    write_existing(path, value).map_err(|e| Error::Cgroup(format!("{}: {e}", path.display())))
}

fn write_if_present(path: &Path, value: &str) -> Result<()> {
    match write_existing(path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Cgroup(format!("{}: {e}", path.display()))),
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A value from a flat-keyed file such as `memory.events` or `cpu.stat`.
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    parse_keyed(&fs::read_to_string(path).ok()?, key)
}

fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// One cgroup parent per role and data directory, under `base`
/// (`dedge/agent-1a2b3c4d`): a runtime removes every cgroup under its
/// parent that it has no record of, so runtimes with different data
/// directories must never share one (two with the same directory cannot
/// run at once: its state database is locked).
pub(crate) fn parent_for(base: &str, role: &str, data: &std::path::Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data.as_os_str().as_encoded_bytes());
    let tag: String = h[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}/{role}-{tag}")
}

/// This process's cgroup in the unified hierarchy (the `0::` line of
/// `/proc/self/cgroup`), without its leading `/`; `None` at the root or on
/// a v1-only machine.
pub(crate) fn own_v2() -> Result<Option<String>> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::Cgroup(format!("/proc/self/cgroup: {e}")))?;
    Ok(parse_own_v2(&text))
}

fn parse_own_v2(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = path.trim().trim_start_matches('/');
    (!rel.is_empty()).then(|| rel.to_string())
}

/// Makes this process the only member of `<own>/<leaf>`, then enables the
/// sandbox's controllers for `<own>`'s children: cgroup v2 lets a cgroup
/// give controllers to children only while it has no processes of its own
/// (systemd starts a delegated service's process in the unit's cgroup).
/// Returns the leaf's path.
pub(crate) fn move_to_leaf(own: &str, leaf: &str) -> Result<String> {
    check_path(own)?;
    check_path(leaf)?;
    let root = Path::new(V2_ROOT);
    let dir = root.join(own).join(leaf);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(own, format!("mkdir {}: {e}", dir.display()))),
    }
    write_cgroup_file(&dir.join("cgroup.procs"), &std::process::id().to_string())?;
    enable_v2_controllers(&root.join(own), own)?;
    Ok(format!("{own}/{leaf}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_v2_below_a_base_never_makes_the_base() {
        // create_v2 starts at the base: a base systemd removed is an error
        // (ENOENT), not re-created.
        let root = fake_v2_root("cpu memory pids", "cpu memory pids");
        let base = root.path().join("system.slice/dedge-leases.service");
        let mut made = Vec::new();
        let e = create_v2(&base, "agent-1/lease-1", &mut made).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert!(made.is_empty());
        assert!(!base.exists());
    }

    #[test]
    fn own_cgroup_is_the_unified_line() {
        let text = "12:pids:/system.slice/x.service\n0::/system.slice/dedge-leases.service\n";
        assert_eq!(
            parse_own_v2(text).as_deref(),
            Some("system.slice/dedge-leases.service")
        );
        assert_eq!(parse_own_v2("0::/\n"), None);
        assert_eq!(parse_own_v2("4:memory:/x\n"), None);
    }

    #[test]
    fn paths_that_leave_the_parent_are_refused() {
        for bad in [
            "",
            "/dedge",
            "dedge/../x",
            "dedge//x",
            "dedge/.",
            "a b",
            "x\n",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        check_path("dedge/lease-01.a_b").unwrap();
    }

    /// A fake v2 root: its controllers and what it already enables.
    fn fake_v2_root(controllers: &str, enabled: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), enabled).unwrap();
        root
    }

    #[test]
    fn a_v2_controller_the_parent_lacks_is_named_and_nothing_is_made() {
        // A Raspberry Pi kernel booted with cgroup_disable=memory.
        let root = fake_v2_root("cpuset cpu io pids\n", "");
        let mut made = Vec::new();
        let e = create_v2(root.path(), "dedge/lease-1", &mut made)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the memory controller is not available"), "{e}");
        assert!(e.contains("board check --host"), "{e}");
        assert!(!root.path().join("dedge").exists());
        assert!(made.is_empty());
    }

    #[test]
    fn a_failed_v2_create_removes_only_what_it_made() {
        // The parent is made, then its own subtree_control cannot be read
        // (a fake: plain directories have no control files).
        let root = fake_v2_root("cpu memory pids\n", "cpu memory pids\n");
        let mut made = Vec::new();
        let e = create_v2(root.path(), "dedge/lease-1", &mut made)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
        assert_eq!(made, vec![root.path().join("dedge")]);
        remove_made(&made);
        assert!(!root.path().join("dedge").exists());
    }

    #[test]
    fn a_control_file_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("memory.swap.max");
        write_if_present(&absent, "0").unwrap();
        assert!(!absent.exists(), "write_if_present created the file");
        assert!(write_cgroup_file(&absent, "1").is_err());
        assert!(!absent.exists());
    }

    #[test]
    fn v2_controllers_already_enabled_are_left_alone() {
        let root = fake_v2_root("cpu memory pids\n", "cpu memory pids\n");
        create_v2(root.path(), "lease-1", &mut Vec::new()).unwrap();
        assert!(root.path().join("lease-1").is_dir());
        let control = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "cpu memory pids\n", "rewritten although enabled");
        // A leaf that exists already is a leftover, not something to reuse.
        let mut made = Vec::new();
        let e = create_v2(root.path(), "lease-1", &mut made)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mkdir"), "{e}");
        assert!(made.is_empty(), "another's leaf counted as made");
    }

    #[test]
    fn keyed_files_are_read_by_exact_key() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(oom, "oom_kill"), Some(3));
        assert_eq!(
            parse_keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(parse_keyed("oom_kill_disable 1\n", "oom_kill"), None);
    }
}

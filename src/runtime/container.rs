//! The lifecycle the agent drives: create, start, pause, resume, kill,
//! wait, delete, stats, logs. Every container has a record in sled, written
//! before any call returns, so an agent that restarts finds its containers
//! again: running ones are re-attached (the shim outlived the agent and
//! records the exit status), ones that never started are removed, and
//! cgroups or directories with no record are cleaned up.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::cgroup::CgroupMode;
use super::cgroup::{Cgroup, Stats};
use super::process::{self, Output, Plan, Spawned};
use super::spec::Spec;
use super::{Error, Result, io};
use crate::store::{Store, Tree};

/// Default cap of each log stream (stdout, stderr).
pub const LOG_CAP: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Set up, waiting to exec.
    Created,
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    Stopped,
}

/// How a container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The shim died too, or the state was lost: no status was recorded.
    Unknown,
}

impl Exit {
    fn from_wait_status(status: i32) -> Exit {
        if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Unknown
        }
    }

    /// As a shell reports it: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::Unknown => 255,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => write!(f, "ended (status unknown)"),
        }
    }
}

/// A process identified across pid reuse: pid + start time (clock ticks
/// since boot, field 22 of /proc/PID/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: i32,
    pub start: u64,
}

impl ProcId {
    fn of(pid: i32) -> Option<ProcId> {
        proc_start_time(pid).map(|start| ProcId { pid, start })
    }

    /// Still the same process (not exited, pid not reused).
    pub fn alive(&self) -> bool {
        self.pid > 0 && proc_start_time(self.pid) == Some(self.start)
    }
}

fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. starttime is field 22, the 20th after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    if fields.next()? == "Z" {
        return None; // exited, waiting to be reaped
    }
    fields.nth(18)?.parse().ok()
}

/// What the runtime remembers of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub state: State,
    pub spec: Spec,
    pub rootfs: PathBuf,
    /// The rootfs lives in the container's directory and goes with it.
    owns_rootfs: bool,
    pub cgroup: String,
    pub shim: ProcId,
    pub init: ProcId,
    created_unix: u64,
    pub exit: Option<Exit>,
    pub oom_kills: u64,
    /// Removed by recovery once stopped (the CLI's containers without
    /// `--keep`, if the CLI was killed before it could remove them).
    auto_remove: bool,
}

/// Where a container's root filesystem comes from.
pub enum Rootfs {
    /// `Runtime::prepare`d in the container's directory (image unpacked there).
    Prepared,
    /// A directory the caller owns (benchmarks: the same bundle as crun's).
    External(PathBuf),
}

/// Where its output goes.
pub enum Stdio {
    /// stdout.log / stderr.log in the container's directory, each stream
    /// kept under `cap` bytes.
    Logs { cap: u64 },
    /// Copied to these fds by the shim (the CLI's terminal).
    Forward {
        stdout: std::os::fd::OwnedFd,
        stderr: std::os::fd::OwnedFd,
    },
}

/// Where container records are kept.
pub enum RecordStore {
    /// A tree of the agent's state database, opened once at start.
    Sled(Tree),
    /// A `record` file in each container's directory, replaced atomically:
    /// for the one-shot CLI, which would otherwise open a database (about
    /// 10 ms) for every run.
    Files,
}

impl RecordStore {
    /// The `containers` tree of `store`.
    pub fn sled(store: &Store) -> Result<RecordStore> {
        Ok(RecordStore::Sled(store.tree("containers")?))
    }
}

/// Containers of one agent (or one CLI), under one cgroup parent.
pub struct Runtime {
    dir: PathBuf,
    records: RecordStore,
    mode: CgroupMode,
    parent: String,
    delegated: Option<String>,
    /// Pipes to containers waiting for `start`; lost on restart, which is
    /// why created-but-not-started containers are removed at recovery.
    waiting: Mutex<HashMap<String, Spawned>>,
    die_with_parent: bool,
}

/// Checks a container id: it names a directory and a cgroup.
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "container id `{id}`: use 1-64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// How [`Runtime::open`] places its containers.
pub struct Config {
    /// Containers' directories go under here.
    pub dir: PathBuf,
    pub cgroup: CgroupMode,
    /// Relative cgroup path all containers go under (e.g. `dedge/agent`).
    /// Everything below it belongs to this runtime: leftovers are removed.
    pub cgroup_parent: String,
    /// A cgroup someone else owns that `cgroup_parent` lies in (systemd's
    /// delegated `dedge-leases.service`): it must exist, is never made,
    /// and nothing above it is written.
    pub cgroup_delegated: Option<String>,
    /// Shims die with the calling thread (CLI) instead of outliving it (agent).
    pub die_with_parent: bool,
}

impl Runtime {
    /// Opens the runtime and recovers what an earlier run left.
    pub fn open(cfg: Config, records: RecordStore) -> Result<Runtime> {
        if let Some(base) = &cfg.cgroup_delegated {
            if !Cgroup::exists(cfg.cgroup, base)? {
                return Err(Error::Cgroup(format!(
                    "/{base}: the delegated cgroup parent does not exist (under systemd: is \
                     dedge-leases.service running?)"
                )));
            }
        }
        fs::create_dir_all(&cfg.dir).map_err(io(&cfg.dir))?;
        let rt = Runtime {
            records,
            dir: cfg.dir,
            mode: cfg.cgroup,
            parent: cfg.cgroup_parent,
            delegated: cfg.cgroup_delegated,
            waiting: Mutex::new(HashMap::new()),
            die_with_parent: cfg.die_with_parent,
        };
        rt.recover()?;
        Ok(rt)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{id}", self.parent)
    }

    /// Makes the container's directory and an empty `rootfs` in it, for the
    /// image to be unpacked into before `create`.
    pub fn prepare(&self, id: &str) -> Result<PathBuf> {
        check_id(id)?;
        if self.find(id)?.is_some() {
            return Err(Error::Container(id.into(), "already exists".into()));
        }
        let dir = self.container_dir(id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        set_private(&dir)?;
        let rootfs = dir.join("rootfs");
        fs::create_dir(&rootfs).map_err(io(&rootfs))?;
        Ok(rootfs)
    }

    /// Sets the sandbox up (cgroup, namespaces, mounts, privileges) and
    /// leaves init waiting to exec. On failure nothing is left behind.
    pub fn create(
        &self,
        id: &str,
        rootfs: Rootfs,
        spec: &Spec,
        stdio: Stdio,
        auto_remove: bool,
    ) -> Result<Record> {
        check_id(id)?;
        if self.find(id)?.is_some() {
            return Err(Error::Container(id.into(), "already exists".into()));
        }
        let dir = self.container_dir(id);
        let (rootfs, owns_rootfs) = match rootfs {
            Rootfs::Prepared => (dir.join("rootfs"), true),
            Rootfs::External(p) => {
                fs::create_dir_all(&dir).map_err(io(&dir))?;
                set_private(&dir)?;
                (p, false)
            }
        };
        let cleanup = |e: Error| -> Error {
            let _ = fs::remove_dir_all(&dir);
            e
        };
        if !rootfs.is_dir() {
            return Err(cleanup(Error::Container(
                id.into(),
                format!("rootfs {} is not a directory", rootfs.display()),
            )));
        }
        let output = match stdio {
            Stdio::Logs { cap } => Output::Logs {
                dir: dir.clone(),
                cap,
            },
            Stdio::Forward { stdout, stderr } => Output::Forward { stdout, stderr },
        };
        let plan =
            Plan::new(spec, &rootfs, &dir, &output, self.die_with_parent).map_err(cleanup)?;
        let path = self.cgroup_path(id);
        let cgroup =
            Cgroup::create_within(self.mode, self.delegated.as_deref(), &path, &spec.limits)
                .map_err(cleanup)?;
        let spawned = match process::spawn(&plan, output, &cgroup) {
            Ok(s) => s,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(cleanup(e));
            }
        };
        let (shim, init) = (ProcId::of(spawned.shim), ProcId::of(spawned.init));
        let (Some(shim), Some(init)) = (shim, init) else {
            let _ = cgroup.remove();
            return Err(cleanup(Error::Container(
                id.into(),
                "died during setup".into(),
            )));
        };
        let record = Record {
            id: id.to_string(),
            state: State::Created,
            spec: spec.clone(),
            rootfs,
            owns_rootfs,
            cgroup: path,
            shim,
            init,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            exit: None,
            oom_kills: 0,
            auto_remove,
        };
        if let Err(e) = self.save(&record) {
            let _ = cgroup.remove();
            return Err(cleanup(e));
        }
        self.lock_waiting().insert(id.to_string(), spawned);
        log::debug!("container {id}: created (init pid {})", init.pid);
        Ok(record)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Spawned>> {
        // A panic elsewhere cannot leave the map inconsistent: take it anyway.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `r` durable before anything acts on it.
    fn save(&self, r: &Record) -> Result<()> {
        match &self.records {
            RecordStore::Sled(tree) => {
                tree.put(&r.id, r)?;
                tree.flush()?;
            }
            RecordStore::Files => {
                let dir = self.container_dir(&r.id);
                let bytes = postcard::to_allocvec(r)
                    .map_err(|e| Error::Container(r.id.clone(), format!("encode record: {e}")))?;
                let tmp = dir.join("record.tmp");
                let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
                std::io::Write::write_all(&mut f, &bytes).map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                fs::rename(&tmp, dir.join("record")).map_err(io(&tmp))?;
            }
        }
        Ok(())
    }

    fn find(&self, id: &str) -> Result<Option<Record>> {
        match &self.records {
            RecordStore::Sled(tree) => Ok(tree.get(id)?),
            RecordStore::Files => {
                let path = self.container_dir(id).join("record");
                match fs::read(&path) {
                    Ok(b) => postcard::from_bytes(&b).map(Some).map_err(|e| {
                        Error::Container(id.into(), format!("record is corrupt: {e}"))
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&path)(e)),
                }
            }
        }
    }

    fn forget(&self, id: &str) -> Result<()> {
        if let RecordStore::Sled(tree) = &self.records {
            tree.remove(id)?;
            tree.flush()?;
        }
        // Files: the record went with the container's directory.
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Record> {
        self.find(id)?
            .ok_or_else(|| Error::NoSuchContainer(id.to_string()))
    }

    pub fn list(&self) -> Result<Vec<Record>> {
        match &self.records {
            RecordStore::Sled(tree) => tree
                .iter::<Record>()
                .map(|r| r.map(|(_, v)| v).map_err(Error::from))
                .collect(),
            RecordStore::Files => {
                let mut out = Vec::new();
                for e in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    if check_id(&id).is_ok() {
                        out.extend(self.find(&id)?);
                    }
                }
                out.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(out)
            }
        }
    }

    /// Execs the command. If the program cannot be executed the container
    /// is stopped (exit 127) and the error says why.
    pub fn start(&self, id: &str) -> Result<Record> {
        let mut r = self.get(id)?;
        if r.state != State::Created {
            return Err(Error::Container(
                id.into(),
                format!("is {:?}, not Created", r.state),
            ));
        }
        let spawned = self.lock_waiting().remove(id).ok_or_else(|| {
            Error::Container(id.into(), "lost its setup (agent restarted)".into())
        })?;
        match spawned.start() {
            Ok(()) => {
                r.state = State::Running;
                self.save(&r)?;
                log::debug!("container {id}: started");
                Ok(r)
            }
            Err(e) => {
                let _ = self.wait(id, Some(Duration::from_secs(5)));
                Err(Error::Container(id.into(), e.to_string()))
            }
        }
    }

    fn cgroup(&self, r: &Record) -> Result<Cgroup> {
        Cgroup::load(self.mode, &r.cgroup)
    }

    /// Freezes every process of the container (a buyer behind on payment).
    pub fn pause(&self, id: &str) -> Result<Record> {
        let mut r = self.get(id)?;
        if r.state != State::Running {
            return Err(Error::Container(
                id.into(),
                format!("is {:?}, not Running", r.state),
            ));
        }
        self.cgroup(&r)?.freeze()?;
        r.state = State::Paused;
        self.save(&r)?;
        Ok(r)
    }

    pub fn resume(&self, id: &str) -> Result<Record> {
        let mut r = self.get(id)?;
        if r.state != State::Paused {
            return Err(Error::Container(
                id.into(),
                format!("is {:?}, not Paused", r.state),
            ));
        }
        self.cgroup(&r)?.thaw()?;
        r.state = State::Running;
        self.save(&r)?;
        Ok(r)
    }

    /// SIGTERM to init, then after `grace` SIGKILL to everything in the
    /// cgroup. A paused container is killed at once (it cannot run a
    /// handler while frozen). Returns how it ended.
    pub fn kill(&self, id: &str, grace: Duration) -> Result<Record> {
        let r = self.get(id)?;
        if r.state == State::Stopped {
            return Ok(r);
        }
        if r.state == State::Running && r.init.alive() {
            let _ = kill(Pid::from_raw(r.init.pid), Signal::SIGTERM);
            if let Ok(r) = self.wait(id, Some(grace)) {
                return Ok(r);
            }
        }
        self.cgroup(&r)?.kill_all()?;
        // An init waiting for `start` is not in a frozen state; the kill
        // above reached it through the cgroup as well.
        self.lock_waiting().remove(id);
        self.wait(id, Some(Duration::from_secs(10)))
    }

    /// Waits until the container has ended (`None`: as long as it takes);
    /// an error if `timeout` passes first.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Record> {
        self.wait_for(id, timeout)?
            .ok_or_else(|| Error::Container(id.into(), format!("still running after {timeout:?}")))
    }

    /// As `wait`, but `Ok(None)` when `timeout` passes first.
    pub fn wait_for(&self, id: &str, timeout: Option<Duration>) -> Result<Option<Record>> {
        let mut r = self.get(id)?;
        if r.state == State::Stopped {
            return Ok(Some(r));
        }
        match wait_for_exit(r.shim, timeout) {
            Ok(()) => {}
            Err(Errno::ETIMEDOUT) => return Ok(None),
            Err(e) => return Err(Error::Container(id.into(), format!("wait: {e}"))),
        }
        let dir = self.container_dir(id);
        r.exit = Some(process::read_exit(&dir).map_or(Exit::Unknown, Exit::from_wait_status));
        r.oom_kills = self.cgroup(&r).map_or(0, |c| c.stats().oom_kills);
        r.state = State::Stopped;
        self.save(&r)?;
        self.lock_waiting().remove(id);
        log::debug!(
            "container {id}: {}{}",
            r.exit.unwrap_or(Exit::Unknown),
            if r.oom_kills > 0 {
                " (out of memory)"
            } else {
                ""
            }
        );
        Ok(Some(r))
    }

    pub fn stats(&self, id: &str) -> Result<Stats> {
        let r = self.get(id)?;
        Ok(self.cgroup(&r)?.stats())
    }

    /// The container's captured output (older rotated half first).
    pub fn logs(&self, id: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        self.get(id)?;
        let dir = self.container_dir(id);
        let read = |name: &str| {
            let mut out = fs::read(dir.join(format!("{name}.log.1"))).unwrap_or_default();
            out.extend(fs::read(dir.join(format!("{name}.log"))).unwrap_or_default());
            out
        };
        Ok((read("stdout"), read("stderr")))
    }

    /// Kills what is left, removes the cgroup, the directory (with the
    /// rootfs if the container owns it) and the record.
    pub fn delete(&self, id: &str) -> Result<()> {
        let r = self.get(id)?;
        if r.state != State::Stopped {
            self.kill(id, Duration::ZERO)?;
        }
        self.remove_everything(&r)?;
        log::debug!("container {id}: deleted");
        Ok(())
    }

    fn remove_everything(&self, r: &Record) -> Result<()> {
        self.lock_waiting().remove(&r.id);
        self.cgroup(r)?.remove()?;
        if r.shim.alive() {
            let _ = kill(Pid::from_raw(r.shim.pid), Signal::SIGKILL);
            let _ = wait_for_exit(r.shim, Some(Duration::from_secs(5)));
        }
        let dir = self.container_dir(&r.id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        self.forget(&r.id)
    }

    /// After a restart: re-attach running containers, finish the record of
    /// ended ones, remove never-started ones, and sweep cgroups and
    /// directories that have no record.
    fn recover(&self) -> Result<()> {
        let records = self.list()?;
        for mut r in records.clone() {
            match r.state {
                State::Created => {
                    log::warn!("container {}: was never started; removing it", r.id);
                    self.remove_everything(&r)?;
                }
                State::Running | State::Paused if r.init.alive() => {
                    log::info!("container {}: still {:?}, re-attached", r.id, r.state);
                }
                State::Running | State::Paused => {
                    r.exit = Some(
                        process::read_exit(&self.container_dir(&r.id))
                            .map_or(Exit::Unknown, Exit::from_wait_status),
                    );
                    r.oom_kills = self.cgroup(&r).map_or(0, |c| c.stats().oom_kills);
                    r.state = State::Stopped;
                    self.save(&r)?;
                    log::info!("container {}: ended while no runtime was watching", r.id);
                }
                State::Stopped => {}
            }
            if r.state == State::Stopped && r.auto_remove {
                self.remove_everything(&r)?;
            }
        }
        let known: Vec<String> = self.list()?.into_iter().map(|r| r.id).collect();
        for name in Cgroup::children(self.mode, &self.parent)? {
            if !known.contains(&name) {
                log::warn!(
                    "cgroup {}/{name} has no record; killing and removing it",
                    self.parent
                );
                Cgroup::load(self.mode, &format!("{}/{name}", self.parent))?.remove()?;
            }
        }
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                log::warn!("container directory {name} has no record; removing it");
                let p = e.path();
                fs::remove_dir_all(&p).map_err(io(&p))?;
            }
        }
        Ok(())
    }
}

/// Only the agent reads a container's directory (logs, exit status).
fn set_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// Waits for the shim to exit: through a pidfd (works whether or not the
/// shim is our child, i.e. also after an agent restart), reaping it when it
/// is ours; by polling /proc on kernels without pidfd_open (< 5.3).
fn wait_for_exit(shim: ProcId, timeout: Option<Duration>) -> std::result::Result<(), Errno> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // SAFETY: pidfd_open takes a pid and flags; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, shim.pid, 0) };
    if fd >= 0 {
        // SAFETY: the kernel just returned this fd; nothing else owns it.
        let pidfd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        // The pid could have been reused between the record and pidfd_open.
        if shim.alive() {
            loop {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let ms = left.map_or(-1, |l| l.as_millis().min(i32::MAX as u128) as i32);
                let mut p = libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd on our stack.
                let n = unsafe { libc::poll(&mut p, 1, ms) };
                if n > 0 {
                    break;
                }
                if n == 0 {
                    return Err(Errno::ETIMEDOUT);
                }
                if Errno::last() != Errno::EINTR {
                    return Err(Errno::last());
                }
            }
        }
    } else {
        while shim.alive() {
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(Errno::ETIMEDOUT);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Reap it if it is our child (ECHILD otherwise, which is fine).
    let _ = nix::sys::wait::waitpid(Pid::from_raw(shim.pid), None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_delegated_parent_is_refused_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let base = "system.slice/dedge-test-missing-unit.service";
        let e = Runtime::open(
            Config {
                dir: dir.path().join("containers"),
                cgroup: CgroupMode::Auto,
                cgroup_parent: format!("{base}/agent-00000000"),
                cgroup_delegated: Some(base.into()),
                die_with_parent: false,
            },
            RecordStore::Files,
        )
        .err()
        .expect("a runtime opened below a missing delegated cgroup");
        assert!(
            e.to_string().contains("dedge-leases.service running"),
            "{e}"
        );
        assert!(!Cgroup::exists(CgroupMode::Auto, base).unwrap());
        assert!(
            !dir.path().join("containers").exists(),
            "state made before the refusal"
        );
    }

    #[test]
    fn ids_that_are_not_plain_names_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad:?} accepted");
        }
        check_id("lease-0x12ab_3.1").unwrap();
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let me = std::process::id() as i32;
        let t = proc_start_time(me).unwrap();
        assert!(t > 0);
        assert_eq!(ProcId::of(me).unwrap().start, t);
        assert!(ProcId::of(me).unwrap().alive());
        assert!(
            !ProcId {
                pid: me,
                start: t + 1
            }
            .alive()
        );
    }

    #[test]
    fn wait_statuses_decode_as_a_shell_reports_them() {
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(9), Exit::Signal(9));
        assert_eq!(Exit::Signal(9).code(), 137);
    }
}

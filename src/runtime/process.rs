//! Starting a container's processes, without re-executing the agent.
//!
//! ```text
//! agent ──fork──> shim ──unshare(PID)+fork──> init (PID 1) ──execve──> the image's program
//! ```
//!
//! The **shim** stays in the host's namespaces: it copies the container's
//! stdout/stderr into size-capped log files (or the CLI's terminal), waits
//! for init and writes its wait status to `exit` in the container's
//! directory. It outlives an agent restart, so a new agent still learns how
//! the container ended. The **init** runs the sandbox steps of
//! `docs/sandbox.md` §3 in order, one function each, reports `READY`, waits
//! for `start` and execs. Neither ever execs the agent's binary, so the
//! container never holds a handle on it (CVE-2019-5736 class); until init
//! execs, no other process exists in its PID namespace.
//!
//! Both are forked from a multi-threaded agent, so they only make the
//! allocation-free calls of `sys.rs`: everything is prepared in a [`Plan`]
//! before the fork. Failures travel back over a pipe as (step, errno).

use std::ffi::{CString, c_char};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::cgroup::Cgroup;
use super::rootfs;
use super::spec::Spec;
use super::sys::{self, Real, Sys};
use super::{Error, Result};

/// Capabilities a container's root keeps: files it owns in /tmp (CHOWN,
/// DAC_OVERRIDE, FOWNER, FSETID), its own processes (KILL, SETUID, SETGID
/// for daemons that drop privileges) and ports below 1024 in its own
/// network namespace (NET_BIND_SERVICE). Nothing that reaches the kernel
/// or the host: no SYS_ADMIN, NET_ADMIN, NET_RAW, MKNOD, SYS_CHROOT, SETPCAP.
const KEPT_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (10, "CAP_NET_BIND_SERVICE"),
];

/// Open files and core dumps per container process (soft, hard).
const RLIMITS: &[(libc::c_int, u64, u64)] = &[
    (libc::RLIMIT_NOFILE as libc::c_int, 1024, 4096),
    (libc::RLIMIT_CORE as libc::c_int, 0, 0),
];

/// How long a sandbox may take to get ready before it is killed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The steps of init, in order; a failure names the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Ready = 0,
    Stdio,
    Session,
    Namespaces,
    CgroupNamespace,
    Private,
    BindRootfs,
    PivotRoot,
    Proc,
    Dev,
    MaskProc,
    Tmp,
    SealRootfs,
    Hostname,
    Loopback,
    Rlimits,
    Bounding,
    Groups,
    Gid,
    Uid,
    Capabilities,
    NoNewPrivs,
    CloseFds,
    WorkingDir,
    Exec,
}

const STEPS: &[Step] = &[
    Step::Ready,
    Step::Stdio,
    Step::Session,
    Step::Namespaces,
    Step::CgroupNamespace,
    Step::Private,
    Step::BindRootfs,
    Step::PivotRoot,
    Step::Proc,
    Step::Dev,
    Step::MaskProc,
    Step::Tmp,
    Step::SealRootfs,
    Step::Hostname,
    Step::Loopback,
    Step::Rlimits,
    Step::Bounding,
    Step::Groups,
    Step::Gid,
    Step::Uid,
    Step::Capabilities,
    Step::NoNewPrivs,
    Step::CloseFds,
    Step::WorkingDir,
    Step::Exec,
];

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Ready => "get ready",
            Step::Stdio => "connect stdin/stdout/stderr",
            Step::Session => "start a new session",
            Step::Namespaces => "create the mount, UTS, IPC and network namespaces",
            Step::CgroupNamespace => "create the cgroup namespace",
            Step::Private => "make the mounts private",
            Step::BindRootfs => "bind-mount the rootfs",
            Step::PivotRoot => "pivot_root into the rootfs",
            Step::Proc => "mount a fresh procfs at /proc (it must be a real directory)",
            Step::Dev => "build /dev (it must be a real directory)",
            Step::MaskProc => "mask /proc paths",
            Step::Tmp => "mount /tmp (it must be a real directory)",
            Step::SealRootfs => "remount the rootfs read-only",
            Step::Hostname => "set the hostname",
            Step::Loopback => "bring up loopback",
            Step::Rlimits => "set rlimits",
            Step::Bounding => "drop capabilities from the bounding set",
            Step::Groups => "set supplementary groups",
            Step::Gid => "set the group id",
            Step::Uid => "set the user id",
            Step::Capabilities => "drop capabilities",
            Step::NoNewPrivs => "set no_new_privs",
            Step::CloseFds => "close inherited file descriptors",
            Step::WorkingDir => "enter the working directory",
            Step::Exec => "execute the command",
        }
    }
}

/// Where the container's stdout and stderr go.
pub enum Output {
    /// `stdout.log` and `stderr.log` in `dir`, each kept under `cap` bytes
    /// (with one rotated `.1` file of the older half).
    Logs { dir: std::path::PathBuf, cap: u64 },
    /// Copied to these (e.g. the CLI's terminal). The container only ever
    /// holds pipes: a host terminal fd would let it inject input (TIOCSTI).
    Forward { stdout: OwnedFd, stderr: OwnedFd },
}

struct LogPaths {
    current: CString,
    rotated: CString,
}

/// Everything init and the shim need, prepared before the fork.
pub struct Plan {
    rootfs: CString,
    hostname: CString,
    tmp_opts: CString,
    cwd: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    candidates: Vec<CString>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    caps: u64,
    cap_last: u32,
    exit_tmp: CString,
    exit_path: CString,
    logs: Option<[LogPaths; 2]>,
    log_half: u64,
    die_with_parent: bool,
    parent: libc::pid_t,
}

fn cstring(s: impl Into<Vec<u8>>) -> Result<CString> {
    CString::new(s).map_err(|e| Error::Invalid(format!("NUL byte in {:?}", e.into_vec())))
}

fn path_c(p: &Path) -> Result<CString> {
    cstring(p.as_os_str().as_encoded_bytes().to_vec())
}

impl Plan {
    /// `dir` is the container's directory (the `exit` file goes there);
    /// `die_with_parent` ties the shim's life to the calling thread (the CLI)
    /// instead of letting it outlive an agent restart.
    pub fn new(
        spec: &Spec,
        rootfs: &Path,
        dir: &Path,
        output: &Output,
        die_with_parent: bool,
    ) -> Result<Plan> {
        let argv: Vec<CString> = spec
            .args
            .iter()
            .map(|a| cstring(a.as_str()))
            .collect::<Result<_>>()?;
        let envp: Vec<CString> = spec
            .env
            .iter()
            .map(|e| cstring(e.as_str()))
            .collect::<Result<_>>()?;
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|c| c.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|c| c.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let candidates = spec
            .exec_candidates()
            .into_iter()
            .map(cstring)
            .collect::<Result<_>>()?;
        let caps = if spec.uid == 0 {
            KEPT_CAPS.iter().fold(0u64, |m, (c, _)| m | 1 << c)
        } else {
            0
        };
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
            .min(63);
        let (logs, log_half) = match output {
            Output::Logs { dir, cap } => {
                let paths = |name: &str| -> Result<LogPaths> {
                    Ok(LogPaths {
                        current: path_c(&dir.join(format!("{name}.log")))?,
                        rotated: path_c(&dir.join(format!("{name}.log.1")))?,
                    })
                };
                (
                    Some([paths("stdout")?, paths("stderr")?]),
                    (cap / 2).max(4096),
                )
            }
            Output::Forward { .. } => (None, u64::MAX),
        };
        Ok(Plan {
            rootfs: path_c(rootfs)?,
            hostname: cstring(spec.hostname.as_str())?,
            tmp_opts: cstring(spec.tmp_options())?,
            cwd: cstring(spec.cwd.as_str())?,
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
            candidates,
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            caps,
            cap_last,
            exit_tmp: path_c(&dir.join("exit.tmp"))?,
            exit_path: path_c(&dir.join("exit"))?,
            logs,
            log_half,
            die_with_parent,
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
        })
    }
}

/// A pipe with both ends above stdio, close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Sandbox(format!("pipe: {e}")))?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// Moves an fd that landed on 0-2 (an agent started with stdio closed)
/// above them: init's dup2 onto 0-2 must never clobber a pipe.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let new = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| Error::Sandbox(format!("dup: {e}")))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The raw fds the shim and init work with (numbers are all they use).
#[derive(Clone, Copy)]
struct Fds {
    report_w: RawFd,
    go_r: RawFd,
    status_w: RawFd,
    start_r: RawFd,
    out_r: RawFd,
    out_w: RawFd,
    err_r: RawFd,
    err_w: RawFd,
    null: RawFd,
    sink_out: RawFd,
    sink_err: RawFd,
}

/// A sandbox set up and waiting to exec (`start`).
#[derive(Debug)]
pub struct Spawned {
    pub shim: i32,
    pub init: i32,
    status: OwnedFd,
    start: OwnedFd,
}

/// Forks the shim and init, puts init in `cgroup` before it does anything,
/// and waits until init reports ready (or a failed step, then nothing is
/// left running).
pub fn spawn(plan: &Plan, output: Output, cgroup: &Cgroup) -> Result<Spawned> {
    let (report_r, report_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (start_r, start_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let null = above_stdio(
        std::fs::File::open("/dev/null")
            .map_err(|e| Error::Sandbox(format!("/dev/null: {e}")))?
            .into(),
    )?;
    let (sink_out, sink_err): (OwnedFd, OwnedFd) = match output {
        Output::Forward { stdout, stderr } => (above_stdio(stdout)?, above_stdio(stderr)?),
        Output::Logs { .. } => {
            let logs = plan
                .logs
                .as_ref()
                .ok_or_else(|| Error::Sandbox("log paths".into()))?;
            let open = |p: &CString| -> Result<OwnedFd> {
                let fd = sys::open_log(p, false)
                    .map_err(|e| Error::Sandbox(format!("{}: {e}", p.to_string_lossy())))?;
                // SAFETY: open returned a fresh fd that nothing else owns.
                above_stdio(unsafe { OwnedFd::from_raw_fd(fd) })
            };
            (open(&logs[0].current)?, open(&logs[1].current)?)
        }
    };
    let fds = Fds {
        report_w: report_w.as_raw_fd(),
        go_r: go_r.as_raw_fd(),
        status_w: status_w.as_raw_fd(),
        start_r: start_r.as_raw_fd(),
        out_r: out_r.as_raw_fd(),
        out_w: out_w.as_raw_fd(),
        err_r: err_r.as_raw_fd(),
        err_w: err_w.as_raw_fd(),
        null: null.as_raw_fd(),
        sink_out: sink_out.as_raw_fd(),
        sink_err: sink_err.as_raw_fd(),
    };
    let shim = sys::fork().map_err(|e| Error::Sandbox(format!("fork: {e}")))?;
    if shim == 0 {
        run_shim(plan, fds);
    }
    // The parent keeps only its ends: the shim and init hold the rest, and
    // EOF on report/status must mean they are gone.
    drop((
        report_w, go_r, status_w, start_r, out_r, out_w, err_r, err_w, null, sink_out, sink_err,
    ));
    let fail = |why: String| -> Error {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = sys::wait_pid(shim);
        Error::Sandbox(why)
    };
    let mut word = [0u8; 4];
    let init = match read_exact_timeout(&report_r, &mut word) {
        Ok(true) => i32::from_le_bytes(word),
        Ok(false) => return Err(fail("the shim died before starting init".into())),
        Err(e) => return Err(fail(format!("waiting for the shim: {e}"))),
    };
    if init <= 0 {
        let e = Errno::from_raw(-init);
        return Err(fail(format!(
            "the shim could not create the PID namespace or fork init: {e}"
        )));
    }
    let kill_init = |why: String| -> Error {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(init),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = sys::wait_pid(shim);
        Error::Sandbox(why)
    };
    if let Err(e) = cgroup.add(init) {
        // Most often init already failed a step and exited: say which.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(init),
            nix::sys::signal::Signal::SIGKILL,
        );
        let why = match read_status(&status_r) {
            Ok(Some((step, errno))) if step != Step::Ready => {
                format!("sandbox setup failed: cannot {}: {errno}", step.what())
            }
            _ => e.to_string(),
        };
        return Err(kill_init(why));
    }
    // If init already failed a step, this write fails and the status
    // pipe below says which step.
    let _ = sys::write_all(go_w.as_raw_fd(), b"g");
    drop(go_w);
    match read_status(&status_r) {
        Ok(Some((Step::Ready, _))) => Ok(Spawned {
            shim,
            init,
            status: status_r,
            start: start_w,
        }),
        Ok(Some((step, errno))) => Err(kill_init(format!(
            "sandbox setup failed: cannot {}: {errno}",
            step.what()
        ))),
        Ok(None) => Err(kill_init("init died during setup".into())),
        Err(e) => Err(kill_init(format!("waiting for init: {e}"))),
    }
}

impl Spawned {
    /// Lets init exec the command. Fails (and the container exits 127) if
    /// the working directory or the program cannot be used.
    pub fn start(self) -> Result<()> {
        sys::write_all(self.start.as_raw_fd(), b"s")
            .map_err(|e| Error::Sandbox(format!("init is gone: {e}")))?;
        drop(self.start);
        match read_status(&self.status) {
            Ok(None) => Ok(()),
            Ok(Some((step, errno))) => {
                Err(Error::Sandbox(format!("cannot {}: {errno}", step.what())))
            }
            Err(e) => Err(Error::Sandbox(format!("waiting for exec: {e}"))),
        }
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on EOF before any byte.
fn read_exact_timeout(fd: &OwnedFd, buf: &mut [u8]) -> std::result::Result<bool, Errno> {
    let mut got = 0;
    while got < buf.len() {
        let mut pfd = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(SETUP_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut pfd, PollTimeout::from(ms)) {
            Ok(0) => return Err(Errno::ETIMEDOUT),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let n = sys::read(fd.as_raw_fd(), &mut buf[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(Errno::EPIPE)
            };
        }
        got += n;
    }
    Ok(true)
}

fn read_status(fd: &OwnedFd) -> std::result::Result<Option<(Step, Errno)>, Errno> {
    let mut msg = [0u8; 8];
    if !read_exact_timeout(fd, &mut msg)? {
        return Ok(None);
    }
    let step = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
    let errno = i32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let step = STEPS.get(step as usize).copied().ok_or(Errno::EPROTO)?;
    Ok(Some((step, Errno::from_raw(errno))))
}

// ---- the shim (after fork: allocation-free) ----

fn run_shim(plan: &Plan, fds: Fds) -> ! {
    sys::ignore_sigpipe();
    // Out of the caller's terminal session: a Ctrl-C reaches the agent or
    // CLI, which decides; a restarted agent finds the container running.
    let _ = sys::setsid();
    // The CLI's containers die with it; the race with an already-dead
    // parent is closed by comparing the parent pid afterwards.
    if plan.die_with_parent
        && (sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).is_err()
            || sys::getppid() != plan.parent)
    {
        sys::exit_now(1);
    }
    let mut keep = [
        fds.report_w,
        fds.go_r,
        fds.status_w,
        fds.start_r,
        fds.out_r,
        fds.out_w,
        fds.err_r,
        fds.err_w,
        fds.null,
        fds.sink_out,
        fds.sink_err,
    ];
    keep.sort_unstable();
    let _ = sys::close_all_except(&keep);
    let report = |v: i32| {
        let _ = sys::write_all(fds.report_w, &v.to_le_bytes());
    };
    if let Err(e) = sys::unshare(libc::CLONE_NEWPID) {
        report(-(e as i32));
        sys::exit_now(1);
    }
    let init = match sys::fork() {
        Ok(0) => run_init(plan, fds),
        Ok(pid) => pid,
        Err(e) => {
            report(-(e as i32));
            sys::exit_now(1);
        }
    };
    for fd in [
        fds.go_r,
        fds.status_w,
        fds.start_r,
        fds.out_w,
        fds.err_w,
        fds.null,
    ] {
        sys::close(fd);
    }
    report(init);
    sys::close(fds.report_w);
    pump(plan, fds);
    let status = sys::wait_pid(init).unwrap_or(-1);
    write_exit(plan, status);
    sys::exit_now(0);
}

/// One output stream's destination, rotated when it passes half the cap.
struct Sink<'a> {
    fd: RawFd,
    written: u64,
    paths: Option<&'a LogPaths>,
    half: u64,
}

impl Sink<'_> {
    fn put(&mut self, mut buf: &[u8]) {
        if let Some(p) = self.paths {
            if self.written + buf.len() as u64 > self.half {
                let _ = sys::rename(&p.current, &p.rotated);
                if let Ok(fd) = sys::open_log(&p.current, true) {
                    sys::close(self.fd);
                    self.fd = fd;
                    self.written = 0;
                }
            }
            if buf.len() as u64 > self.half {
                buf = &buf[buf.len() - self.half as usize..];
            }
        }
        // A closed terminal or a full disk must not stop the draining.
        if sys::write_all(self.fd, buf).is_ok() {
            self.written += buf.len() as u64;
        }
    }
}

/// Copies both pipes to their sinks until the container closes them.
fn pump(plan: &Plan, fds: Fds) {
    let mut sinks = [
        Sink {
            fd: fds.sink_out,
            written: sys::file_size(fds.sink_out),
            paths: plan.logs.as_ref().map(|l| &l[0]),
            half: plan.log_half,
        },
        Sink {
            fd: fds.sink_err,
            written: sys::file_size(fds.sink_err),
            paths: plan.logs.as_ref().map(|l| &l[1]),
            half: plan.log_half,
        },
    ];
    let mut open = [true, true];
    let srcs = [fds.out_r, fds.err_r];
    let mut buf = [0u8; 16 * 1024];
    while open[0] || open[1] {
        let mut pfds = [
            libc::pollfd {
                fd: if open[0] { srcs[0] } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[1] { srcs[1] } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two pollfd structs on our stack, count matches.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return;
        }
        for i in 0..2 {
            if !open[i] || pfds[i].revents == 0 {
                continue;
            }
            match sys::read(srcs[i], &mut buf) {
                Ok(0) | Err(_) => {
                    open[i] = false;
                    sys::close(srcs[i]);
                }
                Ok(n) => sinks[i].put(&buf[..n]),
            }
        }
    }
}

/// Records init's raw wait status in `exit` (written aside, then renamed).
fn write_exit(plan: &Plan, status: libc::c_int) {
    let Ok(fd) = sys::open_log(&plan.exit_tmp, true) else {
        return;
    };
    let mut digits = [0u8; 24];
    let _ = sys::write_all(fd, sys::itoa(i64::from(status), &mut digits));
    let _ = sys::write_all(fd, b"\n");
    sys::fsync(fd);
    sys::close(fd);
    let _ = sys::rename(&plan.exit_tmp, &plan.exit_path);
}

// ---- init (after fork: allocation-free) ----

fn fail(fds: &Fds, step: Step, e: Errno) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(step as u32).to_le_bytes());
    msg[4..].copy_from_slice(&(e as i32).to_le_bytes());
    let _ = sys::write_all(fds.status_w, &msg);
    sys::exit_now(126);
}

fn run_init(plan: &Plan, fds: Fds) -> ! {
    let real = Real;
    let step = |s: Step, r: std::result::Result<(), Errno>| {
        if let Err(e) = r {
            fail(&fds, s, e);
        }
    };
    // If the shim dies, so does the container: nothing runs unsupervised.
    step(
        Step::Ready,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong),
    );
    for fd in [
        fds.report_w,
        fds.out_r,
        fds.err_r,
        fds.sink_out,
        fds.sink_err,
    ] {
        sys::close(fd);
    }
    sys::reset_signals();
    step(Step::Stdio, stdio(&fds));
    step(Step::Session, sys::setsid());
    sys::umask(0);
    step(
        Step::Namespaces,
        sys::unshare(
            libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET,
        ),
    );
    step(Step::Private, rootfs::make_private(&real));
    step(Step::BindRootfs, rootfs::bind_rootfs(&real, &plan.rootfs));
    step(Step::PivotRoot, rootfs::pivot(&real, &plan.rootfs));
    step(Step::Proc, rootfs::mount_proc(&real));
    step(Step::Dev, rootfs::mount_dev(&real));
    step(Step::MaskProc, rootfs::mask_proc(&real));
    step(Step::Tmp, rootfs::mount_tmp(&real, &plan.tmp_opts));
    step(Step::SealRootfs, rootfs::seal_rootfs(&real));
    sys::umask(0o022);
    // The agent moves init into the lease's cgroup while the mounts above
    // are made (on cgroup v1 the move can wait a few ms for an RCU grace
    // period), then writes "go". Nothing of the image has run yet; the
    // cgroup namespace is created only now, rooted at the lease's cgroup.
    match sys::read_byte(fds.go_r) {
        Ok(Some(_)) => sys::close(fds.go_r),
        _ => sys::exit_now(1),
    }
    step(Step::CgroupNamespace, sys::unshare(libc::CLONE_NEWCGROUP));
    step(Step::Hostname, sys::sethostname(plan.hostname.as_bytes()));
    step(Step::Loopback, sys::loopback_up());
    step(Step::Rlimits, rlimits());
    step(Step::Bounding, drop_bounding(plan));
    step(Step::Groups, sys::setgroups(&plan.groups));
    step(Step::Gid, sys::setresgid(plan.gid));
    step(Step::Uid, sys::setresuid(plan.uid));
    step(Step::Capabilities, sys::capset(plan.caps));
    step(Step::NoNewPrivs, sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1));
    // The agent opts itself out of transparent huge pages (its sparse
    // heap would be collapsed into them); the image gets the system's
    // setting back. Best effort: a kernel without the option has no THP.
    let _ = sys::prctl(libc::PR_SET_THP_DISABLE, 0);
    // Ready: wait for start. EOF means the agent went away or gave up.
    let mut ready = [0u8; 8];
    ready[4..].copy_from_slice(&0i32.to_le_bytes());
    if sys::write_all(fds.status_w, &ready).is_err() {
        sys::exit_now(1);
    }
    match sys::read_byte(fds.start_r) {
        Ok(Some(_)) => sys::close(fds.start_r),
        _ => sys::exit_now(1),
    }
    step(Step::CloseFds, sys::close_from(3, true));
    step(Step::WorkingDir, real.chdir(&plan.cwd));
    let mut last = Errno::ENOENT;
    for c in &plan.candidates {
        let e = sys::execve(c, &plan.argv_ptrs, &plan.envp_ptrs);
        // As execvp: keep looking past missing files and non-directories.
        if !matches!(e, Errno::ENOENT | Errno::ENOTDIR) {
            last = e;
        }
        if !matches!(e, Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) {
            break;
        }
    }
    fail(&fds, Step::Exec, last);
}

fn stdio(fds: &Fds) -> std::result::Result<(), Errno> {
    sys::dup2(fds.null, 0)?;
    sys::dup2(fds.out_w, 1)?;
    sys::dup2(fds.err_w, 2)?;
    for fd in [fds.null, fds.out_w, fds.err_w] {
        sys::close(fd);
    }
    Ok(())
}

fn rlimits() -> std::result::Result<(), Errno> {
    for &(res, soft, hard) in RLIMITS {
        sys::setrlimit(res, soft, hard)?;
    }
    Ok(())
}

/// Drops every capability not kept from the bounding set (so no later
/// exec can regain it) and clears the ambient set.
fn drop_bounding(plan: &Plan) -> std::result::Result<(), Errno> {
    let keep_root = KEPT_CAPS.iter().fold(0u64, |m, (c, _)| m | 1 << c);
    for cap in 0..=plan.cap_last {
        if keep_root & (1 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) {
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    ) {
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Decodes the `exit` file the shim writes.
pub(crate) fn read_exit(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("exit"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_decode_to_themselves() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(
                *step as u32 as usize, i,
                "{step:?} is out of order in STEPS"
            );
        }
        assert_eq!(STEPS.last(), Some(&Step::Exec));
    }
}

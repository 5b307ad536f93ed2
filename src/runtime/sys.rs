//! The system calls the sandbox makes between `fork` and `execve`, as small
//! safe wrappers, and the seam (`Sys`) through which the mount steps make
//! theirs, so `rootfs.rs` can be tested without root.
//!
//! Everything here runs in a child forked from a multi-threaded agent: no
//! allocation, no locks, no logging; paths arrive as prepared `CStr`s and
//! failures as bare `Errno`s.

use std::ffi::{CStr, c_char};
use std::os::fd::RawFd;

use nix::errno::Errno;

/// What a path is, by `lstat` (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Missing,
    Dir,
    File,
    Symlink,
    Other,
}

/// The calls the mount steps need; `Real` makes them, tests record them.
pub(crate) trait Sys {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    fn umount_detach(&self, target: &CStr) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    fn mkdir(&self, path: &CStr, mode: libc::mode_t) -> Result<(), Errno>;
    fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), Errno>;
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    fn kind(&self, path: &CStr) -> Result<Kind, Errno>;
    /// `statfs(2)`'s `f_type` of the filesystem holding `path`.
    fn fs_magic(&self, path: &CStr) -> Result<i64, Errno>;
}

/// The kernel.
pub(crate) struct Real;

fn check(ret: libc::c_int) -> Result<(), Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

impl Sys for Real {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: libc::c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        // SAFETY: every pointer is null or a NUL-terminated string that
        // outlives the call; the kernel copies them.
        check(unsafe {
            libc::mount(
                ptr(source),
                target.as_ptr(),
                ptr(fstype),
                flags,
                ptr(data).cast(),
            )
        })
    }

    fn umount_detach(&self, target: &CStr) -> Result<(), Errno> {
        // SAFETY: `target` is NUL-terminated and lives through the call.
        check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        // SAFETY: pivot_root(2) takes two path strings, both NUL-terminated
        // and alive for the call; libc has no wrapper, hence syscall(2).
        let ret =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        check(ret as libc::c_int)
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path, alive for the call.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }

    fn mkdir(&self, path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path, alive for the call.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })
    }

    fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), Errno> {
        // SAFETY: NUL-terminated path, alive for the call.
        check(unsafe { libc::mknod(path.as_ptr(), mode, dev) })
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        // SAFETY: both NUL-terminated, alive for the call.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }

    fn kind(&self, path: &CStr) -> Result<Kind, Errno> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is a properly sized out-buffer the kernel fills on success.
        let ret = unsafe { libc::lstat(path.as_ptr(), st.as_mut_ptr()) };
        if ret == -1 {
            return match Errno::last() {
                Errno::ENOENT => Ok(Kind::Missing),
                e => Err(e),
            };
        }
        // SAFETY: lstat returned 0, so `st` is initialised.
        let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
        Ok(match mode {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        })
    }

    fn fs_magic(&self, path: &CStr) -> Result<i64, Errno> {
        let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: `st` is a properly sized out-buffer the kernel fills on success.
        check(unsafe { libc::statfs(path.as_ptr(), st.as_mut_ptr()) })?;
        // SAFETY: statfs returned 0, so `st` is initialised.
        let f_type = unsafe { st.assume_init() }.f_type;
        // Its width differs between targets (32 bits on ARMv7).
        #[allow(clippy::unnecessary_cast)]
        Ok(f_type as i64)
    }
}

// ---- calls the child makes outside the mount steps ----

pub(crate) fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 on integers; an invalid fd is reported as EBADF.
    check(unsafe { libc::dup2(from, to) })
}

pub fn close(fd: RawFd) {
    // SAFETY: closing an fd this process owns and no Rust object wraps
    // (the child works on raw numbers it was handed).
    unsafe { libc::close(fd) };
}

/// Reads one byte; `Ok(None)` at end of file.
pub(crate) fn read_byte(fd: RawFd) -> Result<Option<u8>, Errno> {
    let mut b = 0u8;
    loop {
        // SAFETY: one-byte buffer on our stack.
        let n = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
        match n {
            1 => return Ok(Some(b)),
            0 => return Ok(None),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Errno::last()),
        }
    }
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; the kernel reads at most its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(Errno::last());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: `buf` is a live, writable slice of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
}

pub(crate) fn setsid() -> Result<(), Errno> {
    // SAFETY: no arguments.
    check(unsafe { libc::setsid() })
}

pub(crate) fn umask(mask: libc::mode_t) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) };
}

pub fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: flags only; the kernel validates them.
    check(unsafe { libc::unshare(flags) })
}

pub(crate) fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: pointer and length of a live slice.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

pub(crate) fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> Result<(), Errno> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: `lim` lives on our stack for the call. The resource's integer
    // type differs between glibc and musl, hence the cast.
    check(unsafe { libc::setrlimit(resource as _, &lim) })
}

pub(crate) fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the options used here take integer arguments only.
    check(unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: pointer and length of a live slice of gid_t.
    check(unsafe { libc::setgroups(groups.len() as _, groups.as_ptr()) })
}

pub(crate) fn setresgid(gid: libc::gid_t) -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { libc::setresgid(gid, gid, gid) })
}

pub(crate) fn setresuid(uid: libc::uid_t) -> Result<(), Errno> {
    // SAFETY: integers only.
    check(unsafe { libc::setresuid(uid, uid, uid) })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's effective, permitted and inheritable sets to `caps`
/// (a bit per capability number).
pub(crate) fn capset(caps: u64) -> Result<(), Errno> {
    let hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let lo = caps as u32;
    let hi = (caps >> 32) as u32;
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: lo,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: hi,
        },
    ];
    // SAFETY: version-3 capset reads one header and two data structs, laid
    // out as the kernel's (repr(C)), both alive on our stack.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw const hdr, data.as_ptr()) };
    check(ret as libc::c_int)
}

/// Marks (`cloexec`) or closes every fd from `first` up. Uses
/// close_range(2) (Linux 5.9/5.11); older kernels get a bounded loop.
pub(crate) fn close_from(first: RawFd, cloexec: bool) -> Result<(), Errno> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let flags = if cloexec { CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: integers only; fds in the range that are not open are skipped.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            flags,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    match Errno::last() {
        Errno::ENOSYS | Errno::EINVAL => {}
        e => return Err(e),
    }
    let mut lim = std::mem::MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: out-buffer of the right size.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) } == 0 {
        // SAFETY: getrlimit returned 0, so it is initialised.
        let cur = unsafe { lim.assume_init() }.rlim_cur;
        // rlim_t is 32 bits on some 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        let cur = cur as u64;
        cur.min(1 << 20) as RawFd
    } else {
        1 << 16
    };
    for fd in first..max {
        if cloexec {
            // SAFETY: fcntl on an integer fd; EBADF for closed ones is ignored.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        } else {
            close(fd);
        }
    }
    Ok(())
}

/// Closes every fd from 3 up except those in `keep` (sorted ascending).
pub(crate) fn close_all_except(keep: &[RawFd]) -> Result<(), Errno> {
    let mut next = 3;
    for &k in keep {
        if k < next {
            continue;
        }
        for fd in next..k {
            close(fd);
        }
        next = k + 1;
    }
    close_from(next, false)
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: creating a socket takes integers only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq we own.
    let r = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req)
        }
    };
    let result = check(r);
    close(sock);
    result
}

/// `execve`s; returns only on failure.
pub(crate) fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: `argv` and `envp` are NULL-terminated arrays of pointers to
    // NUL-terminated strings, all owned by the caller's prepared plan.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// Leaves the child at once, without running Rust or libc exit handlers
/// (they belong to the parent's copy of the process).
pub(crate) fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit never returns and touches no shared state.
    unsafe { libc::_exit(code) }
}

/// Opens `path` for appending, creating it (mode 0600) or, with
/// `truncate`, emptying it.
pub(crate) fn open_log(path: &CStr, truncate: bool) -> Result<RawFd, Errno> {
    let mut flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    if truncate {
        flags |= libc::O_TRUNC;
    }
    // SAFETY: NUL-terminated path; the mode argument is read for O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 { Err(Errno::last()) } else { Ok(fd) }
}

pub(crate) fn rename(from: &CStr, to: &CStr) -> Result<(), Errno> {
    // SAFETY: both NUL-terminated, alive for the call.
    check(unsafe { libc::rename(from.as_ptr(), to.as_ptr()) })
}

pub fn fsync(fd: RawFd) {
    // SAFETY: integer fd; errors are not actionable here.
    unsafe { libc::fsync(fd) };
}

/// Size of an open file (0 if it cannot be read).
pub(crate) fn file_size(fd: RawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: out-buffer of the right size.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0 {
        // SAFETY: fstat returned 0, so it is initialised.
        unsafe { st.assume_init() }.st_size as u64
    } else {
        0
    }
}

pub(crate) fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN has no handler code to be unsafe in.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Restores every signal to its default action and unblocks them all, so
/// the container does not inherit the agent's dispositions or mask.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL for a valid signal number; errors (for numbers
            // libc reserves) are harmless.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises `set`; sigprocmask reads it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
    }
}

pub fn fork() -> Result<libc::pid_t, Errno> {
    // SAFETY: the caller is written for fork in a multi-threaded process:
    // the child only makes the allocation-free calls of this module, then
    // execs or `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 { Err(Errno::last()) } else { Ok(pid) }
}

/// Waits for `pid`; returns its raw wait status.
pub(crate) fn wait_pid(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
}

pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::getppid() }
}

/// Writes `n` in decimal into `buf`; returns the digits.
pub(crate) fn itoa(mut n: i64, buf: &mut [u8; 24]) -> &[u8] {
    let neg = n < 0;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10).unsigned_abs() as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

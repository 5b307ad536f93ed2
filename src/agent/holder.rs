//! `dedge agent hold-cgroups`: the one process of `dedge-leases.service`,
//! the systemd unit whose delegated cgroup holds every lease's cgroup.
//!
//! Why a unit apart from the agent's: systemd starts a service's process in
//! the unit's own cgroup, and once controllers are enabled for that
//! cgroup's children the kernel refuses it (EBUSY, the no-internal-processes
//! rule). systemd 252 (Debian 12, Raspberry Pi OS Bookworm) then fails the
//! start with status 219/CGROUP, so an agent that owned the lease cgroups
//! could never be restarted or upgraded while a lease runs (measured in the
//! VM rig; `DelegateSubgroup=` fixes it from systemd 254 on). This process
//! is never restarted: it moves itself into a leaf, enables the sandbox's
//! controllers below its unit, tells systemd it is ready, and sleeps. The
//! agent, in its own unit, restarts freely and makes lease cgroups beside
//! the leaf. Stopping `dedge-leases.service` kills every lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::runtime::cgroup;

/// The leaf this process moves into, beside the agents' lease parents.
const LEAF: &str = "holder";

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(
        "not in a cgroup of its own on a unified cgroup v2 host (at the root, or /sys/fs/cgroup \
         is not cgroup2): run it as dedge-leases.service, with Delegate=yes"
    )]
    NotDelegated,
    #[error("reading this process's cgroup")]
    OwnCgroup(#[source] crate::runtime::Error),
    #[error("moving into the leaf {LEAF:?} and enabling controllers below {0}")]
    Leaf(String, #[source] crate::runtime::Error),
    #[error("telling systemd the unit is ready (NOTIFY_SOCKET {0})")]
    Notify(String, #[source] std::io::Error),
}

/// Holds the unit's cgroup until `stop` is set; returns the delegated
/// cgroup (the agent's `cgroup_parent`).
pub(crate) fn hold(stop: &AtomicBool) -> Result<String, Error> {
    // A hybrid host's v2 line names a cgroup of /sys/fs/cgroup/unified,
    // which the runtime does not drive.
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Err(Error::NotDelegated);
    }
    let own = cgroup::own_v2()
        .map_err(Error::OwnCgroup)?
        .ok_or(Error::NotDelegated)?;
    let (parent, leaf) = match own.rsplit_once('/') {
        // Started again by hand from inside the leaf: hold the unit's cgroup.
        Some((parent, last)) if last == LEAF => (parent.to_string(), last),
        _ => (own.clone(), LEAF),
    };
    cgroup::move_to_leaf(&parent, leaf).map_err(|e| Error::Leaf(parent.clone(), e))?;
    notify_ready(&parent)?;
    log::info!("holding /{parent} for the agent's leases (in /{parent}/{leaf})");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(parent)
}

/// `sd_notify(READY=1)` when systemd asked for it (`Type=notify`).
fn notify_ready(parent: &str) -> Result<(), Error> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => notify_ready_to(&socket, parent),
        None => Ok(()),
    }
}

fn notify_ready_to(socket: &std::ffi::OsStr, parent: &str) -> Result<(), Error> {
    let shown = socket.to_string_lossy().into_owned();
    let fail = |e| Error::Notify(shown.clone(), e);
    let sock = std::os::unix::net::UnixDatagram::unbound().map_err(fail)?;
    let message = format!("READY=1\nSTATUS=holding /{parent}\n");
    let bytes = socket.as_encoded_bytes();
    if !bytes.starts_with(b"/") && !bytes.starts_with(b"@") {
        // vsock: and others (systemd 254+ in VMs): not a local unit's socket.
        log::warn!("NOTIFY_SOCKET {shown:?} is not a unix socket path; not notifying");
        return Ok(());
    }
    match bytes.strip_prefix(b"@") {
        // An abstract socket: systemd writes its name with a leading `@`.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(fail)?;
            sock.send_to_addr(message.as_bytes(), &addr).map_err(fail)?;
        }
        None => {
            sock.send_to(message.as_bytes(), socket).map_err(fail)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_ready_to(path.as_os_str(), "system.slice/dedge-leases.service").unwrap();
        let mut buf = [0u8; 128];
        let n = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("READY=1\n"), "{text:?}");
        assert!(
            text.contains("/system.slice/dedge-leases.service"),
            "{text:?}"
        );
    }
}

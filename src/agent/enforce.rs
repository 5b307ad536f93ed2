//! Payment enforcement applied: each running or frozen lease's decision
//! (`payment::decide`) carried out on its container and recorded. The
//! lease's record changes only after the container did what it says, so
//! a crash in between is repaired by the next round (deciding again from
//! the record gives the same action, and pausing a paused container or
//! resuming a running one is harmless).

use std::time::Duration;

use super::deploy::container_id;
use super::lease::{LeaseBook, State};
use super::payment::{Action, decide, owed};
use super::{Error, Result};
use crate::runtime::container::Runtime;

/// How long a stopped lease's processes get between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// One round over every running or frozen lease; what was done to which.
pub fn enforce(
    book: &LeaseBook,
    runtime: &Runtime,
    grace: u64,
    now: u64,
) -> Result<Vec<([u8; 32], Action)>> {
    let mut done = Vec::new();
    for lease in book.all()? {
        let action = decide(&lease, grace, now);
        let id = container_id(&lease.id);
        let (to, reason) = match action {
            Action::Nothing => continue,
            Action::Freeze => {
                runtime.pause(&id).map_err(|e| runtime_err(&id, e))?;
                (
                    State::Frozen,
                    format!(
                        "behind on payment: owed {}, paid {}",
                        owed(&lease, now),
                        lease.paid
                    ),
                )
            }
            Action::Thaw => {
                runtime.resume(&id).map_err(|e| runtime_err(&id, e))?;
                (State::Running, "paid up".to_string())
            }
            Action::Stop | Action::Over => {
                runtime
                    .kill(&id, STOP_GRACE)
                    .map_err(|e| runtime_err(&id, e))?;
                let why = if action == Action::Over {
                    "the lease's maximum duration is over".to_string()
                } else {
                    format!(
                        "stopped: still behind {grace} s after being frozen (owed {}, paid {})",
                        owed(&lease, now),
                        lease.paid
                    )
                };
                (State::Terminating, why)
            }
        };
        log::info!("lease {}: {} ({reason})", lease.id_hex(), to.name());
        book.transition(&lease.id, to, now, Some(reason), |_| {})?;
        done.push((lease.id, action));
    }
    Ok(done)
}

fn runtime_err(id: &str, e: crate::runtime::Error) -> Error {
    Error::Lease(format!("container {id}: {e}"))
}

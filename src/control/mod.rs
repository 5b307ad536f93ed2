//! Fleet management through the chain: the operator's commands to a
//! gateway (`command`, the wire format of `AgentControl.post`), what each
//! means for a gateway (`decide`, pure), and the configuration they add up
//! to over the board file (`overlay`). The agent follows and applies them
//! (`agent::control`); the operator posts them and reads the fleet
//! (`dedge fleet`). docs/PROTOCOL.md §7 is the reference.

pub mod command;
pub mod decide;
pub mod overlay;

pub use command::{Command, Envelope};
pub use decide::{Decision, Held, Posted, decide};
pub use overlay::{Overlay, Selling, Settings};

/// What became of a command, as `AgentControl.Outcome` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Applied,
    Refused,
    /// Accepted but its effect could not be carried out (EdgeX down for a
    /// devices check, the lease book failing an eviction).
    Failed,
}

impl Outcome {
    /// The contract's enum value (0 is `None`, never reported).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Applied => 1,
            Outcome::Refused => 2,
            Outcome::Failed => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Outcome> {
        match code {
            1 => Some(Outcome::Applied),
            2 => Some(Outcome::Refused),
            3 => Some(Outcome::Failed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

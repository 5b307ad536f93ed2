//! The operator's command as it travels in `AgentControl.post`: one format
//! byte, then a postcard `Envelope` (docs/PROTOCOL.md §7). The envelope
//! names where and for whom it is meant (chain, AgentControl, gateway,
//! sequence), when it stops being good, and, for a configuration change,
//! the configuration version it was written against. Decoding refuses an
//! unknown format, an unknown command, bytes after the envelope and any
//! list or text over its bound, each with a reason the gateway reports.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// The first byte of every command. A new encoding gets a new byte; an
/// agent refuses one it does not know rather than guessing.
pub const FORMAT: u8 = 1;
/// What `AgentControl.MAX_COMMAND` allows.
pub const MAX_COMMAND: usize = 4096;
/// Tenant addresses per list.
pub const MAX_TENANTS: usize = 64;
/// Devices added or removed by one command, and devices on sale at once.
pub const MAX_DEVICES: usize = 32;
/// Commands per device on sale.
pub const MAX_DEVICE_COMMANDS: usize = 32;
/// A device's or command's name (EdgeX names are short).
pub const MAX_NAME: usize = 64;
/// An eviction's reason.
pub const MAX_REASON: usize = 200;
/// An upgrade's release reference and version.
pub const MAX_RELEASE: usize = 128;

/// One command for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub chain_id: u64,
    /// The AgentControl contract it is posted to.
    pub control: Address,
    pub gateway: Address,
    /// The sequence number it must have been posted as.
    pub seq: u64,
    /// Unix seconds after which it is refused, however it arrives.
    pub expiry: u64,
    /// For a configuration change, the configuration version it expects
    /// (`Overlay::version`); none for an action.
    pub expects: Option<u64>,
    pub command: Command,
}

/// What the operator asks. Configuration commands change what the gateway
/// sells from then on; pause, resume and drain whether it sells; actions
/// act once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Take no new leases and withdraw the advert; running leases go on.
    Pause,
    /// Sell again (ends a pause or a drain).
    Resume,
    /// Take no new leases; running ones end at their term; the status says
    /// `drained` once none holds anything.
    Drain,
    Prices(Prices),
    Capacity(Capacity),
    /// Change the EdgeX offers on sale: `add` replaces a device's offer,
    /// `remove` takes a device off sale.
    Devices {
        add: Vec<DeviceSale>,
        remove: Vec<String>,
    },
    Backends(Backends),
    /// Who may lease: a non-empty `allow` admits only those; `deny` refuses
    /// those. Both replace the lists in force.
    Tenants {
        allow: Vec<Address>,
        deny: Vec<Address>,
    },
    /// End a lease now, for the time served (action).
    Evict {
        lease: [u8; 32],
        reason: String,
    },
    LogLevel(Level),
    /// Run another release of the agent (action; carried out by the next
    /// issue's upgrader, refused by this agent).
    Upgrade {
        release: String,
        version: String,
    },
}

impl Command {
    /// Whether it changes the configuration (and so must name the version
    /// it expects, and moves it). Pause, resume and drain change only
    /// whether the gateway sells: an operator's emergency pause must not
    /// fail for a change in flight, and two of them cannot conflict (the
    /// later one in sequence wins).
    pub fn is_configuration(&self) -> bool {
        !matches!(
            self,
            Command::Pause
                | Command::Resume
                | Command::Drain
                | Command::Evict { .. }
                | Command::Upgrade { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Drain => "drain",
            Command::Prices(_) => "prices",
            Command::Capacity(_) => "capacity",
            Command::Devices { .. } => "devices",
            Command::Backends(_) => "backends",
            Command::Tenants { .. } => "tenants",
            Command::Evict { .. } => "evict",
            Command::LogLevel(_) => "log-level",
            Command::Upgrade { .. } => "upgrade",
        }
    }
}

/// EDG base units per unit-second, as the board's `[pricing]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub cpu_core_second: u128,
    pub memory_gib_second: u128,
    pub device_second: Option<u128>,
}

/// What the gateway sells over all leases at once, as the board's
/// `[resources]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu_millicores: u32,
    pub memory: u64,
    pub disk: u64,
    pub max_leases: u32,
}

/// One EdgeX device's offer, as a board's `[[edgex.devices]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSale {
    pub name: String,
    pub read: Vec<String>,
    pub write: Vec<String>,
}

/// The board's `[agent] backends`, in the command's own encoding (the
/// board's enum may grow without changing this wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backends {
    None,
    Public,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
            Level::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Why bytes are not a command. Its text is what the gateway reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty command")]
    Empty,
    #[error("command of {0} bytes is over the {MAX_COMMAND}-byte limit")]
    TooLong(usize),
    #[error("unknown command format {0} (this agent reads format {FORMAT})")]
    Format(u8),
    #[error("malformed or unknown command: {0}")]
    Malformed(String),
    #[error("{0} bytes after the command")]
    Trailing(usize),
    #[error("{0}")]
    Bound(String),
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        // Serialising plain structs into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let (&format, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if bytes.len() > MAX_COMMAND {
            return Err(DecodeError::TooLong(bytes.len()));
        }
        if format != FORMAT {
            return Err(DecodeError::Format(format));
        }
        let (e, rest): (Envelope, _) =
            postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        e.command.check_bounds().map_err(DecodeError::Bound)?;
        Ok(e)
    }
}

/// A name an operator may give: short, printable ASCII, no separators
/// the agent's own formats use (`:` in device grants).
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is not a name (1-{MAX_NAME} printable ASCII characters, no `:`)",
            crate::logger::untrusted(name, MAX_NAME)
        ))
    }
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(format!(
            "{what} must be at most {max} bytes of text without control characters"
        ));
    }
    Ok(())
}

impl Command {
    /// The bounds a decoded command must keep (the encoding alone does not).
    pub fn check_bounds(&self) -> Result<(), String> {
        match self {
            Command::Devices { add, remove } => {
                if add.len() > MAX_DEVICES || remove.len() > MAX_DEVICES {
                    return Err(format!(
                        "at most {MAX_DEVICES} devices added and removed per command"
                    ));
                }
                for d in add {
                    check_name("device", &d.name)?;
                    if d.read.len() + d.write.len() > MAX_DEVICE_COMMANDS {
                        return Err(format!(
                            "device `{}`: at most {MAX_DEVICE_COMMANDS} commands",
                            d.name
                        ));
                    }
                    if d.read.is_empty() && d.write.is_empty() {
                        return Err(format!("device `{}`: no command offered", d.name));
                    }
                    for c in d.read.iter().chain(&d.write) {
                        check_name("command", c)?;
                    }
                }
                for name in remove {
                    check_name("device", name)?;
                }
                Ok(())
            }
            Command::Tenants { allow, deny } => {
                if allow.len() > MAX_TENANTS || deny.len() > MAX_TENANTS {
                    return Err(format!("at most {MAX_TENANTS} addresses per tenant list"));
                }
                if let Some(a) = allow.iter().find(|a| deny.contains(a)) {
                    return Err(format!("{a} is both allowed and denied"));
                }
                Ok(())
            }
            Command::Evict { reason, .. } => check_text("an eviction's reason", reason, MAX_REASON),
            Command::Upgrade { release, version } => {
                check_text("the release", release, MAX_RELEASE)?;
                check_text("the version", version, MAX_RELEASE)
            }
            Command::Capacity(c) => {
                if c.cpu_millicores == 0 || c.memory == 0 || c.max_leases == 0 {
                    return Err(
                        "capacity with no CPU, memory or lease is a pause: use pause".into(),
                    );
                }
                Ok(())
            }
            Command::Prices(p) => {
                if p.cpu_core_second == 0 && p.memory_gib_second == 0 {
                    return Err("prices of zero for CPU and memory give leases away".into());
                }
                Ok(())
            }
            Command::Pause
            | Command::Resume
            | Command::Drain
            | Command::Backends(_)
            | Command::LogLevel(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(command: Command) -> Envelope {
        Envelope {
            chain_id: 31337,
            control: Address::repeat_byte(0xc0),
            gateway: Address::repeat_byte(0x9a),
            seq: 7,
            expiry: 2_000_000_000,
            expects: command.is_configuration().then_some(3),
            command,
        }
    }

    fn every_command() -> Vec<Command> {
        vec![
            Command::Pause,
            Command::Resume,
            Command::Drain,
            Command::Prices(Prices {
                cpu_core_second: 10u128.pow(20),
                memory_gib_second: 5,
                device_second: Some(1),
            }),
            Command::Capacity(Capacity {
                cpu_millicores: 500,
                memory: 1 << 28,
                disk: 1 << 30,
                max_leases: 2,
            }),
            Command::Devices {
                add: vec![DeviceSale {
                    name: "Random-Integer-Device".into(),
                    read: vec!["Int8".into()],
                    write: vec!["Int8".into()],
                }],
                remove: vec!["Old".into()],
            },
            Command::Backends(Backends::Public),
            Command::Tenants {
                allow: vec![Address::repeat_byte(1)],
                deny: vec![Address::repeat_byte(2)],
            },
            Command::Evict {
                lease: [3; 32],
                reason: "maintenance".into(),
            },
            Command::LogLevel(Level::Debug),
            Command::Upgrade {
                release: "bafy...".into(),
                version: "0.2.0".into(),
            },
        ]
    }

    #[test]
    fn every_command_round_trips_compactly() {
        for c in every_command() {
            let e = envelope(c);
            let bytes = e.encode();
            assert_eq!(bytes[0], FORMAT);
            assert!(
                bytes.len() < 200,
                "{}: {} bytes",
                e.command.name(),
                bytes.len()
            );
            assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn malformed_unknown_and_oversized_commands_are_refused_by_name() {
        let good = envelope(Command::Pause).encode();
        assert_eq!(Envelope::decode(&[]), Err(DecodeError::Empty));
        let mut other_format = good.clone();
        other_format[0] = 2;
        assert_eq!(Envelope::decode(&other_format), Err(DecodeError::Format(2)));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Envelope::decode(&trailing), Err(DecodeError::Trailing(1)));
        let truncated = &good[..good.len() - 1];
        assert!(matches!(
            Envelope::decode(truncated),
            Err(DecodeError::Malformed(_))
        ));
        // The command's variant is the envelope's last field but one byte:
        // a variant past the last known one is an unknown command.
        let mut unknown = good.clone();
        *unknown.last_mut().unwrap() = 200;
        assert!(matches!(
            Envelope::decode(&unknown),
            Err(DecodeError::Malformed(_))
        ));
        let long = vec![FORMAT; MAX_COMMAND + 1];
        assert_eq!(
            Envelope::decode(&long),
            Err(DecodeError::TooLong(MAX_COMMAND + 1))
        );
    }

    #[test]
    fn bounds_the_encoding_cannot_express_are_checked() {
        let many = Command::Tenants {
            allow: vec![Address::repeat_byte(1); MAX_TENANTS + 1],
            deny: vec![],
        };
        let both = Command::Tenants {
            allow: vec![Address::repeat_byte(1)],
            deny: vec![Address::repeat_byte(1)],
        };
        let bad_name = Command::Devices {
            add: vec![DeviceSale {
                name: "a:b".into(),
                read: vec!["x".into()],
                write: vec![],
            }],
            remove: vec![],
        };
        let log_line = Command::Evict {
            lease: [0; 32],
            reason: "ok\nFORGED log line".into(),
        };
        let zero = Command::Capacity(Capacity {
            cpu_millicores: 0,
            memory: 1,
            disk: 1,
            max_leases: 1,
        });
        for (c, why) in [
            (many, "at most 64"),
            (both, "both allowed and denied"),
            (bad_name, "is not a name"),
            (log_line, "control characters"),
            (zero, "use pause"),
        ] {
            match Envelope::decode(&envelope(c).encode()) {
                Err(DecodeError::Bound(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("{why}: {other:?}"),
            }
        }
    }
}

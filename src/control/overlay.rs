//! The gateway's effective configuration: the vendor's board file with the
//! operator's applied commands laid over it. Each overlaid value keeps the
//! sequence number of the command that set it, so `dedge agent status`
//! shows where every value came from.
//!
//! What wins: an applied command, for what it sets. The vendor's board file
//! is the gateway's default and its hardware's truth; the operator runs the
//! business on it, and a command is the operator's later, explicit word
//! (and re-flashing a board file must not silently undo an operator's
//! price or pause). Two limits stay the vendor's: capacity may not exceed
//! the board's `[resources]` (what the hardware was sized for), and the
//! devices on sale must be ones EdgeX serves, checked as the board's are.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use super::command::{Backends, Capacity, DeviceSale, Level, Prices};
use crate::board::values::LogLevel;
use crate::board::{BackendPolicy, Board, Device};

/// Whether the gateway takes new leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selling {
    #[default]
    Open,
    /// Paused by the operator: no new leases, no advert.
    Paused,
    /// Draining: no new leases, no advert, running ones end at their term.
    Draining,
}

impl Selling {
    pub fn name(self) -> &'static str {
        match self {
            Selling::Open => "open",
            Selling::Paused => "paused",
            Selling::Draining => "draining",
        }
    }
}

/// A value a command set, and which command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourced<T> {
    pub value: T,
    pub seq: u64,
}

/// Who may lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenants {
    /// Empty: anyone not denied.
    pub allow: Vec<Address>,
    pub deny: Vec<Address>,
}

impl Tenants {
    /// Why `buyer` may not lease, if it may not.
    pub fn refuses(&self, buyer: Address) -> Option<String> {
        if self.deny.contains(&buyer) {
            Some(format!(
                "buyer {buyer} is refused by this gateway's operator"
            ))
        } else if !self.allow.is_empty() && !self.allow.contains(&buyer) {
            Some(format!(
                "this gateway's operator leases only to a list of buyers, and {buyer} is not on it"
            ))
        } else {
            None
        }
    }
}

/// The operator's applied configuration commands, folded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// The sequence number of the last configuration command applied; 0 is
    /// the board file alone. A configuration command names the version it
    /// expects, so of two written against the same version the second
    /// fails instead of overwriting the first unseen.
    pub version: u64,
    pub selling: Option<Sourced<Selling>>,
    pub prices: Option<Sourced<Prices>>,
    pub capacity: Option<Sourced<Capacity>>,
    /// The whole list on sale once a command changed it.
    pub devices: Option<Sourced<Vec<DeviceSale>>>,
    pub backends: Option<Sourced<Backends>>,
    pub tenants: Option<Sourced<Tenants>>,
    pub log_level: Option<Sourced<Level>>,
}

/// A value of the effective configuration and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<T> {
    pub value: T,
    /// `None`: the board file; `Some(seq)`: command `seq`.
    pub from: Option<u64>,
}

impl<T> Value<T> {
    pub fn origin(&self) -> String {
        match self.from {
            None => "board".into(),
            Some(seq) => format!("command {seq}"),
        }
    }
}

/// Everything a command can change, as it is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub version: u64,
    pub selling: Value<Selling>,
    pub prices: Value<Prices>,
    pub capacity: Value<Capacity>,
    pub devices: Value<Vec<DeviceSale>>,
    pub backends: Value<BackendPolicy>,
    pub tenants: Value<Tenants>,
    pub log_level: Value<log::LevelFilter>,
}

fn pick<T: Clone, U>(over: &Option<Sourced<T>>, board: U, f: impl Fn(T) -> U) -> Value<U> {
    match over {
        Some(s) => Value {
            value: f(s.value.clone()),
            from: Some(s.seq),
        },
        None => Value {
            value: board,
            from: None,
        },
    }
}

pub fn board_prices(b: &Board) -> Prices {
    Prices {
        cpu_core_second: b.pricing.cpu_core_second.wei(),
        memory_gib_second: b.pricing.memory_gib_second.wei(),
        device_second: b.pricing.device_second.map(|d| d.wei()),
    }
}

pub fn board_capacity(b: &Board) -> Capacity {
    Capacity {
        cpu_millicores: b.resources.cpu_millicores,
        memory: b.resources.memory.bytes(),
        disk: b.resources.disk.bytes(),
        max_leases: b.resources.max_leases,
    }
}

pub fn board_devices(b: &Board) -> Vec<DeviceSale> {
    b.edgex
        .iter()
        .flat_map(|e| &e.devices)
        .map(|d| DeviceSale {
            name: d.name.clone(),
            read: d.read.clone(),
            write: d.write.clone(),
        })
        .collect()
}

pub fn backends_policy(b: Backends) -> BackendPolicy {
    match b {
        Backends::None => BackendPolicy::None,
        Backends::Public => BackendPolicy::Public,
        Backends::Any => BackendPolicy::Any,
    }
}

fn board_level(l: LogLevel) -> log::LevelFilter {
    l.filter()
}

impl Settings {
    pub fn new(b: &Board, o: &Overlay) -> Settings {
        Settings {
            version: o.version,
            selling: pick(&o.selling, Selling::Open, |s| s),
            prices: pick(&o.prices, board_prices(b), |p| p),
            capacity: pick(&o.capacity, board_capacity(b), |c| c),
            devices: pick(&o.devices, board_devices(b), |d| d),
            backends: pick(&o.backends, b.agent.backends, backends_policy),
            tenants: pick(&o.tenants, Tenants::default(), |t| t),
            log_level: pick(&o.log_level, board_level(b.log.level), Level::filter),
        }
    }

    /// The devices on sale in the board's own shape (what the EdgeX
    /// catalogue is read for).
    pub fn board_devices(&self) -> Vec<Device> {
        self.devices
            .value
            .iter()
            .map(|d| Device {
                name: d.name.clone(),
                read: d.read.clone(),
                write: d.write.clone(),
            })
            .collect()
    }

    /// Every value with its origin, for `dedge agent status`.
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.prices.value;
        let c = &self.capacity.value;
        serde_json::json!({
            "version": self.version,
            "selling": {"value": self.selling.value.name(), "from": self.selling.origin()},
            "prices": {"value": {
                "cpu_core_second": p.cpu_core_second.to_string(),
                "memory_gib_second": p.memory_gib_second.to_string(),
                "device_second": p.device_second.map(|d| d.to_string()),
            }, "from": self.prices.origin()},
            "capacity": {"value": {
                "cpu_millicores": c.cpu_millicores, "memory": c.memory,
                "disk": c.disk, "max_leases": c.max_leases,
            }, "from": self.capacity.origin()},
            "devices": {"value": self.devices.value.iter().map(|d| serde_json::json!({
                "name": d.name, "read": d.read, "write": d.write,
            })).collect::<Vec<_>>(), "from": self.devices.origin()},
            "backends": {"value": format!("{:?}", self.backends.value).to_lowercase(),
                "from": self.backends.origin()},
            "tenants": {"value": {"allow": self.tenants.value.allow, "deny": self.tenants.value.deny},
                "from": self.tenants.origin()},
            "log_level": {"value": self.log_level.value.to_string().to_lowercase(),
                "from": self.log_level.origin()},
        })
    }
}

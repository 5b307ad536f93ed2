//! The capability document a gateway advertises: what it is, what it sells,
//! at what prices. Its keccak256 goes on chain (`capabilitiesHash`); the
//! document travels in the advert's URI, inline as `data:application/json,`
//! followed by the JSON text, until IPFS publishing carries it as a CID.

use alloy_primitives::{B256, keccak256};
use serde::{Deserialize, Serialize};

use crate::board::Board;
pub use crate::edgex::catalogue::{CommandOffer, DeviceOffer};

const DATA_PREFIX: &str = "data:application/json,";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Document format version.
    pub v: u32,
    pub model: String,
    /// `aarch64`, `armv7` or `x86_64`.
    pub arch: String,
    /// OCI platform images must be built for.
    pub platform: String,
    pub cores: u32,
    pub cpu_millicores: u32,
    pub memory: u64,
    pub disk: u64,
    pub max_leases: u32,
    /// EDG base units per unit-second, as decimal strings (exact).
    price_cpu_core_second: String,
    price_memory_gib_second: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    price_device_second: Option<String>,
    pub(crate) min_lease_s: u64,
    pub(crate) payment_interval_s: u64,
    grace_s: u64,
    #[serde(default)]
    pub devices: Vec<DeviceOffer>,
}

impl Capabilities {
    pub fn from_board(b: &Board) -> Capabilities {
        let p = &b.pricing;
        Capabilities {
            v: 1,
            model: b.board.model.clone(),
            arch: b.board.arch.as_str().into(),
            platform: b.board.arch.oci_platform().into(),
            cores: b.board.cores,
            cpu_millicores: b.resources.cpu_millicores,
            memory: b.resources.memory.bytes(),
            disk: b.resources.disk.bytes(),
            max_leases: b.resources.max_leases,
            price_cpu_core_second: p.cpu_core_second.wei().to_string(),
            price_memory_gib_second: p.memory_gib_second.wei().to_string(),
            price_device_second: p.device_second.map(|d| d.wei().to_string()),
            min_lease_s: p.min_lease.get().as_secs(),
            payment_interval_s: p.payment_interval.get().as_secs(),
            grace_s: p.grace.get().as_secs(),
            devices: b
                .edgex
                .iter()
                .flat_map(|e| &e.devices)
                .map(|d| DeviceOffer {
                    name: d.name.clone(),
                    profile: None,
                    read: d.read.clone(),
                    write: d.write.clone(),
                    commands: Vec::new(),
                })
                .collect(),
        }
    }

    /// The board's document with what the operator's commands set:
    /// capacity, prices and the devices on sale (the catalogue, read for
    /// that list, replaces `devices` when EdgeX answers).
    pub fn from_settings(b: &Board, s: &crate::control::Settings) -> Capabilities {
        let (c, p) = (&s.capacity.value, &s.prices.value);
        Capabilities {
            cpu_millicores: c.cpu_millicores,
            memory: c.memory,
            disk: c.disk,
            max_leases: c.max_leases,
            price_cpu_core_second: p.cpu_core_second.to_string(),
            price_memory_gib_second: p.memory_gib_second.to_string(),
            price_device_second: p.device_second.map(|d| d.to_string()),
            devices: s
                .board_devices()
                .into_iter()
                .map(|d| DeviceOffer {
                    name: d.name,
                    profile: None,
                    read: d.read,
                    write: d.write,
                    commands: Vec::new(),
                })
                .collect(),
            ..Capabilities::from_board(b)
        }
    }

    /// The on-chain price: EDG base units per second for one core and one
    /// GiB, a single figure buyers can compare and filter on.
    pub fn reference_price(&self) -> u128 {
        let cpu: u128 = self.price_cpu_core_second.parse().unwrap_or(0);
        let mem: u128 = self.price_memory_gib_second.parse().unwrap_or(0);
        cpu.saturating_add(mem)
    }

    /// The JSON text, its hash, and the inline URI carrying it.
    pub fn encode(&self) -> (String, B256, String) {
        // Serialising plain structs of strings and integers cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        let hash = keccak256(json.as_bytes());
        let uri = format!("{DATA_PREFIX}{json}");
        (json, hash, uri)
    }

    /// Reads an inline document and checks it against the on-chain hash.
    pub fn decode(uri: &str, hash: B256) -> Result<Capabilities, String> {
        let json = uri.strip_prefix(DATA_PREFIX).ok_or_else(|| {
            format!(
                "capability URI is not inline JSON: {}",
                uri.chars().take(40).collect::<String>()
            )
        })?;
        let got = keccak256(json.as_bytes());
        if got != hash {
            return Err(format!(
                "capability document hashes to {got}, the advert says {hash}"
            ));
        }
        serde_json::from_str(json).map_err(|e| format!("capability document: {e}"))
    }

    /// What a lease of these resources costs per second at these prices
    /// (the figure buyers offer and the agent admits against).
    pub fn lease_price(&self, millicores: u32, memory: u64, devices: usize) -> u128 {
        let unit = |s: &str| s.parse::<u128>().unwrap_or(0);
        lease_price(
            unit(&self.price_cpu_core_second),
            unit(&self.price_memory_gib_second),
            self.price_device_second.as_deref().map_or(0, unit),
            millicores,
            memory,
            devices,
        )
    }

    /// Does the gateway sell `device` (and `command`, if given)?
    pub fn sells(&self, device: &str, command: Option<&str>) -> bool {
        self.devices.iter().any(|d| {
            d.name == device
                && command.is_none_or(|c| d.read.iter().chain(&d.write).any(|x| x == c))
        })
    }
}

/// EDG base units per second for `millicores` of CPU, `memory` bytes and
/// `devices` device grants, rounding each part down (saturating, never
/// wrapping).
pub fn lease_price(
    cpu_core_second: u128,
    memory_gib_second: u128,
    device_second: u128,
    millicores: u32,
    memory: u64,
    devices: usize,
) -> u128 {
    let cpu = cpu_core_second.saturating_mul(u128::from(millicores)) / 1000;
    let mem = memory_gib_second.saturating_mul(u128::from(memory)) / (1 << 30);
    let dev = device_second.saturating_mul(devices as u128);
    cpu.saturating_add(mem).saturating_add(dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardFile;

    fn dev() -> Capabilities {
        let text = include_str!("../../boards/dev-x86_64.toml").to_string();
        Capabilities::from_board(
            &BoardFile::parse(std::path::Path::new("dev.toml"), text)
                .unwrap()
                .board,
        )
    }

    #[test]
    fn round_trips_and_checks_the_hash() {
        let c = dev();
        let (_, hash, uri) = c.encode();
        assert!(
            uri.len() <= 4096,
            "fits the registry's URI limit: {}",
            uri.len()
        );
        assert_eq!(Capabilities::decode(&uri, hash).unwrap(), c);
        assert!(
            Capabilities::decode(&uri, B256::ZERO)
                .unwrap_err()
                .contains("hashes to")
        );
        assert!(Capabilities::decode("ipfs://bafy", hash).is_err());
    }

    #[test]
    fn describes_the_board() {
        let c = dev();
        assert_eq!(
            (c.arch.as_str(), c.platform.as_str()),
            ("x86_64", "linux/amd64")
        );
        assert!(c.sells("Random-Integer-Device", Some("Int8")));
        assert!(c.sells("Random-Integer-Device", None));
        assert!(!c.sells("Random-Integer-Device", Some("Nope")));
        assert_eq!(c.reference_price(), 150_000_000_000_000);
    }
}

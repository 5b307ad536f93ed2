//! The board file's shape, one struct per TOML table.
//!
//! Every table refuses unknown keys, so a typo is an error that lists the
//! keys that exist rather than a setting silently left at its default.
//! `boards/README.md` documents each key; keep the two in step.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{
    Arch, CgroupMode, CgroupParent, ContractAddress, EdgexAuth, HttpUrl, LogFormat, LogLevel,
    PublicEndpoint,
};
use crate::units::{ByteSize, Edg, HumanDuration};

/// One gateway model plus one installation of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub board: Hardware,
    pub identity: Identity,
    pub agent: Agent,
    pub chain: Chain,
    pub resources: Resources,
    pub pricing: Pricing,
    /// Absent on gateways that sell compute only.
    pub edgex: Option<Edgex>,
    pub ipfs: Ipfs,
    #[serde(default)]
    pub log: Log,
}

/// `[board]`: the hardware model and the OS it ships with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Human-readable model name, shown to buyers.
    pub model: String,
    pub arch: Arch,
    /// CPU cores of the model.
    pub cores: u32,
    /// Physical memory of the model.
    pub memory: ByteSize,
    /// Which cgroup hierarchy the agent drives.
    pub cgroup: CgroupMode,
}

/// `[identity]`: where the gateway's chain key lives. The key itself never
/// appears in the board file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Web3 Secret Storage v3 keystore (the format geth and Foundry write).
    pub(crate) key_file: PathBuf,
    /// File holding the keystore passphrase; `DEDGE_PASSPHRASE` otherwise.
    pub(crate) passphrase_file: Option<PathBuf>,
}

/// `[agent]`: the daemon's local state and network endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// sled databases, images and lease root filesystems live here.
    pub(crate) data_dir: PathBuf,
    /// Socket the agent listens on for buyers.
    pub listen: SocketAddr,
    /// `host:port` buyers dial; advertised on chain.
    pub(crate) public: PublicEndpoint,
    /// Which of a buyer's backend endpoints a container may be wired to.
    #[serde(default)]
    pub backends: BackendPolicy,
    /// Where leases' cgroups go (`/dedge` unless set; under systemd the
    /// cgroup of the delegated `dedge-leases.service`).
    #[serde(default)]
    pub cgroup_parent: CgroupParent,
}

/// `[agent] backends`: where leased containers may reach out to, through
/// the agent (they have no network of their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendPolicy {
    /// No backends.
    None,
    /// Globally routable addresses only: never the gateway itself, its LAN
    /// or link-local neighbours (the operator's plant network).
    #[default]
    Public,
    /// Any address, loopback and private ones included (development).
    Any,
}

/// `[chain]`: the Ethereum network and the dEdge contracts on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    pub chain_id: u64,
    /// Tried in order; the next one takes over when one fails.
    pub(crate) rpc_urls: Vec<HttpUrl>,
    /// Blocks a log must be buried under before the agent acts on it.
    pub confirmations: u32,
    pub contracts: Contracts,
}

/// `[chain.contracts]`: deployed addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contracts {
    pub token: ContractAddress,
    pub registry: ContractAddress,
    pub market: ContractAddress,
    pub channels: ContractAddress,
    pub control: ContractAddress,
}

/// `[resources]`: what the gateway sells, summed over all leases at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpu_millicores: u32,
    pub memory: ByteSize,
    pub disk: ByteSize,
    pub max_leases: u32,
}

/// `[pricing]`: what a lease-second costs and how often buyers pay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// EDG per CPU core (1000 millicores) per second.
    pub(crate) cpu_core_second: Edg,
    /// EDG per GiB of memory per second.
    pub(crate) memory_gib_second: Edg,
    /// EDG per leased EdgeX device per second; required when devices are sold.
    pub(crate) device_second: Option<Edg>,
    /// Shortest lease the agent accepts.
    pub(crate) min_lease: HumanDuration,
    /// How often the buyer must send a balance proof.
    pub payment_interval: HumanDuration,
    /// How far behind a buyer may fall before its container is frozen.
    pub grace: HumanDuration,
}

/// `[edgex]`: the local EdgeX services and what of them is for sale.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edgex {
    pub(crate) core_metadata: HttpUrl,
    pub(crate) core_command: HttpUrl,
    pub(crate) core_data: HttpUrl,
    pub auth: EdgexAuth,
    /// Secret store (OpenBao/Vault) that issues JWTs; `auth = "jwt"` only.
    pub secret_store: Option<HttpUrl>,
    /// File with the secret-store user's name and password; `auth = "jwt"` only.
    pub(crate) credentials_file: Option<PathBuf>,
    /// Requests per second each lease's bridge accepts (bursts of twice that).
    #[serde(default = "default_lease_rate")]
    pub lease_rate: u32,
    /// Largest request body each lease's bridge accepts.
    #[serde(default = "default_lease_max_body")]
    pub(crate) lease_max_body: ByteSize,
    /// How often the agent reads the device catalogue again.
    #[serde(default = "default_refresh")]
    pub(crate) refresh: HumanDuration,
    #[serde(default)]
    pub devices: Vec<Device>,
}

fn default_lease_rate() -> u32 {
    20
}

fn default_lease_max_body() -> ByteSize {
    ByteSize(16 << 10)
}

fn default_refresh() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

/// `[[edgex.devices]]`: one EdgeX device and the commands a lease may use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The device's EdgeX name, exactly as core-metadata lists it.
    pub name: String,
    /// Commands a lease may read (`GET`).
    #[serde(default)]
    pub read: Vec<String>,
    /// Commands a lease may write (`PUT`).
    #[serde(default)]
    pub write: Vec<String>,
}

/// `[ipfs]`: trustless gateways images are fetched from, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipfs {
    pub(crate) gateways: Vec<HttpUrl>,
}

/// `[log]`: diagnostics of the agent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub level: LogLevel,
    #[serde(default)]
    pub format: LogFormat,
}

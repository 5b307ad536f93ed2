//! The contracts' addresses on a chain, as `contracts/deploy.sh` writes them
//! (`deployments/CHAINID.json`).

use std::path::Path;

use alloy_primitives::Address;
use serde::Deserialize;

use super::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub chain_id: u64,
    pub token: Address,
    pub registry: Address,
    pub market: Address,
    pub channels: Address,
    pub control: Address,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    chain_id: u64,
    contracts: Contracts,
}

#[derive(Deserialize)]
struct Contracts {
    token: Entry,
    registry: Entry,
    market: Entry,
    channels: Entry,
    control: Entry,
}

#[derive(Deserialize)]
struct Entry {
    address: Address,
}

impl Deployment {
    pub fn load(path: &Path) -> Result<Deployment, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Deployment(format!("cannot read {}: {e}", path.display())))?;
        let f: File = serde_json::from_str(&text)
            .map_err(|e| Error::Deployment(format!("{}: {e}", path.display())))?;
        Ok(Deployment {
            chain_id: f.chain_id,
            token: f.contracts.token.address,
            registry: f.contracts.registry.address,
            market: f.contracts.market.address,
            channels: f.contracts.channels.address,
            control: f.contracts.control.address,
        })
    }
}

//! Options every chain-facing command shares: where the chain is, and
//! where the contracts are.

use std::path::PathBuf;

use super::Error;
use crate::board::BoardFile;
use crate::chain::rpc::RpcConfig;
use crate::chain::tx::TxPolicy;
use crate::chain::{Deployment, Rpc, Signer, keystore};

pub(crate) const HELP: &str = "\
Chain options (one of):
  --board BOARD          the board's chain section: RPC URLs, chain id, contracts
  --rpc URL --deployment FILE
                         an RPC node and a deployment file written by
                         contracts/deploy.sh (env: DEDGE_RPC, DEDGE_DEPLOYMENT)
";

#[derive(Default)]
pub(crate) struct ChainArgs {
    pub(crate) board: Option<PathBuf>,
    rpc: Option<String>,
    deployment: Option<PathBuf>,
}

impl ChainArgs {
    /// Long options this struct owns (`--board`, `--rpc`, `--deployment`).
    pub(crate) const NAMES: [&'static str; 3] = ["board", "rpc", "deployment"];

    /// Stores the value of one of [`Self::NAMES`].
    pub(crate) fn set(&mut self, name: &str, value: std::ffi::OsString) -> Result<(), Error> {
        use lexopt::prelude::*;
        match name {
            "board" => self.board = Some(value.into()),
            "rpc" => self.rpc = Some(value.string()?),
            _ => self.deployment = Some(value.into()),
        }
        Ok(())
    }

    pub(crate) fn connect(self) -> Result<Chain, Error> {
        if let Some(path) = self.board {
            let board = BoardFile::load(&path).map_err(|e| Error::Config(e.to_string()))?;
            let c = &board.board.chain;
            let urls = c.rpc_urls.iter().map(|u| u.as_str().to_string()).collect();
            let rpc = Rpc::connect(urls, c.chain_id, RpcConfig::default()).map_err(runtime)?;
            let k = &c.contracts;
            let d = Deployment {
                chain_id: c.chain_id,
                token: k.token.0,
                registry: k.registry.0,
                market: k.market.0,
                channels: k.channels.0,
                control: k.control.0,
            };
            let confirmations = u64::from(c.confirmations);
            return Ok(Chain {
                rpc,
                d,
                confirmations,
                board: Some(board),
            });
        }
        let url = self.rpc.or_else(|| std::env::var("DEDGE_RPC").ok());
        let dep = self
            .deployment
            .or_else(|| std::env::var_os("DEDGE_DEPLOYMENT").map(PathBuf::from));
        let (Some(url), Some(dep)) = (url, dep) else {
            return Err(Error::Usage(
                "say where the chain is: --board BOARD, or --rpc URL and --deployment FILE".into(),
            ));
        };
        let d = Deployment::load(&dep).map_err(|e| Error::Config(e.to_string()))?;
        let rpc = Rpc::connect(vec![url], d.chain_id, RpcConfig::default()).map_err(runtime)?;
        // Without a board there is no confirmations setting: take the receipt
        // as is (a local devnet mines a block per transaction and no other).
        Ok(Chain {
            rpc,
            d,
            confirmations: 0,
            board: None,
        })
    }
}

/// The operator's key from its encrypted key file; the passphrase from
/// `pass_file`, else `DEDGE_OPERATOR_PASSPHRASE`.
pub(crate) fn operator_signer(
    key: &std::path::Path,
    pass_file: Option<&std::path::Path>,
) -> Result<Signer, Error> {
    let pass = keystore::passphrase_from(pass_file, "DEDGE_OPERATOR_PASSPHRASE")
        .map_err(|e| Error::Config(e.to_string()))?;
    keystore::load(key, &pass).map_err(|e| Error::Config(e.to_string()))
}

pub fn runtime(e: impl std::fmt::Display) -> Error {
    Error::Runtime(e.to_string())
}

pub struct Chain {
    pub rpc: Rpc,
    pub d: Deployment,
    pub confirmations: u64,
    pub board: Option<BoardFile>,
}

impl Chain {
    pub fn policy(&self) -> TxPolicy {
        TxPolicy {
            confirmations: self.confirmations,
            ..TxPolicy::default()
        }
    }

    pub fn board(&self) -> Result<&BoardFile, Error> {
        self.board
            .as_ref()
            .ok_or_else(|| Error::Usage("this command needs --board BOARD".into()))
    }

    /// The gateway key the board names, decrypted with its passphrase.
    pub(crate) fn gateway_signer(&self) -> Result<Signer, Error> {
        let id = &self.board()?.board.identity;
        let pass = keystore::passphrase(id.passphrase_file.as_deref())
            .map_err(|e| Error::Config(e.to_string()))?;
        keystore::load(&id.key_file, &pass).map_err(|e| Error::Config(e.to_string()))
    }

    /// Local state for the CLI's own transactions (nonces), next to the
    /// agent's but separate: sled allows one process per database.
    pub(crate) fn cli_store(&self) -> Result<crate::store::Store, Error> {
        let dir = match &self.board {
            Some(b) => b.board.agent.data_dir.join("cli"),
            None => std::env::temp_dir().join(format!("dedge-cli-{}", std::process::id())),
        };
        crate::store::Store::open(&dir).map_err(runtime)
    }
}

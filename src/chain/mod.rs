//! Ethereum for the agent and the buyer: a JSON-RPC light client over ureq,
//! keys and signing, transactions, typed contract bindings and EIP-712.

pub mod bindings;
pub mod deployment;
pub mod eip712;
pub mod events;
pub mod keystore;
pub mod rpc;
pub mod signer;
pub mod tx;
pub mod verify;

pub use deployment::Deployment;
pub use rpc::Rpc;
pub use signer::Signer;

/// Everything that can go wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("all RPC endpoints failed; last: {0}")]
    AllEndpointsFailed(Box<Error>),
    #[error("RPC error {code} from {method}: {message}{}", revert.as_ref().map(|r| format!(" (reverted: {r})")).unwrap_or_default())]
    Rpc {
        method: String,
        code: i64,
        message: String,
        /// The decoded revert reason when the error carries revert data.
        revert: Option<String>,
    },
    #[error("malformed answer to {method}: {message}")]
    BadResponse { method: String, message: String },
    #[error("the RPC node is on chain {got}, the board expects {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("transaction {hash} reverted: {reason}")]
    Reverted { hash: String, reason: String },
    #[error("transaction {hash} not mined after {attempts} fee bumps")]
    NotMined { hash: String, attempts: u32 },
    #[error(
        "transaction {hash} was mined but did not reach {confirmations} confirmations in time (is the chain making blocks?)"
    )]
    NotConfirmed { hash: String, confirmations: u64 },
    #[error("not a valid secp256k1 private key")]
    BadKey,
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("random source failed: {0}")]
    Random(String),
    #[error("key file: {0}")]
    Keystore(String),
    #[error("wrong passphrase for the key file")]
    WrongPassphrase,
    #[error("unverified chain data: {0}")]
    Unverified(String),
    #[error("deployment file: {0}")]
    Deployment(String),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl Error {
    /// The chain refused the call for good: a mined transaction reverted,
    /// or the node refused it with a revert reason. Nothing happened on
    /// chain, unlike a transaction whose fate is unknown.
    pub(crate) fn is_revert(&self) -> bool {
        match self {
            Error::Reverted { .. } => true,
            Error::Rpc { revert, .. } => revert.is_some(),
            Error::AllEndpointsFailed(last) => last.is_revert(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn only_a_refusal_by_the_chain_is_a_revert() {
        let reverted = Error::Reverted {
            hash: "0x1".into(),
            reason: "WrongState".into(),
        };
        let rpc = |revert: Option<&str>| Error::Rpc {
            method: "eth_estimateGas".into(),
            code: 3,
            message: "execution reverted".into(),
            revert: revert.map(String::from),
        };
        assert!(reverted.is_revert());
        assert!(rpc(Some("WrongState")).is_revert());
        assert!(Error::AllEndpointsFailed(Box::new(rpc(Some("x")))).is_revert());
        // A transaction whose fate is unknown is not a refusal.
        assert!(!rpc(None).is_revert());
        let unmined = Error::NotMined {
            hash: "0x1".into(),
            attempts: 3,
        };
        assert!(!unmined.is_revert());
        assert!(!Error::AllEndpointsFailed(Box::new(unmined)).is_revert());
    }
}

//! A secp256k1 key that signs digests and EIP-1559 transactions.
//!
//! alloy's own signer crate drags in RPC types; k256 and alloy's consensus
//! types are all this needs.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature};
use k256::ecdsa::SigningKey;

use super::Error;

/// A private key and the address it controls.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Signer")
            .field("address", &self.address)
            .finish()
    }
}

impl Signer {
    /// Exactly 32 bytes, a scalar in [1, n).
    pub fn from_bytes(secret: &[u8]) -> Result<Signer, Error> {
        // k256 would left-pad shorter slices; a short key is a broken key.
        if secret.len() != 32 {
            return Err(Error::BadKey);
        }
        let key = SigningKey::from_slice(secret).map_err(|_| Error::BadKey)?;
        let address = Address::from_public_key(key.verifying_key());
        Ok(Signer { key, address })
    }

    /// A fresh key from the OS random source.
    pub fn random() -> Result<Signer, Error> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
            // Out-of-range scalars (probability ~2^-128) are drawn again.
            if let Ok(s) = Signer::from_bytes(&bytes) {
                return Ok(s);
            }
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// The 32-byte secret, for writing a keystore.
    pub(crate) fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    /// Signs a 32-byte digest (an EIP-712 or transaction hash) as is.
    pub fn sign_hash(&self, digest: &B256) -> Result<Signature, Error> {
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(digest.as_slice())
            .map_err(|e| Error::Sign(e.to_string()))?;
        Ok(Signature::from((sig, recid)))
    }

    /// Signs an EIP-1559 transaction; returns its raw EIP-2718 bytes and hash.
    pub fn sign_tx(&self, tx: TxEip1559) -> Result<(Bytes, B256), Error> {
        let sig = self.sign_hash(&tx.signature_hash())?;
        let envelope = TxEnvelope::from(tx.into_signed(sig));
        Ok((envelope.encoded_2718().into(), *envelope.tx_hash()))
    }
}

/// The address that signed `digest`, if the signature is well formed.
pub fn recover(digest: &B256, sig: &Signature) -> Result<Address, Error> {
    sig.recover_address_from_prehash(digest)
        .map_err(|e| Error::Sign(format!("cannot recover signer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{U256, address, b256, keccak256};

    // anvil's first account.
    const ANVIL0: B256 = b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");

    #[test]
    fn derives_the_known_address() {
        let s = Signer::from_bytes(ANVIL0.as_slice()).unwrap();
        assert_eq!(
            s.address(),
            address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        );
        assert!(
            !format!("{s:?}").contains("ac0974"),
            "Debug must not leak the key"
        );
    }

    #[test]
    fn signatures_recover_to_the_signer() {
        let s = Signer::random().unwrap();
        let digest = keccak256(b"dEdge");
        let sig = s.sign_hash(&digest).unwrap();
        assert_eq!(recover(&digest, &sig).unwrap(), s.address());
        assert_ne!(recover(&keccak256(b"other"), &sig).unwrap(), s.address());
    }

    #[test]
    fn rejects_invalid_keys() {
        assert!(matches!(Signer::from_bytes(&[0u8; 32]), Err(Error::BadKey)));
        assert!(matches!(Signer::from_bytes(&[1u8; 31]), Err(Error::BadKey)));
    }

    #[test]
    fn signed_transaction_recovers_sender() {
        let s = Signer::from_bytes(ANVIL0.as_slice()).unwrap();
        let tx = TxEip1559 {
            chain_id: 31337,
            nonce: 3,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8").into(),
            value: U256::from(1u64),
            ..Default::default()
        };
        let (raw, hash) = s.sign_tx(tx).unwrap();
        assert_eq!(raw[0], 2, "EIP-1559 type byte");
        assert_eq!(keccak256(&raw), hash, "hash is keccak of the raw bytes");
        let decoded =
            <TxEnvelope as alloy_eips::Decodable2718>::decode_2718(&mut raw.as_ref()).unwrap();
        use alloy_consensus::transaction::SignerRecoverable;
        assert_eq!(decoded.recover_signer().unwrap(), s.address());
    }
}

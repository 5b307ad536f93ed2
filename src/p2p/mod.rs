//! Buyer ↔ seller messaging: the paper's Whisper/PSS, which no longer
//! exist, replaced by a direct connection to the endpoint the gateway
//! advertises on chain.
//!
//! - `frame`: length-prefixed frames with a size cap checked before any
//!   allocation;
//! - `handshake`: each side proves its chain key and contributes an
//!   ephemeral secp256k1 key; ECDH + HKDF-SHA256 give one ChaCha20-Poly1305
//!   key per direction (forward secret: the chain keys only sign);
//! - `message`: the messages, postcard-encoded, each in an envelope that
//!   names the chain id, both parties, a sequence number and a timestamp;
//! - `session`: an established, encrypted link that sends and receives
//!   envelopes, each frame authenticated by its direction's key, and
//!   refuses anything out of order, replayed, altered, sealed by anyone but
//!   the peer, or for another party or chain.
//!
//! docs/PROTOCOL.md §6 has the wire format and why it is built this way.

pub mod frame;
mod handshake;
pub mod message;
pub mod session;

pub use handshake::{ReplayGuard, accept, connect};
pub use message::{Body, DeviceUse, OfferTerms};
pub use session::Session;

/// Protocol version carried in the handshake (3: envelopes authenticated
/// by the session's keys alone, no longer signed one by one).
const VERSION: u8 = 3;

/// Largest frame either side accepts (logs are sent in chunks below it).
const MAX_FRAME: usize = 1 << 20;

/// How far a peer's clock may be from ours, in seconds.
const CLOCK_SKEW: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not a well-formed frame or message.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Well-formed but not acceptable: wrong chain or party, replayed, stale,
    /// badly signed.
    #[error("refused: {0}")]
    Refused(String),
    /// The link's authentication failed: tampered, reordered or replayed
    /// bytes, or a key we cannot use.
    #[error("link integrity: {0}")]
    Integrity(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Is `t` within the allowed skew of now?
pub(crate) fn fresh(t: u64, now: u64) -> bool {
    t.abs_diff(now) <= CLOCK_SKEW
}

/// The address that signed `digest`, refusing malformed and high-s
/// signatures.
pub(crate) fn recover(
    digest: &alloy_primitives::B256,
    sig: &[u8],
) -> Result<alloy_primitives::Address> {
    let sig = alloy_primitives::Signature::try_from(sig)
        .map_err(|_| Error::Malformed(format!("signature of {} bytes", sig.len())))?;
    if sig.normalize_s().is_some() {
        return Err(Error::Refused("signature s is in the upper half".into()));
    }
    crate::chain::signer::recover(digest, &sig).map_err(|e| Error::Refused(e.to_string()))
}

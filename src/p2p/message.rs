//! The messages of a lease, and the envelope each travels in.
//!
//! Encoding is postcard; the variants' order is part of the protocol
//! (postcard writes the variant index), so new messages are only ever
//! appended, and `VERSION` changes when one changes.

use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::chain::eip712::Offer;

/// An offer's terms exactly as the buyer signed them (EIP-712 `Offer`,
/// docs/PROTOCOL.md §1), in plain types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferTerms {
    pub buyer: [u8; 20],
    pub gateway: [u8; 20],
    pub cpu_millicores: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// EdgeX grants, `DEVICE:COMMAND:r|w|rw`.
    pub devices: Vec<String>,
    /// EDG base units per second (`uint96`).
    pub price_per_second: u128,
    pub max_duration: u32,
    pub payment_interval: u32,
    /// The image's CID.
    pub image: String,
    pub expiry: u64,
    pub nonce: u64,
}

impl From<&Offer> for OfferTerms {
    fn from(o: &Offer) -> OfferTerms {
        OfferTerms {
            buyer: o.buyer.into_array(),
            gateway: o.gateway.into_array(),
            cpu_millicores: o.cpuMillicores,
            memory_bytes: o.memoryBytes,
            disk_bytes: o.diskBytes,
            devices: o.devices.clone(),
            price_per_second: o.pricePerSecond.to::<u128>(),
            max_duration: o.maxDuration,
            payment_interval: o.paymentInterval,
            image: o.image.clone(),
            expiry: o.expiry.to::<u64>(),
            nonce: o.nonce,
        }
    }
}

impl TryFrom<&OfferTerms> for Offer {
    type Error = String;

    fn try_from(t: &OfferTerms) -> Result<Offer, String> {
        if t.price_per_second >> 96 != 0 {
            return Err("price per second does not fit uint96".into());
        }
        if t.expiry >> 40 != 0 {
            return Err("expiry does not fit uint40".into());
        }
        Ok(Offer {
            buyer: Address::from(t.buyer),
            gateway: Address::from(t.gateway),
            cpuMillicores: t.cpu_millicores,
            memoryBytes: t.memory_bytes,
            diskBytes: t.disk_bytes,
            devices: t.devices.clone(),
            pricePerSecond: alloy_primitives::Uint::from(t.price_per_second),
            maxDuration: t.max_duration,
            paymentInterval: t.payment_interval,
            image: t.image.clone(),
            expiry: alloy_primitives::Uint::from(t.expiry),
            nonce: t.nonce,
        })
    }
}

/// What buyer and seller say to each other about a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Buyer → seller: the terms, with the buyer's EIP-712 signature.
    Offer {
        terms: OfferTerms,
        signature: Vec<u8>,
    },
    /// Seller → buyer: accepted on chain (`acceptOffer`) under this lease id.
    OfferAccepted { lease: [u8; 32] },
    /// Seller → buyer: not taken, and why (capacity, price, devices...).
    OfferRefused { lease: [u8; 32], reason: String },
    /// Buyer → seller: the payment channel that pays for the lease.
    ChannelProof { lease: [u8; 32], channel: [u8; 32] },
    /// Buyer → seller: run this image (CID and OCI manifest digest), wired
    /// to these backend endpoints (`HOST:PORT`).
    Deploy {
        lease: [u8; 32],
        image_cid: String,
        manifest_digest: String,
        backends: Vec<String>,
    },
    /// Buyer → seller: a balance proof (cumulative amount, big-endian
    /// uint256, EIP-712 signature).
    Payment {
        lease: [u8; 32],
        channel: [u8; 32],
        amount: [u8; 32],
        signature: Vec<u8>,
    },
    /// Seller → buyer: a payment was stored durably; what it acknowledges.
    PaymentAck { lease: [u8; 32], amount: [u8; 32] },
    /// Either way: the lease's state as the sender sees it.
    Status {
        lease: [u8; 32],
        state: String,
        detail: String,
    },
    /// Buyer → seller asks (`data` empty, `offset` from where); seller →
    /// buyer answers with a chunk of stdout (1) or stderr (2).
    Logs {
        lease: [u8; 32],
        stream: u8,
        offset: u64,
        data: Vec<u8>,
    },
    /// Either way: end the lease.
    Terminate { lease: [u8; 32], reason: String },
    /// Either way: the last message could not be handled.
    Error { message: String },
    /// Buyer → seller asks (amounts zero, `edgex` empty); seller → buyer
    /// answers with the lease's account: paid so far, owed for the time
    /// run (big-endian uint256 EDG base units), seconds run, EdgeX use.
    Account {
        lease: [u8; 32],
        paid: [u8; 32],
        owed: [u8; 32],
        ran: u64,
        edgex: Vec<DeviceUse>,
    },
    /// Seller → buyer: the offer was admitted and its accept sent, but
    /// the transaction is not confirmed yet; send the offer again later
    /// (the same offer never makes a second accept).
    OfferPending { lease: [u8; 32], detail: String },
}

/// One device's use by a lease, as the bridge metered it (`*` collects
/// calls naming no sold device).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUse {
    pub device: String,
    pub reads: u64,
    pub writes: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub refused: u64,
}

impl Body {
    pub fn amount(bytes: &[u8; 32]) -> U256 {
        U256::from_be_bytes(*bytes)
    }

    pub fn lease_id(bytes: &[u8; 32]) -> B256 {
        B256::from(*bytes)
    }

    /// The message's name, for errors (never its contents: a peer's bytes
    /// do not go into our messages).
    pub fn name(&self) -> &'static str {
        match self {
            Body::Offer { .. } => "Offer",
            Body::OfferAccepted { .. } => "OfferAccepted",
            Body::OfferRefused { .. } => "OfferRefused",
            Body::ChannelProof { .. } => "ChannelProof",
            Body::Deploy { .. } => "Deploy",
            Body::Payment { .. } => "Payment",
            Body::PaymentAck { .. } => "PaymentAck",
            Body::Status { .. } => "Status",
            Body::Logs { .. } => "Logs",
            Body::Terminate { .. } => "Terminate",
            Body::Error { .. } => "Error",
            Body::Account { .. } => "Account",
            Body::OfferPending { .. } => "OfferPending",
        }
    }
}

/// What each frame carries: the body with its addressing. Not signed:
/// the frame's AEAD key is known only to the two parties the handshake
/// proved (protocol 3; protocol 2 signed every envelope too, which cost a
/// signature and a recovery per message for nothing the key did not
/// already prove).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) chain_id: u64,
    pub(crate) from: [u8; 20],
    pub(crate) to: [u8; 20],
    /// 1, 2, 3... per direction of a session.
    pub(crate) seq: u64,
    pub(crate) timestamp: u64,
    pub(crate) body: Body,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_terms_round_trip_to_the_signed_struct() {
        let t = OfferTerms {
            buyer: [1; 20],
            gateway: [2; 20],
            cpu_millicores: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 256 << 20,
            devices: vec!["Random-Integer-Device:Int8:r".into()],
            price_per_second: 123_456_789,
            max_duration: 3600,
            payment_interval: 5,
            image: "bafy".into(),
            expiry: 1_800_000_000,
            nonce: 7,
        };
        let o = Offer::try_from(&t).unwrap();
        assert_eq!(OfferTerms::from(&o), t);
        let too_big = OfferTerms {
            price_per_second: 1 << 96,
            ..t.clone()
        };
        assert!(Offer::try_from(&too_big).is_err());
    }
}

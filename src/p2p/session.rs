//! An established link: every frame is one signed envelope, encrypted with
//! ChaCha20-Poly1305 under the direction's key, the nonce being the
//! frame's index in that direction. A dropped, repeated, reordered or
//! altered frame fails authentication and ends the session; inside, each
//! envelope must name this chain and both parties, carry the next sequence
//! number and a fresh timestamp, and be signed by the peer's chain key.

use std::io::{Read, Write};

use alloy_primitives::Address;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use super::frame::{read_frame, write_frame};
use super::message::{Body, Envelope, Signed};
use super::recover;
use super::{CLOCK_SKEW, Error, MAX_FRAME, Result, fresh, unix_now};
use crate::chain::Signer;

/// 16 bytes of tag per frame.
const TAG: usize = 16;

pub struct Session<S> {
    stream: S,
    signer: Signer,
    peer: Address,
    chain_id: u64,
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    sent: u64,
    received: u64,
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

impl<S: Read + Write> Session<S> {
    pub(crate) fn new(
        stream: S,
        signer: Signer,
        peer: Address,
        chain_id: u64,
        send: ChaCha20Poly1305,
        recv: ChaCha20Poly1305,
    ) -> Session<S> {
        Session {
            stream,
            signer,
            peer,
            chain_id,
            send,
            recv,
            sent: 0,
            received: 0,
        }
    }

    /// The other party's chain address (proven in the handshake).
    pub fn peer(&self) -> Address {
        self.peer
    }

    /// The underlying stream, e.g. to set a read timeout.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    pub fn send(&mut self, body: Body) -> Result<()> {
        let seq = self
            .sent
            .checked_add(1)
            .ok_or_else(|| Error::Integrity("send counter exhausted".into()))?;
        let envelope = Envelope {
            chain_id: self.chain_id,
            from: self.signer.address().into_array(),
            to: self.peer.into_array(),
            seq,
            timestamp: unix_now(),
            body,
        };
        let digest = envelope
            .digest()
            .map_err(|e| Error::Malformed(format!("encode: {e}")))?;
        let signature = self
            .signer
            .sign_hash(&digest)
            .map_err(|e| Error::Integrity(format!("sign: {e}")))?
            .as_bytes()
            .to_vec();
        let plain = postcard::to_stdvec(&Signed {
            envelope,
            signature,
        })
        .map_err(|e| Error::Malformed(format!("encode: {e}")))?;
        if plain.len() + TAG > MAX_FRAME {
            return Err(Error::Malformed(format!(
                "message of {} bytes is over the frame limit",
                plain.len()
            )));
        }
        let sealed = self
            .send
            .encrypt(&nonce(self.sent), plain.as_slice())
            .map_err(|_| Error::Integrity("encrypt".into()))?;
        write_frame(&mut self.stream, &sealed, MAX_FRAME)?;
        self.sent = seq;
        Ok(())
    }

    pub fn recv(&mut self) -> Result<Body> {
        let sealed = read_frame(&mut self.stream, MAX_FRAME)?;
        let plain = self
            .recv
            .decrypt(&nonce(self.received), sealed.as_slice())
            .map_err(|_| {
                Error::Integrity(
                    "frame failed authentication (altered, replayed or reordered)".into(),
                )
            })?;
        let expected = self
            .received
            .checked_add(1)
            .ok_or_else(|| Error::Integrity("receive counter exhausted".into()))?;
        self.received = expected;
        let Signed {
            envelope,
            signature,
        } = postcard::from_bytes(&plain).map_err(|e| Error::Malformed(format!("message: {e}")))?;
        self.check(&envelope, &signature, expected)?;
        Ok(envelope.body)
    }

    fn check(&self, e: &Envelope, signature: &[u8], expected: u64) -> Result<()> {
        if e.chain_id != self.chain_id {
            return Err(Error::Refused(format!(
                "message for chain {}, the session is on chain {}",
                e.chain_id, self.chain_id
            )));
        }
        if Address::from(e.to) != self.signer.address() || Address::from(e.from) != self.peer {
            return Err(Error::Refused(format!(
                "message from {} to {}, the session is {} to {}",
                Address::from(e.from),
                Address::from(e.to),
                self.peer,
                self.signer.address()
            )));
        }
        if e.seq != expected {
            return Err(Error::Refused(format!(
                "message number {} where {expected} was due",
                e.seq
            )));
        }
        let now = unix_now();
        if !fresh(e.timestamp, now) {
            return Err(Error::Refused(format!(
                "message timestamp {} is more than {CLOCK_SKEW} s from now ({now})",
                e.timestamp
            )));
        }
        let digest = e
            .digest()
            .map_err(|err| Error::Malformed(format!("encode: {err}")))?;
        let signer = recover(&digest, signature)?;
        if signer != self.peer {
            return Err(Error::Refused(format!(
                "message signed by {signer}, not by the peer {}",
                self.peer
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

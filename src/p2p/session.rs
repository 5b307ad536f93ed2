//! An established link: every frame is one envelope, encrypted with
//! ChaCha20-Poly1305 under the direction's key, the nonce being the
//! frame's index in that direction. The keys come from the handshake, in
//! which the buyer signed its ephemeral key (and both addresses) and the
//! gateway signed the whole transcript, so only the two parties hold them
//! and a frame that authenticates was sealed by the peer: no signature per
//! message (a balance proof inside carries its own). A dropped, repeated,
//! reordered or altered frame fails authentication and ends the session;
//! inside, each envelope must name this chain and both parties, and carry
//! the next sequence number and a fresh timestamp.

use std::io::{BufReader, Read, Write};

use alloy_primitives::Address;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use super::frame::{read_frame, write_frame};
use super::message::{Body, Envelope};
use super::{CLOCK_SKEW, Error, MAX_FRAME, Result, fresh, unix_now};

/// 16 bytes of tag per frame.
const TAG: usize = 16;

/// Bytes read ahead from the stream: a frame's length and body (and
/// often the next frame) in one read instead of two.
const READ_AHEAD: usize = 2048;

pub struct Session<S> {
    /// Frames are written to the stream itself (`get_mut`) and read
    /// through the buffer.
    stream: BufReader<S>,
    /// This side's chain address (proven in the handshake).
    me: Address,
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
        me: Address,
        peer: Address,
        chain_id: u64,
        send: ChaCha20Poly1305,
        recv: ChaCha20Poly1305,
    ) -> Session<S> {
        Session {
            stream: BufReader::with_capacity(READ_AHEAD, stream),
            me,
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
        self.stream.get_ref()
    }

    pub fn send(&mut self, body: Body) -> Result<()> {
        let seq = self
            .sent
            .checked_add(1)
            .ok_or_else(|| Error::Integrity("send counter exhausted".into()))?;
        let envelope = Envelope {
            chain_id: self.chain_id,
            from: self.me.into_array(),
            to: self.peer.into_array(),
            seq,
            timestamp: unix_now(),
            body,
        };
        let plain =
            postcard::to_stdvec(&envelope).map_err(|e| Error::Malformed(format!("encode: {e}")))?;
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
        // The nonce is spent once used, whether or not the write goes
        // through: a session used again after a failed write must never
        // seal other bytes under it.
        self.sent = seq;
        write_frame(self.stream.get_mut(), &sealed, MAX_FRAME)?;
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
        let (envelope, rest): (Envelope, &[u8]) = postcard::take_from_bytes(&plain)
            .map_err(|e| Error::Malformed(format!("message: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::Malformed(format!(
                "{} bytes after the message",
                rest.len()
            )));
        }
        self.check(&envelope, expected)?;
        Ok(envelope.body)
    }

    fn check(&self, e: &Envelope, expected: u64) -> Result<()> {
        if e.chain_id != self.chain_id {
            return Err(Error::Refused(format!(
                "message for chain {}, the session is on chain {}",
                e.chain_id, self.chain_id
            )));
        }
        if Address::from(e.to) != self.me || Address::from(e.from) != self.peer {
            return Err(Error::Refused(format!(
                "message from {} to {}, the session is {} to {}",
                Address::from(e.from),
                Address::from(e.to),
                self.peer,
                self.me
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
        Ok(())
    }
}

#[cfg(test)]
mod tests;

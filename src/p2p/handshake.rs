//! The handshake, two frames:
//!
//! 1. client → server `Hello { version, chain_id, from, to, ephemeral,
//!    timestamp, nonce, signature }`, signed by the client's chain key over
//!    `keccak256("dEdge p2p hello v1" ‖ chain_id ‖ from ‖ to ‖ ephemeral ‖
//!    timestamp ‖ nonce)`. The server refuses another version or chain, a
//!    `to` that is not its own address, a timestamp outside ±5 min, a nonce
//!    it has seen within the window (replay), a signature that does not
//!    recover `from`.
//! 2. server → client `Welcome { ephemeral, signature }`, signed by the
//!    server's chain key over `keccak256("dEdge p2p welcome v1" ‖
//!    hello_digest ‖ ephemeral)`; the client refuses it unless it recovers
//!    the gateway it meant to reach.
//!
//! Keys: ECDH of the two ephemeral secp256k1 keys, HKDF-SHA256 with the
//! welcome digest (the whole transcript) as salt, one ChaCha20-Poly1305 key
//! per direction. Why not Noise: the parties' identities are secp256k1
//! chain keys, which Noise implementations do not offer; this is the
//! SIGMA pattern (sign the ephemeral keys, bind the transcript) with the
//! same primitives the rest of the crate already trusts (k256, sha2), plus
//! two small RustCrypto crates.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use alloy_primitives::{Address, B256, keccak256};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{PublicKey, SecretKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::frame::{read_frame, write_frame};
use super::session::Session;
use super::{CLOCK_SKEW, Error, Result, VERSION, fresh, recover, unix_now};
use crate::chain::Signer;

/// Handshake frames are small; a larger one is refused unread.
const HANDSHAKE_FRAME: usize = 512;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    version: u8,
    chain_id: u64,
    from: [u8; 20],
    to: [u8; 20],
    ephemeral: Vec<u8>,
    timestamp: u64,
    nonce: [u8; 16],
    signature: Vec<u8>,
}

impl Hello {
    fn digest(&self) -> B256 {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(b"dEdge p2p hello v1");
        m.extend_from_slice(&self.chain_id.to_be_bytes());
        m.extend_from_slice(&self.from);
        m.extend_from_slice(&self.to);
        m.extend_from_slice(&self.ephemeral);
        m.extend_from_slice(&self.timestamp.to_be_bytes());
        m.extend_from_slice(&self.nonce);
        keccak256(&m)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Welcome {
    ephemeral: Vec<u8>,
    signature: Vec<u8>,
}

fn welcome_digest(hello: &B256, ephemeral: &[u8]) -> B256 {
    let mut m = Vec::with_capacity(64 + ephemeral.len());
    m.extend_from_slice(b"dEdge p2p welcome v1");
    m.extend_from_slice(hello.as_slice());
    m.extend_from_slice(ephemeral);
    keccak256(&m)
}

/// Nonces of recent hellos, forgotten once their timestamp is too old to
/// pass the freshness check anyway; shared by all of a server's
/// connections. Bounded: anyone can sign a hello with a fresh key, so a
/// flood must not grow the gateway's memory or make each check slower.
/// When full of live nonces, a hello is let through unrecorded rather than
/// refused (refusing would let a flood lock every buyer out): a replayed
/// hello gains nothing anyway, since the session keys also need the
/// ephemeral secret behind the hello, which only its sender has.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    nonces: HashMap<[u8; 16], u64>,
    /// When old nonces were last dropped (Unix s).
    pruned: u64,
}

/// Live nonces a guard holds at most (about 2 MiB).
const GUARD_CAP: usize = 1 << 16;

/// Why a hello was not fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unfresh {
    Replayed,
}

impl ReplayGuard {
    /// Records the nonce, or says why not.
    fn admit(&self, nonce: [u8; 16], timestamp: u64, now: u64) -> std::result::Result<(), Unfresh> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // Pruning walks the map: at most once a second.
        if seen.pruned != now {
            seen.nonces
                .retain(|_, t| t.saturating_add(2 * CLOCK_SKEW) >= now);
            seen.pruned = now;
        }
        if seen.nonces.contains_key(&nonce) {
            return Err(Unfresh::Replayed);
        }
        if seen.nonces.len() < GUARD_CAP {
            seen.nonces.insert(nonce, timestamp);
        }
        Ok(())
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| Error::Integrity(format!("random: {e}")))?;
    Ok(b)
}

fn ephemeral() -> Result<SecretKey> {
    loop {
        // Out-of-range scalars (probability ~2^-128) are drawn again.
        if let Ok(k) = SecretKey::from_slice(&random::<32>()?) {
            return Ok(k);
        }
    }
}

fn sign(signer: &Signer, digest: &B256) -> Result<Vec<u8>> {
    let sig = signer
        .sign_hash(digest)
        .map_err(|e| Error::Integrity(format!("sign: {e}")))?;
    Ok(sig.as_bytes().to_vec())
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Malformed(format!("{what}: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(|e| Error::Malformed(format!("encode: {e}")))
}

/// Both directions' ciphers from the two ephemeral keys and the transcript.
fn ciphers(
    mine: &SecretKey,
    theirs: &[u8],
    transcript: &B256,
) -> Result<(ChaCha20Poly1305, ChaCha20Poly1305)> {
    let peer = PublicKey::from_sec1_bytes(theirs)
        .map_err(|_| Error::Refused("peer's ephemeral key is not a curve point".into()))?;
    let shared = k256::ecdh::diffie_hellman(mine.to_nonzero_scalar(), peer.as_affine());
    let hk = Hkdf::<Sha256>::new(Some(transcript.as_slice()), shared.raw_secret_bytes());
    let mut c2s = [0u8; 32];
    let mut s2c = [0u8; 32];
    hk.expand(b"dEdge p2p v1 client to server", &mut c2s)
        .and_then(|()| hk.expand(b"dEdge p2p v1 server to client", &mut s2c))
        .map_err(|_| Error::Integrity("key derivation".into()))?;
    let key = |k: &[u8; 32]| {
        ChaCha20Poly1305::new_from_slice(k).map_err(|_| Error::Integrity("key length".into()))
    };
    Ok((key(&c2s)?, key(&s2c)?))
}

fn public_bytes(k: &SecretKey) -> Vec<u8> {
    k.public_key().to_encoded_point(true).as_bytes().to_vec()
}

/// Opens a session to `gateway` over `stream` as `signer` (the buyer).
pub fn connect<S: Read + Write>(
    mut stream: S,
    signer: &Signer,
    chain_id: u64,
    gateway: Address,
) -> Result<Session<S>> {
    let eph = ephemeral()?;
    let mut hello = Hello {
        version: VERSION,
        chain_id,
        from: signer.address().into_array(),
        to: gateway.into_array(),
        ephemeral: public_bytes(&eph),
        timestamp: unix_now(),
        nonce: random()?,
        signature: Vec::new(),
    };
    let hello_digest = hello.digest();
    hello.signature = sign(signer, &hello_digest)?;
    write_frame(&mut stream, &encode(&hello)?, HANDSHAKE_FRAME)?;
    let welcome: Welcome = decode(&read_frame(&mut stream, HANDSHAKE_FRAME)?, "welcome")?;
    let digest = welcome_digest(&hello_digest, &welcome.ephemeral);
    let who = recover(&digest, &welcome.signature)?;
    if who != gateway {
        return Err(Error::Refused(format!(
            "the endpoint answered as {who}, not as gateway {gateway}"
        )));
    }
    let (c2s, s2c) = ciphers(&eph, &welcome.ephemeral, &digest)?;
    Ok(Session::new(
        stream,
        signer.address(),
        gateway,
        chain_id,
        c2s,
        s2c,
    ))
}

/// Accepts a session on `stream` as `signer` (the gateway); returns it with
/// the peer's address (the buyer's chain identity).
pub fn accept<S: Read + Write>(
    mut stream: S,
    signer: &Signer,
    chain_id: u64,
    guard: &ReplayGuard,
) -> Result<Session<S>> {
    let hello: Hello = decode(&read_frame(&mut stream, HANDSHAKE_FRAME)?, "hello")?;
    if hello.version != VERSION {
        return Err(Error::Refused(format!(
            "protocol version {} (this gateway speaks {VERSION})",
            hello.version
        )));
    }
    if hello.chain_id != chain_id {
        return Err(Error::Refused(format!(
            "hello for chain {}, this gateway is on chain {chain_id}",
            hello.chain_id
        )));
    }
    if Address::from(hello.to) != signer.address() {
        return Err(Error::Refused(format!(
            "hello for gateway {}, this is {}",
            Address::from(hello.to),
            signer.address()
        )));
    }
    let now = unix_now();
    if !fresh(hello.timestamp, now) {
        return Err(Error::Refused(format!(
            "hello timestamp {} is more than {CLOCK_SKEW} s from now ({now})",
            hello.timestamp
        )));
    }
    let digest = hello.digest();
    let from = recover(&digest, &hello.signature)?;
    if from != Address::from(hello.from) {
        return Err(Error::Refused(format!(
            "hello signed by {from}, claims to be from {}",
            Address::from(hello.from)
        )));
    }
    if guard.admit(hello.nonce, hello.timestamp, now) == Err(Unfresh::Replayed) {
        return Err(Error::Refused("replayed hello (nonce seen before)".into()));
    }
    let eph = ephemeral()?;
    let ephemeral = public_bytes(&eph);
    let transcript = welcome_digest(&digest, &ephemeral);
    let welcome = Welcome {
        signature: sign(signer, &transcript)?,
        ephemeral,
    };
    let (c2s, s2c) = ciphers(&eph, &hello.ephemeral, &transcript)?;
    write_frame(&mut stream, &encode(&welcome)?, HANDSHAKE_FRAME)?;
    Ok(Session::new(
        stream,
        signer.address(),
        from,
        chain_id,
        s2c,
        c2s,
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    const CHAIN: u64 = 31337;

    fn key(i: u8) -> Signer {
        let mut b = [0u8; 32];
        b[31] = i;
        b[0] = 0x22;
        Signer::from_bytes(&b).unwrap()
    }

    fn hello(by: &Signer, chain_id: u64, to: Address, timestamp: u64, nonce: [u8; 16]) -> Hello {
        let mut h = Hello {
            version: VERSION,
            chain_id,
            from: by.address().into_array(),
            to: to.into_array(),
            ephemeral: public_bytes(&ephemeral().unwrap()),
            timestamp,
            nonce,
            signature: Vec::new(),
        };
        h.signature = sign(by, &h.digest()).unwrap();
        h
    }

    /// What the gateway (key 2) says to `h`.
    fn offer(h: &Hello, guard: &ReplayGuard) -> Result<Address> {
        let (mut a, b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &encode(h).unwrap(), HANDSHAKE_FRAME).unwrap();
        accept(b, &key(2), CHAIN, guard).map(|s| s.peer())
    }

    #[test]
    fn the_gateway_refuses_hellos_it_should_not_answer() {
        let gw = key(2).address();
        let now = unix_now();
        let guard = ReplayGuard::default();
        let good = hello(&key(1), CHAIN, gw, now, [1; 16]);
        assert_eq!(offer(&good, &guard).unwrap(), key(1).address());
        let refused = |h: &Hello, why: &str| match offer(h, &guard) {
            Err(Error::Refused(m)) => assert!(m.contains(why), "{m} lacks {why}"),
            other => panic!("{why}: {other:?}"),
        };
        refused(&good, "replayed hello");
        refused(&hello(&key(1), 1, gw, now, [2; 16]), "hello for chain 1");
        refused(
            &hello(&key(1), CHAIN, key(3).address(), now, [3; 16]),
            "hello for gateway",
        );
        refused(
            &hello(&key(1), CHAIN, gw, now - 3600, [4; 16]),
            "more than 300 s",
        );
        refused(
            &hello(&key(1), CHAIN, gw, now + 3600, [5; 16]),
            "more than 300 s",
        );
        let mut forged = hello(&key(1), CHAIN, gw, now, [6; 16]);
        forged.from = key(4).address().into_array();
        refused(&forged, "claims to be from");
        let mut old = hello(&key(1), CHAIN, gw, now, [7; 16]);
        old.version = 0;
        refused(&old, "protocol version 0");
        let mut swapped = hello(&key(1), CHAIN, gw, now, [8; 16]);
        swapped.ephemeral = vec![2; 33];
        refused(&swapped, "claims to be from");
    }

    /// An endpoint that answers for another key is not the gateway.
    #[test]
    fn the_buyer_refuses_an_impostor_endpoint() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let impostor = std::thread::spawn(move || {
            let h: Hello = decode(&read_frame(&mut b, HANDSHAKE_FRAME).unwrap(), "hello").unwrap();
            let eph = public_bytes(&ephemeral().unwrap());
            let w = Welcome {
                signature: sign(&key(3), &welcome_digest(&h.digest(), &eph)).unwrap(),
                ephemeral: eph,
            };
            write_frame(&mut b, &encode(&w).unwrap(), HANDSHAKE_FRAME).unwrap();
        });
        match connect(a, &key(1), CHAIN, key(2).address()) {
            Err(Error::Refused(m)) => assert!(m.contains("answered as"), "{m}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an impostor was accepted"),
        }
        impostor.join().unwrap();
    }

    #[test]
    fn the_guard_refuses_a_nonce_twice_and_forgets_old_ones() {
        let g = ReplayGuard::default();
        assert_eq!(g.admit([1; 16], 1000, 1000), Ok(()));
        assert_eq!(g.admit([1; 16], 1000, 1001), Err(Unfresh::Replayed));
        assert_eq!(g.admit([2; 16], 1000, 1001), Ok(()));
        // Far in the future, the old entries are pruned.
        assert_eq!(g.admit([3; 16], 5000, 5000), Ok(()));
        assert_eq!(g.seen.lock().unwrap().nonces.len(), 1);
    }

    #[test]
    fn a_flood_of_hellos_is_bounded_and_locks_nobody_out() {
        let g = ReplayGuard::default();
        let nonce = |i: usize| {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&(i as u64).to_be_bytes());
            n
        };
        for i in 0..GUARD_CAP {
            assert_eq!(g.admit(nonce(i), 1000, 1000), Ok(()));
        }
        // Full: let through, not remembered, memory stays bounded.
        assert_eq!(g.admit(nonce(GUARD_CAP), 1000, 1000), Ok(()));
        assert_eq!(g.seen.lock().unwrap().nonces.len(), GUARD_CAP);
        // A recorded replay is still refused.
        assert_eq!(g.admit(nonce(0), 1000, 1000), Err(Unfresh::Replayed));
        // Once they are too old to pass the freshness check, room again.
        let later = 1000 + 2 * CLOCK_SKEW + 1;
        assert_eq!(g.admit(nonce(GUARD_CAP), later, later), Ok(()));
        assert_eq!(
            g.admit(nonce(GUARD_CAP), later, later),
            Err(Unfresh::Replayed)
        );
        assert_eq!(g.seen.lock().unwrap().nonces.len(), 1);
    }
}

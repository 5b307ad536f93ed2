use std::os::unix::net::UnixStream;

use alloy_primitives::hex;

use super::*;
use crate::chain::Signer;
use crate::p2p::handshake::{ReplayGuard, accept, connect};
use crate::p2p::message::OfferTerms;

const CHAIN: u64 = 31337;

fn key(i: u8) -> Signer {
    let mut b = [0u8; 32];
    b[31] = i;
    b[0] = 0x11;
    Signer::from_bytes(&b).unwrap()
}

/// A buyer session and the gateway's, over a socket pair.
fn pair() -> (Session<UnixStream>, Session<UnixStream>) {
    let (a, b) = UnixStream::pair().unwrap();
    let gateway = key(2);
    let gw_addr = gateway.address();
    let server =
        std::thread::spawn(move || accept(b, &gateway, CHAIN, &ReplayGuard::default()).unwrap());
    let client = connect(a, &key(1), CHAIN, gw_addr).unwrap();
    (client, server.join().unwrap())
}

fn every_body() -> Vec<Body> {
    let lease = [7u8; 32];
    vec![
        Body::Offer {
            terms: OfferTerms {
                buyer: key(1).address().into_array(),
                gateway: key(2).address().into_array(),
                cpu_millicores: 500,
                memory_bytes: 64 << 20,
                disk_bytes: 256 << 20,
                devices: vec!["Random-Integer-Device:Int8:r".into()],
                price_per_second: 150_000_000_000_000,
                max_duration: 3600,
                payment_interval: 5,
                image: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
                expiry: 1_800_000_000,
                nonce: 1,
            },
            signature: vec![1; 65],
        },
        Body::OfferAccepted { lease },
        Body::OfferRefused {
            lease,
            reason: "no capacity".into(),
        },
        Body::ChannelProof {
            lease,
            channel: [9; 32],
        },
        Body::Deploy {
            lease,
            image_cid: "QmX".into(),
            manifest_digest: "sha256:ab".into(),
            backends: vec!["example.com:443".into()],
        },
        Body::Payment {
            lease,
            channel: [9; 32],
            amount: [0; 32],
            signature: vec![2; 65],
        },
        Body::PaymentAck {
            lease,
            amount: [0; 32],
        },
        Body::Status {
            lease,
            state: "running".into(),
            detail: String::new(),
        },
        Body::Logs {
            lease,
            stream: 1,
            offset: 0,
            data: b"hello\n".to_vec(),
        },
        Body::Terminate {
            lease,
            reason: "done".into(),
        },
        Body::Error {
            message: "x".into(),
        },
        Body::Account {
            lease,
            paid: [1; 32],
            owed: [2; 32],
            ran: 7,
            edgex: vec![crate::p2p::DeviceUse {
                device: "Random-Integer-Device".into(),
                reads: 3,
                ..Default::default()
            }],
        },
        Body::OfferPending {
            lease,
            detail: "the accept is not mined yet".into(),
        },
    ]
}

#[test]
fn every_message_crosses_both_ways_between_proven_identities() {
    let (mut buyer, mut gateway) = pair();
    assert_eq!(buyer.peer(), key(2).address());
    assert_eq!(gateway.peer(), key(1).address());
    for b in every_body() {
        buyer.send(b.clone()).unwrap();
        assert_eq!(gateway.recv().unwrap(), b);
        gateway.send(b.clone()).unwrap();
        assert_eq!(buyer.recv().unwrap(), b);
    }
}

#[test]
fn the_link_is_encrypted() {
    let (a, b) = UnixStream::pair().unwrap();
    let (tap_a, tap_b) = UnixStream::pair().unwrap();
    // A relay that copies the client's bytes to the server and keeps a copy.
    let gateway = key(2);
    let gw = gateway.address();
    let server = std::thread::spawn(move || {
        let mut s = accept(tap_b, &gateway, CHAIN, &ReplayGuard::default()).unwrap();
        s.recv().unwrap()
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let relay = {
        let (mut from_client, mut to_server) = (b.try_clone().unwrap(), tap_a.try_clone().unwrap());
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from_client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        })
    };
    let back = {
        let (mut from_server, mut to_client) = (tap_a, b);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
        })
    };
    let mut c = connect(a, &key(1), CHAIN, gw).unwrap();
    let secret = Body::Logs {
        lease: [0; 32],
        stream: 1,
        offset: 0,
        data: b"the buyer's secret sensor log".to_vec(),
    };
    c.send(secret.clone()).unwrap();
    assert_eq!(server.join().unwrap(), secret);
    drop(c);
    let _ = (relay.join(), back.join());
    let wire = seen.lock().unwrap().clone();
    let needle = b"secret sensor";
    assert!(
        !wire.windows(needle.len()).any(|w| w == needle),
        "plaintext on the wire: {}",
        hex::encode(&wire)
    );
}

/// Sends `frame` raw (bypassing the session) down the client's socket.
fn raw(s: &mut Session<UnixStream>, frame: &[u8]) {
    write_frame(s.stream.get_mut(), frame, MAX_FRAME).unwrap();
}

/// The client's next frame for `e`, sealed as `send` would, without
/// sending it.
fn sealed(s: &Session<UnixStream>, e: &Envelope, counter: u64) -> Vec<u8> {
    let plain = postcard::to_stdvec(e).unwrap();
    s.send.encrypt(&nonce(counter), plain.as_slice()).unwrap()
}

fn envelope(seq: u64) -> Envelope {
    Envelope {
        chain_id: CHAIN,
        from: key(1).address().into_array(),
        to: key(2).address().into_array(),
        seq,
        timestamp: unix_now(),
        body: Body::Error {
            message: "x".into(),
        },
    }
}

#[test]
fn altered_and_replayed_frames_fail_authentication() {
    let (mut c, mut g) = pair();
    let mut frame = sealed(&c, &envelope(1), 0);
    frame[3] ^= 1;
    raw(&mut c, &frame);
    assert!(matches!(g.recv(), Err(Error::Integrity(_))));

    let (mut c, mut g) = pair();
    let frame = sealed(&c, &envelope(1), 0);
    raw(&mut c, &frame);
    assert!(g.recv().is_ok());
    raw(&mut c, &frame);
    assert!(
        matches!(g.recv(), Err(Error::Integrity(_))),
        "replayed frame"
    );
}

#[test]
fn frames_sealed_by_anyone_but_the_peer_or_reflected_are_refused() {
    // Another buyer's own session with the same gateway: its frame, sealed
    // under its key, injected into the victim's session.
    let (mut victim, mut g) = pair();
    let (other, _g2) = pair();
    let frame = sealed(&other, &envelope(1), 0);
    raw(&mut victim, &frame);
    assert!(matches!(g.recv(), Err(Error::Integrity(_))));
    // Each side's own frame sent back to it (reflection).
    let (mut c, mut g) = pair();
    g.send(Body::Error {
        message: "to the buyer".into(),
    })
    .unwrap();
    let theirs = read_frame(&mut c.stream, MAX_FRAME).unwrap();
    raw(&mut c, &theirs);
    assert!(matches!(g.recv(), Err(Error::Integrity(_))));
    let (mut c, mut g) = pair();
    c.send(Body::Error {
        message: "to the gateway".into(),
    })
    .unwrap();
    let mine = read_frame(&mut g.stream, MAX_FRAME).unwrap();
    write_frame(g.stream.get_mut(), &mine, MAX_FRAME).unwrap();
    assert!(matches!(c.recv(), Err(Error::Integrity(_))));
    // Bytes after the envelope (the signature protocol 2 appended).
    let (mut c, mut g) = pair();
    let mut plain = postcard::to_stdvec(&envelope(1)).unwrap();
    plain.extend_from_slice(&[0u8; 65]);
    let frame = c.send.encrypt(&nonce(0), plain.as_slice()).unwrap();
    raw(&mut c, &frame);
    assert!(matches!(g.recv(), Err(Error::Malformed(_))));
}

#[test]
fn envelopes_must_come_in_order_for_this_chain_and_these_parties() {
    let cases: Vec<(&str, Envelope)> = vec![
        ("out of sequence", envelope(2)),
        ("sequence zero", envelope(0)),
        (
            "another chain",
            Envelope {
                chain_id: 1,
                ..envelope(1)
            },
        ),
        (
            "addressed to another gateway",
            Envelope {
                to: key(3).address().into_array(),
                ..envelope(1)
            },
        ),
        (
            "claiming another sender",
            Envelope {
                from: key(3).address().into_array(),
                ..envelope(1)
            },
        ),
        (
            "stale",
            Envelope {
                timestamp: unix_now() - 3600,
                ..envelope(1)
            },
        ),
    ];
    for (what, e) in cases {
        let (mut c, mut g) = pair();
        let frame = sealed(&c, &e, 0);
        raw(&mut c, &frame);
        match g.recv() {
            Err(Error::Refused(why)) => eprintln!("{what}: {why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn every_message_has_its_own_name_and_only_its_name() {
    let bodies = every_body();
    let names: std::collections::BTreeSet<&str> = bodies.iter().map(Body::name).collect();
    assert_eq!(names.len(), bodies.len(), "{names:?}");
    for b in &bodies {
        // The name is the variant's, never its contents.
        assert!(
            format!("{b:?}").starts_with(&format!("{} {{", b.name())),
            "{b:?}"
        );
    }
}

//! The RPC client behind a hostile proxy in front of a real anvil: dropped
//! connections, stalls, garbage, and a forged log the receipts check must
//! catch.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Anvil, signer};
use dedge::chain::bindings::IRegistry;
use dedge::chain::events::{Filter, Follower, Update};
use dedge::chain::rpc::RpcConfig;
use dedge::chain::tx::TxSender;
use dedge::chain::{Error, Rpc};
use dedge::store::Store;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Close the first `n` connections without answering.
    DropFirst(usize),
    /// Never answer (the client must time out).
    Stall,
    /// Answer 200 with something that is not JSON.
    Garbage,
    /// Pass through, but rewrite every eth_getLogs answer's log data.
    ForgeLogs,
}

/// A one-thread HTTP proxy to `upstream`; returns its URL.
fn proxy(upstream: String, mode: Mode) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            std::thread::spawn(move || serve(conn, &upstream, mode, n));
        }
    });
    url
}

fn serve(mut conn: TcpStream, upstream: &str, mode: Mode, n: usize) {
    let Some(body) = read_request(&conn) else {
        return;
    };
    match mode {
        Mode::DropFirst(k) if n < k => return,
        Mode::Stall => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Mode::Garbage => {
            let _ = respond(&mut conn, "<html>502 bad gateway</html>");
            return;
        }
        _ => {}
    }
    let Ok(mut resp) = ureq::post(upstream)
        .header("content-type", "application/json")
        .send(&body)
    else {
        return;
    };
    let Ok(mut text) = resp.body_mut().read_to_string() else {
        return;
    };
    if mode == Mode::ForgeLogs && body.contains("eth_getLogs") {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(logs) = v["result"].as_array_mut() {
            for l in logs {
                l["data"] = serde_json::json!(format!("0x{}", "ab".repeat(32)));
            }
        }
        text = v.to_string();
    }
    let _ = respond(&mut conn, &text);
}

fn read_request(conn: &TcpStream) -> Option<String> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

fn respond(conn: &mut TcpStream, body: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn client(urls: Vec<String>) -> Rpc {
    Rpc::new(
        urls,
        RpcConfig {
            timeout: Duration::from_millis(800),
            attempts: 3,
            backoff: Duration::from_millis(10),
        },
    )
}

#[test]
fn dropped_connections_are_retried() {
    let anvil = Anvil::start();
    let rpc = client(vec![proxy(anvil.url.clone(), Mode::DropFirst(2))]);
    assert_eq!(rpc.chain_id().unwrap(), anvil.chain_id);
}

#[test]
fn a_stalled_or_garbage_endpoint_fails_over() {
    let anvil = Anvil::start();
    for mode in [Mode::Stall, Mode::Garbage] {
        let rpc = client(vec![proxy(anvil.url.clone(), mode), anvil.url.clone()]);
        assert_eq!(rpc.chain_id().unwrap(), anvil.chain_id);
        let alone = client(vec![proxy(anvil.url.clone(), mode)]);
        assert!(matches!(
            alone.chain_id(),
            Err(Error::AllEndpointsFailed(_))
        ));
    }
}

/// A node that rewrites a log's data is caught by the receipts-root check
/// before the follower delivers anything.
#[test]
fn a_forged_log_is_rejected() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let direct = anvil.rpc();
    let store = Store::temporary().unwrap();
    let op = signer(3);
    let tx = TxSender::new(
        &direct,
        &op,
        anvil.chain_id,
        store.tree("nonces").unwrap(),
        common::policy(),
    );
    // A registry event to forge: the gateway's registration.
    let gw = signer(2);
    let deadline = alloy_primitives::U256::from(u64::MAX);
    let digest = dedge::chain::eip712::binding_digest(
        gw.address(),
        op.address(),
        alloy_primitives::U256::ZERO,
        deadline,
        &dedge::chain::eip712::registry_domain(anvil.chain_id, d.registry),
    );
    let sig = gw.sign_hash(&digest).unwrap();
    tx.execute(
        d.registry,
        &IRegistry::registerGatewayCall {
            gateway: gw.address(),
            deadline,
            signature: sig.as_bytes().to_vec().into(),
        },
    )
    .unwrap();

    let filter = Filter {
        addresses: vec![d.registry],
        topics0: vec![],
        topic1: None,
    };
    let lying = client(vec![proxy(anvil.url.clone(), Mode::ForgeLogs)]);
    let f = Follower::new(
        store.tree("cursors").unwrap(),
        "registry",
        filter.clone(),
        0,
        0,
    )
    .unwrap();
    let err = f.poll(&lying).unwrap_err();
    assert!(matches!(err, Error::Unverified(_)), "{err}");
    assert!(err.to_string().contains("forged"), "{err}");
    assert_eq!(f.cursor().unwrap().unwrap().next, 0, "nothing consumed");

    // The honest node's answer passes the same check.
    match f.poll(&direct).unwrap() {
        Update::Logs { logs, .. } => assert!(!logs.is_empty()),
        Update::Reorg { .. } => panic!("no reorg here"),
    }
}

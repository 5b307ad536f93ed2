//! A hostile JSON-RPC proxy in front of a real node: dropped connections,
//! stalls, garbage, forged or withheld logs. Its mode can change while it
//! runs (a node that lies, then tells the truth).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, PartialEq, Debug)]
pub enum Mode {
    /// Pass everything through.
    Honest,
    /// Close the first `n` connections without answering.
    DropFirst(usize),
    /// Never answer (the client must time out).
    Stall,
    /// Answer 200 with something that is not JSON.
    Garbage,
    /// Pass through, but rewrite every eth_getLogs answer's log data.
    ForgeLogs,
    /// Pass through, but leave out of every eth_getLogs answer the logs
    /// whose third topic (an indexed sequence number, say) is this one.
    WithholdTopic2(String),
}

pub struct Proxy {
    pub url: String,
    mode: Arc<Mutex<Mode>>,
}

impl Proxy {
    pub fn start(upstream: String, mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let shared = mode.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                let mode = shared.lock().unwrap().clone();
                std::thread::spawn(move || serve(conn, &upstream, &mode, n));
            }
        });
        Proxy { url, mode }
    }

    /// From the next connection on, behave as `mode`.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

/// A proxy that keeps its mode; its URL.
pub fn proxy(upstream: String, mode: Mode) -> String {
    Proxy::start(upstream, mode).url
}

fn serve(mut conn: TcpStream, upstream: &str, mode: &Mode, n: usize) {
    let Some(body) = read_request(&conn) else {
        return;
    };
    match mode {
        Mode::DropFirst(k) if n < *k => return,
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
    if body.contains("eth_getLogs") {
        match mode {
            Mode::ForgeLogs => {
                text = rewrite_logs(&text, |logs| {
                    for l in logs.iter_mut() {
                        l["data"] = serde_json::json!(format!("0x{}", "ab".repeat(32)));
                    }
                })
            }
            Mode::WithholdTopic2(topic) => {
                text = rewrite_logs(&text, |logs| {
                    logs.retain(|l| {
                        l["topics"][2]
                            .as_str()
                            .is_none_or(|t| !t.eq_ignore_ascii_case(topic))
                    })
                })
            }
            _ => {}
        }
    }
    let _ = respond(&mut conn, &text);
}

/// Applies `f` to the logs of a single or batched eth_getLogs answer.
fn rewrite_logs(text: &str, f: impl Fn(&mut Vec<serde_json::Value>)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    let answers: Vec<&mut serde_json::Value> = match v.as_array_mut() {
        Some(batch) => batch.iter_mut().collect(),
        None => vec![&mut v],
    };
    for a in answers {
        if let Some(logs) = a["result"].as_array_mut() {
            f(logs);
        }
    }
    v.to_string()
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

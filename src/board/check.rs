//! Semantic checks: values that parse but cannot describe a working gateway.
//!
//! These run on any machine (a vendor checks board files on a laptop). The
//! checks against the machine the agent runs on are in `host.rs`.

use std::collections::HashSet;
use std::fmt::Display;
use std::hash::Hash;

use super::locate::{KeyPath, key_path};
use super::schema::{Board, Edgex};
use super::values::EdgexAuth;
use crate::units::ByteSize;

/// One problem found in a parsed board, located by key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) path: KeyPath,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, path: KeyPath, message: impl Into<String>, hint: impl Into<Option<String>>) {
        self.0.push(Finding {
            path,
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// Reports every repeat of an item in a list that must not repeat.
    /// `field` names the key inside each item that holds the value, for
    /// arrays of tables.
    fn unique<T: Hash + Eq + Display>(
        &mut self,
        list: &KeyPath,
        field: Option<&'static str>,
        items: &[T],
        what: &str,
    ) {
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            if !seen.insert(item) {
                let at = list.index(i);
                self.add(
                    field.map_or_else(|| at.clone(), |k| at.key(k)),
                    format!("{what} `{item}` is listed twice"),
                    Some("remove the repeat".to_string()),
                );
            }
        }
    }
}

/// All semantic problems of `board`, in file order as far as practical.
pub fn check(board: &Board) -> Vec<Finding> {
    let mut f = Findings::default();
    check_hardware(board, &mut f);
    check_identity(board, &mut f);
    check_agent(board, &mut f);
    check_chain(board, &mut f);
    check_resources(board, &mut f);
    check_pricing(board, &mut f);
    if let Some(edgex) = &board.edgex {
        check_edgex(edgex, &mut f);
    }
    check_ipfs(board, &mut f);
    f.0
}

fn check_hardware(b: &Board, f: &mut Findings) {
    if b.board.model.trim().is_empty() {
        f.add(key_path!("board", "model"), "the model name is empty", None);
    }
    if b.board.cores == 0 {
        f.add(
            key_path!("board", "cores"),
            "a board has at least one core",
            None,
        );
    }
    if b.board.memory.bytes() == 0 {
        f.add(
            key_path!("board", "memory"),
            "a board has some memory",
            None,
        );
    }
}

fn check_identity(b: &Board, f: &mut Findings) {
    let id = &b.identity;
    if id.key_file.as_os_str().is_empty() {
        f.add(
            key_path!("identity", "key_file"),
            "the key file path is empty",
            None,
        );
    }
    if id.passphrase_file.as_ref() == Some(&id.key_file) {
        f.add(
            key_path!("identity", "passphrase_file"),
            "the passphrase file is the key file itself",
            Some("keep the passphrase in a separate file".into()),
        );
    }
}

fn check_agent(b: &Board, f: &mut Findings) {
    if b.agent.data_dir.as_os_str().is_empty() {
        f.add(
            key_path!("agent", "data_dir"),
            "the data directory path is empty",
            None,
        );
    }
    if b.agent.listen.port() == 0 {
        f.add(
            key_path!("agent", "listen"),
            "port 0 picks a random port, which buyers could not find",
            Some("choose a fixed port, e.g. \"0.0.0.0:7300\"".into()),
        );
    }
}

fn check_chain(b: &Board, f: &mut Findings) {
    let c = &b.chain;
    if c.chain_id == 0 {
        f.add(
            key_path!("chain", "chain_id"),
            "chain id 0 is not a network",
            Some("use the network's EIP-155 id, e.g. 1 for mainnet, 31337 for anvil".into()),
        );
    }
    if c.rpc_urls.is_empty() {
        f.add(
            key_path!("chain", "rpc_urls"),
            "no RPC URL: the agent cannot reach the chain",
            Some("list at least one, e.g. [\"http://127.0.0.1:8545\"]".into()),
        );
    }
    let urls: Vec<&str> = c.rpc_urls.iter().map(|u| u.as_str()).collect();
    f.unique(&key_path!("chain", "rpc_urls"), None, &urls, "RPC URL");
    const MAX_CONFIRMATIONS: u32 = 1024;
    if c.confirmations > MAX_CONFIRMATIONS {
        f.add(
            key_path!("chain", "confirmations"),
            format!(
                "{} confirmations would keep the agent hours behind the chain",
                c.confirmations
            ),
            Some(format!(
                "use at most {MAX_CONFIRMATIONS} (mainnet finality is about 64)"
            )),
        );
    }
    let k = &c.contracts;
    let named = [
        ("token", k.token),
        ("registry", k.registry),
        ("market", k.market),
        ("channels", k.channels),
        ("control", k.control),
    ];
    for (i, (name, addr)) in named.iter().enumerate() {
        if let Some((first, _)) = named[..i].iter().find(|(_, a)| a == addr) {
            f.add(
                key_path!("chain", "contracts").key(name),
                format!("`{name}` has the same address as `{first}` ({addr})"),
                Some("each contract is deployed at its own address".into()),
            );
        }
    }
}

fn check_resources(b: &Board, f: &mut Findings) {
    let r = &b.resources;
    let hw = &b.board;
    let max_millicores = u64::from(hw.cores) * 1000;
    if r.cpu_millicores == 0 {
        f.add(
            key_path!("resources", "cpu_millicores"),
            "no CPU offered",
            None,
        );
    } else if u64::from(r.cpu_millicores) > max_millicores {
        f.add(
            key_path!("resources", "cpu_millicores"),
            format!(
                "{} millicores offered but the board has {} cores",
                r.cpu_millicores, hw.cores
            ),
            Some(format!("offer at most {max_millicores}")),
        );
    }
    if r.memory.bytes() == 0 {
        f.add(key_path!("resources", "memory"), "no memory offered", None);
    } else if r.memory > hw.memory {
        f.add(
            key_path!("resources", "memory"),
            format!(
                "{} offered but the board has {} of memory",
                r.memory, hw.memory
            ),
            Some(format!(
                "offer at most {} (less leaves room for the OS)",
                hw.memory
            )),
        );
    }
    if r.disk.bytes() == 0 {
        f.add(
            key_path!("resources", "disk"),
            "no disk offered: images need space",
            None,
        );
    }
    if r.max_leases == 0 {
        f.add(
            key_path!("resources", "max_leases"),
            "max_leases = 0 sells nothing",
            Some("allow at least 1".into()),
        );
    } else if r.memory.bytes() / u64::from(r.max_leases) < MIN_LEASE_MEMORY.bytes() {
        f.add(
            key_path!("resources", "max_leases"),
            format!(
                "{} leases would get under {} of memory each",
                r.max_leases, MIN_LEASE_MEMORY
            ),
            Some("lower max_leases or offer more memory".into()),
        );
    }
}

/// Below this a container runtime plus a small program does not fit.
const MIN_LEASE_MEMORY: ByteSize = ByteSize(4 << 20);

fn check_pricing(b: &Board, f: &mut Findings) {
    let p = &b.pricing;
    let zero_price = |f: &mut Findings, key: &'static str| {
        f.add(
            key_path!("pricing").key(key),
            "price is zero",
            Some("prices are EDG per unit-second, e.g. \"0.00002\"".into()),
        );
    };
    if p.cpu_core_second.is_zero() {
        zero_price(f, "cpu_core_second");
    }
    if p.memory_gib_second.is_zero() {
        zero_price(f, "memory_gib_second");
    }
    let sells_devices = b.edgex.as_ref().is_some_and(|e| !e.devices.is_empty());
    match p.device_second {
        Some(price) if price.is_zero() => zero_price(f, "device_second"),
        None if sells_devices => f.add(
            key_path!("pricing", "device_second"),
            "[[edgex.devices]] are for sale but have no price",
            Some("add device_second = \"0.00001\" (EDG per device per second)".into()),
        ),
        _ => {}
    }
    if p.payment_interval.get().as_millis() < 1000 {
        f.add(
            key_path!("pricing", "payment_interval"),
            format!("payment interval {} is under a second", p.payment_interval),
            Some("balance proofs every second or slower, e.g. \"30s\"".into()),
        );
    }
    if p.grace.get().is_zero() {
        f.add(
            key_path!("pricing", "grace"),
            "zero grace freezes a buyer at the first late packet",
            Some("allow at least one payment interval".into()),
        );
    }
    if p.min_lease < p.payment_interval {
        f.add(
            key_path!("pricing", "min_lease"),
            format!(
                "minimum lease {} is shorter than the payment interval {}",
                p.min_lease, p.payment_interval
            ),
            Some("a lease must last at least one payment interval".into()),
        );
    }
}

fn check_edgex(e: &Edgex, f: &mut Findings) {
    match e.auth {
        EdgexAuth::Jwt => {
            if e.secret_store.is_none() {
                f.add(
                    key_path!("edgex", "secret_store"),
                    "auth = \"jwt\" needs the secret store that issues tokens",
                    Some("add secret_store = \"http://127.0.0.1:8200\"".into()),
                );
            }
            if e.credentials_file.is_none() {
                f.add(
                    key_path!("edgex", "credentials_file"),
                    "auth = \"jwt\" needs the file with the secret-store user's credentials",
                    Some("add credentials_file = \"/etc/dedge/edgex-user\"".into()),
                );
            }
        }
        EdgexAuth::None => {
            for (key, set) in [
                ("secret_store", e.secret_store.is_some()),
                ("credentials_file", e.credentials_file.is_some()),
            ] {
                if set {
                    f.add(
                        key_path!("edgex").key(key),
                        format!("`{key}` is set but auth = \"none\" never uses it"),
                        Some("set auth = \"jwt\" or remove the key".into()),
                    );
                }
            }
        }
    }
    if !(1..=10_000).contains(&e.lease_rate) {
        f.add(
            key_path!("edgex", "lease_rate"),
            format!("{} requests per second is out of range", e.lease_rate),
            Some("use 1 to 10000 (default 20)".into()),
        );
    }
    if !(1 << 10..=1 << 20).contains(&e.lease_max_body.bytes()) {
        f.add(
            key_path!("edgex", "lease_max_body"),
            format!("{} is out of range", e.lease_max_body),
            Some("use 1 KiB to 1 MiB (default 16 KiB)".into()),
        );
    }
    if e.refresh.get() < std::time::Duration::from_secs(10) {
        f.add(
            key_path!("edgex", "refresh"),
            format!(
                "reading the catalogue every {} would load EdgeX for nothing",
                e.refresh
            ),
            Some("use 10s or more (default 5m)".into()),
        );
    }
    let devices = key_path!("edgex", "devices");
    let names: Vec<&str> = e.devices.iter().map(|d| d.name.as_str()).collect();
    f.unique(&devices, Some("name"), &names, "device");
    for (i, d) in e.devices.iter().enumerate() {
        let at = devices.index(i);
        if let Err(why) = edgex_name(&d.name) {
            f.add(at.key("name"), format!("device name {why}"), None);
        }
        if d.read.is_empty() && d.write.is_empty() {
            f.add(
                at.clone(),
                format!("device `{}` offers no command", d.name),
                Some("list commands under read = [...] and/or write = [...]".into()),
            );
        }
        for (key, list) in [("read", &d.read), ("write", &d.write)] {
            let list_path = at.key(key);
            f.unique(&list_path, None, list, "command");
            for (j, cmd) in list.iter().enumerate() {
                if let Err(why) = edgex_name(cmd) {
                    f.add(list_path.index(j), format!("command name {why}"), None);
                } else if cmd.contains(':') {
                    // Lease grants are DEVICE:COMMAND:MODE.
                    f.add(
                        list_path.index(j),
                        format!(
                            "command name `{cmd}` contains `:`, which lease grants cannot carry"
                        ),
                        None,
                    );
                }
            }
        }
    }
}

/// EdgeX names travel in URL paths; refuse what cannot be a name there.
fn edgex_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "`{}` contains `/` or a control character",
            name.escape_debug()
        ));
    }
    Ok(())
}

fn check_ipfs(b: &Board, f: &mut Findings) {
    let gateways = &b.ipfs.gateways;
    if gateways.is_empty() {
        f.add(
            key_path!("ipfs", "gateways"),
            "no IPFS gateway: images cannot be fetched",
            Some("list at least one trustless gateway, e.g. [\"http://127.0.0.1:8080\"]".into()),
        );
    }
    let urls: Vec<&str> = gateways.iter().map(|u| u.as_str()).collect();
    f.unique(&key_path!("ipfs", "gateways"), None, &urls, "gateway");
}

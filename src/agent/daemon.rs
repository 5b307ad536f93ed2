//! The seller agent as one object: the board's resources, the gateway's
//! key and chain, the lease book, the channel receiver, EdgeX, the image
//! store, the runtime and the IPFS fetcher, and the desks that use them.
//! `handle` answers a buyer's message; `tick` (every second) runs the
//! executor over every lease: enforcement, settlement, and whatever a
//! crash left half-done. `dedge agent` runs both.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use alloy_primitives::{Address, U256};

use super::admission::Policy;
use super::advert::Advertiser;
use super::backends;
use super::control::{self as commands, Controller, Effects};
use super::deploy::{Deployed, Deployer, EdgexWiring, container_id};
use super::executor::{ChainQueue, Executor, Running};
use super::lease::{Lease, LeaseBook, State, UnixTime};
use super::machine::{Event, Timing, owed};
use super::offers::OfferDesk;
use super::payments::PaymentDesk;
use super::settle::MarketHands;
use super::{Error, Result, endpoint};
use crate::board::BackendPolicy;
use crate::board::Board;
use crate::chain::events::Follower;
use crate::chain::tx::{TxPolicy, TxSender};
use crate::chain::{Deployment, Rpc, Signer};
use crate::channel::{ChannelId, Receiver};
use crate::control::Overlay;
use crate::control::command::{Capacity, DeviceSale};
use crate::control::decide::{Held, Leased, Sold};
use crate::control::overlay::{Selling, Settings, board_capacity};
use crate::edgex::bridge::BridgeLimits;
use crate::edgex::catalogue::{Catalogue, Refresher};
use crate::edgex::client::Client;
use crate::edgex::meter::Meter;
use crate::ipfs::fetch::{Fetcher, Limits as FetchLimits};
use crate::logger;
use crate::market::{Capabilities, LeaseId, Rules};
use crate::p2p::Body;
use crate::runtime::container::{Config, RecordStore, Runtime};
use crate::runtime::image::{ImageStore, Limits as ImageLimits, Platform};
use crate::store::{Store, Tree};
use crate::tcp_server::TcpServer;

/// Largest log chunk one `Logs` answer carries.
const LOG_CHUNK: usize = 64 << 10;
/// The most of a buyer's termination reason the lease record keeps.
const MAX_REASON: usize = 200;
/// How a lease's reason starts when its operator evicted it (the machine
/// writes it).
const EVICTED: &str = "evicted by the gateway's operator: ";
/// How often the operator's commands are looked for.
const COMMAND_POLL: Duration = Duration::from_secs(1);

pub struct Agent {
    signer: Signer,
    rpc: Rpc,
    d: Deployment,
    store: Store,
    tx_policy: TxPolicy,
    pub book: LeaseBook,
    receiver: Receiver,
    /// The vendor's board file, under the operator's overlay (`settings`).
    board: Board,
    /// What the board and the operator's applied commands say now.
    settings: RwLock<Settings>,
    policy: RwLock<Policy>,
    catalogue: Arc<RwLock<Catalogue>>,
    refresher: Option<Refresher>,
    edgex: Option<EdgexWiring>,
    images: ImageStore,
    runtime: Runtime,
    fetcher: Fetcher,
    platform: Platform,
    data: PathBuf,
    /// Running leases' containers and bridges.
    running: Running,
    /// Held while the gateway's transactions are sent: one nonce sequence.
    chain: Mutex<()>,
    /// Held by the offer desk from admission to the accept's intent.
    admission: Mutex<()>,
    /// The Market's time rules, read from the contract once it answers.
    rules: OnceLock<Rules>,
    /// The enforcement tick's on-chain effects, for the chain worker.
    queue: ChainQueue,
    /// When ended leases were last moved out of the hot tree, and what
    /// those moved out were paid in all (what the status shows as earned,
    /// without reading them every second).
    pruned: Mutex<(UnixTime, u128)>,
    advertiser: Mutex<Advertiser>,
    /// Each running lease's backends (the policy new deploys get is
    /// `settings`').
    backend_names: Tree,
    /// The operator's commands: their records, and the follower of the
    /// `Command` events (made once the chain first answers).
    controller: Controller,
    follower: Mutex<Option<Follower>>,
    /// The head at which the commands were last caught up and reported
    /// (nothing to do until the next block).
    command_idle: Mutex<Option<u64>>,
    /// Set when a command changed what is sold: the advert is checked at
    /// its next step, with what is sold from then on.
    advert_stale: std::sync::atomic::AtomicBool,
    /// Blocks a command must be under before it is taken.
    confirmations: u64,
}

fn setup<E>(what: &'static str) -> impl Fn(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::Setup {
        what,
        source: Box::new(e),
    }
}

impl Agent {
    /// Opens (or reopens) the agent's state under the board's data dir.
    pub fn open(
        board: &Board,
        signer: Signer,
        rpc: Rpc,
        d: Deployment,
        tx_policy: TxPolicy,
    ) -> Result<Agent> {
        let data = board.agent.data_dir.clone();
        let store = Store::open(&data.join("agent")).map_err(setup("state"))?;
        let grace = board.pricing.grace.get().as_secs();
        let book = LeaseBook::open(
            store.tree("leases").map_err(setup("leases"))?,
            Timing::with_grace(grace),
        )?
        .archiving_to(store.tree("leases-ended").map_err(setup("leases"))?)?;
        let receiver = Receiver::new(store.clone(), d.chain_id, d.channels, signer.address())
            .map_err(setup("channels"))?;
        let runtime = Runtime::open(
            Config {
                dir: data.join("containers"),
                cgroup: board.board.cgroup,
                cgroup_parent: crate::runtime::cgroup::parent_for(
                    board.agent.cgroup_parent.relative(),
                    "agent",
                    &data,
                ),
                // A named parent is someone else's: never made here.
                cgroup_delegated: board.agent.cgroup_parent.delegated().map(String::from),
                die_with_parent: false,
            },
            RecordStore::sled(&store).map_err(setup("containers"))?,
        )
        .map_err(setup("runtime"))?;
        let images = ImageStore::open(&data.join("images"), &store, ImageLimits::default())
            .map_err(setup("images"))?;
        let fetcher = Fetcher::new(
            board
                .ipfs
                .gateways
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            &data.join("ipfs-cache"),
            FetchLimits {
                max_total: board.resources.disk.bytes(),
                ..FetchLimits::default()
            },
        );
        // The operator's commands first: what they put on sale is what the
        // catalogue is read for.
        let controller = Controller::new(
            store
                .tree(&format!("control-{:x}", d.control))
                .map_err(setup("commands"))?,
            &d,
            signer.address(),
        );
        let overlay = controller.overlay().map_err(setup("commands"))?;
        let settings = Settings::new(board, &overlay);
        let (catalogue, refresher, edgex) = match &board.edgex {
            Some(e) => {
                let client = Arc::new(Client::from_board(e).map_err(setup("edgex"))?);
                let refresher =
                    Refresher::start(client.clone(), settings.board_devices(), e.refresh.get());
                let catalogue = refresher.catalogue();
                let wiring = EdgexWiring {
                    client,
                    catalogue: catalogue.clone(),
                    meter: Meter::new(store.tree("edgex-usage").map_err(setup("edgex usage"))?),
                    limits: BridgeLimits::from_board(e),
                };
                (catalogue, Some(refresher), Some(wiring))
            }
            None => (Arc::new(RwLock::new(Catalogue::default())), None, None),
        };
        let backend_names = store.tree("backends").map_err(setup("backends"))?;
        let agent = Agent {
            policy: RwLock::new(Policy::new(board, &settings, signer.address())),
            settings: RwLock::new(settings),
            board: board.clone(),
            controller,
            follower: Mutex::new(None),
            command_idle: Mutex::new(None),
            advert_stale: std::sync::atomic::AtomicBool::new(true),
            confirmations: u64::from(board.chain.confirmations),
            platform: Platform::of(board.board.arch),
            signer,
            rpc,
            d,
            store,
            tx_policy,
            book,
            receiver,
            catalogue,
            refresher,
            edgex,
            images,
            runtime,
            fetcher,
            data,
            running: Mutex::new(HashMap::new()),
            chain: Mutex::new(()),
            admission: Mutex::new(()),
            rules: OnceLock::new(),
            queue: ChainQueue::default(),
            pruned: Mutex::new((UnixTime(0), 0)),
            backend_names,
            advertiser: Mutex::new(Advertiser::new(board.agent.public.to_string())),
        };
        agent.restart_leases();
        agent.reattach();
        // The configuration the records hold, in force before anything
        // serves; an eviction recorded but not carried out, carried out.
        agent.configure(&overlay);
        if let Err(e) = agent.controller.finish(&agent) {
            log::error!("commands: {}", logger::chain(&e));
        }
        Ok(agent)
    }

    /// At open, before anything serves or ticks: every lease learns the
    /// agent restarted (a decision or a deploy cut short ends; a pending
    /// accept or settle step is picked up). Only the records change here;
    /// the ticks carry out what follows, chain or no chain (the machine is
    /// level-triggered).
    fn restart_leases(&self) {
        let now = UnixTime::now();
        for l in self.book.all().unwrap_or_default() {
            if l.state.is_terminal() {
                continue;
            }
            if let Err(e) = self.book.apply(&l.id, &Event::Restarted, now) {
                log::error!("lease {}: restart: {}", l.id, logger::chain(&e));
            }
        }
    }

    /// After a restart: running leases get their bridges back (the
    /// runtime re-attached their containers). A lease whose container is
    /// gone is left to the first tick, which sees it missing and ends it.
    fn reattach(&self) {
        for l in self.book.all().unwrap_or_default() {
            if !matches!(l.state, State::Running | State::Frozen) {
                continue;
            }
            let name = container_id(&l.id);
            let Ok(record) = self.runtime.get(&name) else {
                continue;
            };
            let bridge = match (
                &self.edgex,
                crate::edgex::grants::grants_from_offer(&l.terms.devices),
            ) {
                (Some(w), Ok(grants)) if !grants.is_empty() => w
                    .open_bridge(&l, grants, record.init.pid)
                    .map_err(|e| log::error!("lease {}: {e}", l.id))
                    .ok(),
                _ => None,
            };
            // Checked again under the policy of its deploy (a command
            // changes new leases only); a lease deployed before that was
            // kept, under the wider of the board's and the operator's now.
            let deployed: Option<u8> = self
                .backend_names
                .get(backends::policy_key(&l.id.0))
                .ok()
                .flatten();
            let policy = deployed
                .and_then(backends::policy_of_code)
                .unwrap_or_else(|| {
                    let now = self.settings().backends.value;
                    backends::wider(self.board.agent.backends, now)
                });
            let forwards = reopen_backends(&self.backend_names, &l, policy, record.init.pid);
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    l.id,
                    Deployed {
                        container: name,
                        bridge,
                        forwards,
                    },
                );
        }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    fn seller(&self) -> Result<TxSender<'_>> {
        // The nonce tree opens every time: cheap, and no borrow to keep.
        let nonces = self.store.tree("nonces").map_err(Error::Store)?;
        Ok(TxSender::new(
            &self.rpc,
            &self.signer,
            self.d.chain_id,
            nonces,
            self.tx_policy.clone(),
        ))
    }

    /// Runs `f` with an executor whose chain hands send as the gateway and
    /// that carries out every effect itself.
    fn with_executor<R>(&self, f: impl FnOnce(&Executor<'_>) -> R) -> Result<R> {
        self.executor(None, f)
    }

    fn executor<R>(
        &self,
        defer: Option<&ChainQueue>,
        f: impl FnOnce(&Executor<'_>) -> R,
    ) -> Result<R> {
        let hands = MarketHands {
            rpc: &self.rpc,
            deployment: &self.d,
            receiver: &self.receiver,
            rules: &self.rules,
            seller: self.seller()?,
            lock: &self.chain,
        };
        Ok(f(&Executor {
            book: &self.book,
            runtime: &self.runtime,
            running: &self.running,
            chain: &hands,
            defer,
        }))
    }

    /// Serves buyers on `listener` until the returned server is dropped.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> TcpServer {
        let me = self.clone();
        endpoint::serve(
            listener,
            self.signer.clone(),
            self.d.chain_id,
            Arc::new(move |peer, body| me.handle(peer, body)),
        )
    }

    /// The answer to one message from `peer`.
    pub fn handle(&self, peer: Address, body: Body) -> Option<Body> {
        let now = UnixTime::now();
        let answer = match body {
            Body::Offer { terms, signature } => self.with_executor(|exec| {
                OfferDesk {
                    exec,
                    policy: &self.policy,
                    catalogue: &self.catalogue,
                    rpc: &self.rpc,
                    deployment: &self.d,
                    admission: &self.admission,
                }
                .take(peer, &terms, &signature, now)
            }),
            Body::ChannelProof { lease, channel } => {
                Ok(self
                    .payments()
                    .channel_proof(peer, LeaseId(lease), ChannelId(channel), now))
            }
            Body::Payment {
                lease,
                channel,
                amount,
                signature,
            } => Ok(self.payments().payment(
                peer,
                LeaseId(lease),
                ChannelId(channel),
                amount,
                signature,
                now,
            )),
            Body::Deploy {
                lease,
                image_cid,
                manifest_digest,
                backends,
            } => self.with_executor(|exec| {
                let lease = LeaseId(lease);
                let deployer = Deployer {
                    exec,
                    fetcher: &self.fetcher,
                    images: &self.images,
                    platform: self.platform.clone(),
                    incoming: self.data.join("incoming"),
                    edgex: self.edgex.as_ref(),
                    backends: self.settings().backends.value,
                    wiring: &self.backend_names,
                };
                match deployer.deploy(peer, lease, &image_cid, &manifest_digest, &backends, now) {
                    Ok(d) => {
                        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                        running.insert(lease, d);
                        // Ended between its start and here: its teardown
                        // found nothing to close, so close it now.
                        let live = self
                            .book
                            .get(&lease)
                            .ok()
                            .flatten()
                            .is_some_and(|l| matches!(l.state, State::Running | State::Frozen));
                        if !live {
                            running.remove(&lease);
                        }
                        drop(running);
                        self.status(peer, lease)
                    }
                    Err(message) => Body::Error { message },
                }
            }),
            Body::Status { lease, .. } => Ok(self.status(peer, LeaseId(lease))),
            Body::Account { lease, .. } => Ok(self.account(peer, LeaseId(lease))),
            Body::Logs {
                lease,
                stream,
                offset,
                ..
            } => Ok(self.logs(peer, LeaseId(lease), stream, offset)),
            Body::Terminate { lease, reason } => self.terminate(peer, LeaseId(lease), &reason),
            other => Ok(Body::Error {
                message: format!("a gateway does not take {}", other.name()),
            }),
        };
        Some(answer.unwrap_or_else(|e| Body::Error {
            message: logger::chain(&e),
        }))
    }

    fn payments(&self) -> PaymentDesk<'_> {
        PaymentDesk {
            book: &self.book,
            receiver: &self.receiver,
            rpc: &self.rpc,
            deployment: &self.d,
            gateway: self.signer.address(),
        }
    }

    fn status(&self, peer: Address, lease: LeaseId) -> Body {
        match self.book.of_buyer(&lease, peer) {
            Ok(l) => Body::Status {
                lease: lease.0,
                state: l.state.name().into(),
                detail: format!(
                    "paid {} of {} owed{}{}",
                    l.paid.wei(),
                    owed(&l, UnixTime::now()).wei(),
                    self.usage_text(&l.id.to_string()),
                    l.reason.map(|r| format!("; {r}")).unwrap_or_default()
                ),
            },
            Err(e) => Body::Error {
                message: e.to_string(),
            },
        }
    }

    /// What the buyer's payer and invoice need, as numbers.
    fn account(&self, peer: Address, lease: LeaseId) -> Body {
        let l = match self.book.of_buyer(&lease, peer) {
            Ok(l) => l,
            Err(e) => {
                return Body::Error {
                    message: e.to_string(),
                };
            }
        };
        let now = UnixTime::now();
        let edgex = self
            .edgex
            .as_ref()
            .and_then(|w| w.meter.usage(&l.id.to_string()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(device, u)| crate::p2p::DeviceUse {
                device,
                reads: u.reads,
                writes: u.writes,
                bytes_in: u.bytes_in,
                bytes_out: u.bytes_out,
                refused: u.refused,
            })
            .collect();
        Body::Account {
            lease: lease.0,
            paid: U256::from(l.paid.wei()).to_be_bytes(),
            owed: U256::from(owed(&l, now).wei()).to_be_bytes(),
            ran: super::machine::ran(&l, now),
            edgex,
        }
    }

    /// The lease's EdgeX use, per device (what its invoice lists).
    fn usage(&self, lease_hex: &str) -> serde_json::Value {
        let Some(w) = &self.edgex else {
            return serde_json::json!({});
        };
        match w.meter.usage(lease_hex) {
            Ok(u) => serde_json::Value::Object(
                u.into_iter()
                    .map(|(device, u)| {
                        (
                            device,
                            serde_json::json!({"reads": u.reads, "writes": u.writes,
                                "bytes_in": u.bytes_in, "bytes_out": u.bytes_out,
                                "refused": u.refused}),
                        )
                    })
                    .collect(),
            ),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    }

    fn usage_text(&self, lease_hex: &str) -> String {
        let Some(w) = &self.edgex else {
            return String::new();
        };
        let Ok(usage) = w.meter.usage(lease_hex) else {
            return String::new();
        };
        usage
            .iter()
            .filter(|(d, _)| d.as_str() != crate::edgex::meter::NO_DEVICE)
            .map(|(d, u)| format!("; {d}: {} reads, {} writes", u.reads, u.writes))
            .collect()
    }

    fn logs(&self, peer: Address, lease: LeaseId, stream: u8, offset: u64) -> Body {
        if let Err(e) = self.book.of_buyer(&lease, peer) {
            return Body::Error {
                message: e.to_string(),
            };
        }
        let (out, err) = match self.runtime.logs(&container_id(&lease)) {
            Ok(l) => l,
            Err(e) => {
                return Body::Error {
                    message: format!("logs: {e}"),
                };
            }
        };
        let all = if stream == 2 { err } else { out };
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let to = all.len().min(from + LOG_CHUNK);
        Body::Logs {
            lease: lease.0,
            stream,
            offset,
            data: all[from..to].to_vec(),
        }
    }

    /// The buyer ends its lease: the container goes at once, then the
    /// chain steps run as far as they can now (the rest on later ticks).
    fn terminate(&self, peer: Address, lease: LeaseId, reason: &str) -> Result<Body> {
        self.book.of_buyer(&lease, peer)?;
        let event = Event::Terminate(logger::untrusted(reason, MAX_REASON));
        self.with_executor(|exec| exec.feed(&lease, &event, UnixTime::now()))??;
        Ok(self.status(peer, lease))
    }

    /// Once a second: every lease's tick, its container effects carried
    /// out here and its chain effects left to the chain worker (`run`).
    pub fn tick(&self) {
        let now = UnixTime::now();
        self.prune(now);
        let ran = self.executor(Some(&self.queue), |exec| exec.tick(now));
        if let Err(e) = ran {
            log::error!("tick: {}", logger::chain(&e));
        }
    }

    /// Every `PRUNE_EVERY`, ended leases out of the hot tree the tick reads.
    fn prune(&self, now: UnixTime) {
        const PRUNE_EVERY: u64 = 600;
        let mut last = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        if now.since(last.0) < PRUNE_EVERY {
            return;
        }
        last.0 = now;
        match self.book.prune(now) {
            Ok(0) => {}
            Ok(n) => log::info!("{n} ended leases moved out of the live book"),
            Err(e) => log::error!("lease book: {}", logger::chain(&e)),
        }
        match self.book.all_ended() {
            Ok(ended) => last.1 = ended.iter().map(|l| l.paid.wei()).sum(),
            Err(e) => log::error!("lease book: {}", logger::chain(&e)),
        }
    }

    /// What `dedge agent status` shows: each lease, the resources held
    /// and free, and earnings (what leases have been paid).
    pub fn snapshot(&self) -> serde_json::Value {
        let now = UnixTime::now();
        let leases = self.book.all().unwrap_or_default();
        let held: Vec<_> = leases.iter().filter(|l| l.holds_resources()).collect();
        let sum = |f: fn(&Lease) -> u64| held.iter().map(|l| f(l)).sum::<u64>();
        let ended = self.pruned.lock().unwrap_or_else(|p| p.into_inner()).1;
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A drain is over once no lease holds anything.
        let selling = match settings.selling.value {
            Selling::Draining if held.is_empty() => "drained",
            s => s.name(),
        };
        let earned: u128 = ended + leases.iter().map(|l| l.paid.wei()).sum::<u128>();
        serde_json::json!({
            "gateway": self.signer.address(),
            "time": now.0,
            "resources": {
                "cpu_millicores": {"held": sum(|l| u64::from(l.terms.cpu_millicores)), "of": policy.cpu_millicores},
                "memory": {"held": sum(|l| l.terms.memory_bytes), "of": policy.memory},
                "disk": {"held": sum(|l| l.terms.disk_bytes), "of": policy.disk},
                "leases": {"held": held.len(), "of": policy.max_leases},
            },
            "earned": earned.to_string(),
            "selling": selling,
            "config": settings.to_json(),
            "commands": self.controller.recent(10).iter().map(|r| serde_json::json!({
                "seq": r.seq,
                "command": r.command,
                "operator": r.operator,
                "block": r.block,
                "outcome": r.outcome.name(),
                "detail": r.detail,
                "pending": r.todo.is_some(),
                "suspended": r.suspended,
                "taken_ms": r.taken_ms,
            })).collect::<Vec<_>>(),
            "leases": leases.iter().map(|l| serde_json::json!({
                "lease": l.id.to_string(),
                "buyer": l.terms.buyer(),
                "state": l.state.name(),
                "since": l.since.0,
                "paid": l.paid.wei().to_string(),
                "owed": owed(l, now).wei().to_string(),
                "edgex": self.usage(&l.id.to_string()),
                "reason": l.reason,
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes the snapshot to `<data_dir>/agent-status.json` atomically
    /// (the state database is the running agent's alone).
    fn write_status(&self) {
        let path = self.data.join("agent-status.json");
        let tmp = self.data.join("agent-status.json.tmp");
        let text = self.snapshot().to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            log::warn!("{}: {e}", path.display());
        }
    }

    /// Keeps the gateway's advert live and true to what it sells
    /// (`advert`); each check at most every few minutes.
    fn keep_advertised(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        // Taken before what is sold is read: a change after this read sets
        // it again for the next step.
        let stale = self.advert_stale.swap(false, SeqCst);
        let settings = self.settings();
        let mut caps = Capabilities::from_settings(&self.board, &settings);
        let open = settings.selling.value == Selling::Open;
        if self.edgex.is_some() {
            caps.devices = self
                .catalogue
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .offers();
        }
        let _chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let tx = match self.seller() {
            Ok(t) => t,
            Err(e) => return log::error!("advert: {e}"),
        };
        let mut advertiser = self.advertiser.lock().unwrap_or_else(|p| p.into_inner());
        if stale {
            advertiser.check_now();
        }
        advertiser.step(&tx, &self.rpc, &self.d, &caps, open);
    }

    /// Reads and takes the operator's new commands, then reports the next
    /// outcome not yet on chain. Errors are logged; the next call retries
    /// from where the records and the cursor are.
    fn follow_commands(&self) {
        let mut follower = self.follower.lock().unwrap_or_else(|p| p.into_inner());
        if follower.is_none() {
            match self.command_follower() {
                Ok(f) => *follower = Some(f),
                Err(e) => return log::warn!("commands: {}", logger::chain(&e)),
            }
        }
        let Some(f) = follower.as_ref() else { return };
        // Idle, one call a poll: nothing is read again until a new block,
        // unless the last round left something to do.
        let head = match self
            .rpc
            .call::<alloy_primitives::U64>("eth_blockNumber", serde_json::json!([]))
        {
            Ok(h) => h.to::<u64>(),
            Err(e) => return log::warn!("commands: {}", logger::chain(&e)),
        };
        let mut idle = self.command_idle.lock().unwrap_or_else(|p| p.into_inner());
        if *idle == Some(head) {
            return;
        }
        *idle = None;
        // No offer is admitted while a command is decided and put in
        // force: a capacity check sees every lease, and an offer after a
        // pause sees the pause.
        let followed = self.controller.follow(f, &self.rpc, self, &self.admission);
        let caught_up = f
            .cursor()
            .ok()
            .flatten()
            .is_some_and(|c| c.next > head.saturating_sub(self.confirmations));
        drop(follower);
        let clean = match followed {
            Ok(clean) => clean && caught_up,
            Err(e) => {
                log::warn!("commands: {}", logger::chain(&e));
                false
            }
        };
        let _chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let sent = self.seller().map_err(|e| e.to_string()).and_then(|tx| {
            self.controller
                .report_next(&tx)
                .map_err(|e| logger::chain(&e))
        });
        match sent {
            // Nothing more to report and nothing left to read: idle until
            // the next block.
            Ok(false) if clean => *idle = Some(head),
            Ok(_) => {}
            Err(e) => log::warn!("commands: report: {e}"),
        }
    }

    /// The follower of this gateway's commands. With no cursor stored yet:
    /// from the current block if no command was ever posted for it, else
    /// from the chain's start (commands posted before its first run).
    fn command_follower(&self) -> std::result::Result<Follower, crate::chain::Error> {
        let cursors = self
            .store
            .tree("cursors")
            .map_err(crate::chain::Error::Store)?;
        let posted: u64 = crate::chain::tx::view(
            &self.rpc,
            self.d.control,
            &crate::chain::bindings::IAgentControl::sequenceCall {
                gateway: self.address(),
            },
        )?;
        let start = if posted == 0 {
            let head: alloy_primitives::U64 =
                self.rpc.call("eth_blockNumber", serde_json::json!([]))?;
            head.to::<u64>().saturating_sub(self.confirmations)
        } else {
            0
        };
        commands::follower(
            cursors,
            &format!("control-{:x}", self.d.control),
            &self.d,
            self.address(),
            start,
            self.confirmations,
        )
    }

    /// The configuration in force now.
    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts the configuration `overlay` makes in force.
    fn configure(&self, overlay: &Overlay) {
        let s = Settings::new(&self.board, overlay);
        let old_devices = {
            let mut cur = self.settings.write().unwrap_or_else(|p| p.into_inner());
            let old = cur.devices.value.clone();
            *cur = s.clone();
            old
        };
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) =
            Policy::new(&self.board, &s, self.address());
        if s.log_level.from.is_some() || std::env::var_os("DEDGE_LOG").is_none() {
            log::set_max_level(s.log_level.value);
        }
        if let Some(r) = self
            .refresher
            .as_ref()
            .filter(|_| old_devices != s.devices.value)
        {
            if let Err(e) = r.set_offers(s.board_devices()) {
                log::warn!("edgex catalogue: {e}; the new offers are read at the next refresh");
            }
        }
        self.advert_stale
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `tick` every `every` until `stop` is set or the state
    /// database fails a sync, the chain worker that carries out the ticks'
    /// chain effects, and keeps the gateway advertised, each from a thread
    /// of its own (a node may hang for its timeout and an advert wait
    /// minutes for its receipt; enforcement must not).
    pub fn run(&self, stop: &std::sync::atomic::AtomicBool, every: Duration) {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        // After a failed sync nothing can be recorded, so nothing may be
        // done: the agent stops, and its restart recovers what is on disk.
        // The tick loop decides; the other threads follow `halt`.
        let halt = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // The worker's executor needs the nonce tree: if it cannot
                // be had now, again in a second, never given up.
                while !halt.load(SeqCst) {
                    match self.with_executor(|exec| self.queue.work(exec, &halt)) {
                        Ok(()) => break,
                        Err(e) => log::error!("chain worker: {}", logger::chain(&e)),
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            s.spawn(|| {
                while !halt.load(SeqCst) {
                    self.keep_advertised();
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
            s.spawn(|| {
                while !halt.load(SeqCst) {
                    self.follow_commands();
                    std::thread::sleep(COMMAND_POLL);
                }
            });
            while !stop.load(SeqCst) {
                if self.store.failed() {
                    log::error!("the state database failed to sync: stopping");
                    break;
                }
                self.tick();
                self.write_status();
                std::thread::sleep(every);
            }
            halt.store(true, SeqCst);
        });
    }

    /// True once the state database failed a sync: `run` has returned
    /// and the agent must exit for a restart.
    pub(crate) fn store_failed(&self) -> bool {
        self.store.failed()
    }
}

impl Effects for Agent {
    fn held(&self) -> std::result::Result<Leased, String> {
        let leases = self.book.all().map_err(|e| logger::chain(&e))?;
        let held: Vec<&Lease> = leases.iter().filter(|l| l.holds_resources()).collect();
        let mut granted = Vec::new();
        for l in &held {
            // A lease's devices were checked at its admission.
            let grants = crate::edgex::grants::grants_from_offer(&l.terms.devices)
                .map_err(|e| e.to_string())?;
            for (device, g) in grants {
                let modes = g.read.iter().map(|c| (c, false));
                granted.extend(
                    modes
                        .chain(g.write.iter().map(|c| (c, true)))
                        .map(|(c, write)| Sold {
                            device: device.clone(),
                            command: c.clone(),
                            write,
                        }),
                );
            }
        }
        let sum = |f: fn(&Lease) -> u64| held.iter().map(|l| f(l)).sum::<u64>();
        Ok(Leased {
            held: Held {
                cpu_millicores: sum(|l| u64::from(l.terms.cpu_millicores)),
                memory: sum(|l| l.terms.memory_bytes),
                disk: sum(|l| l.terms.disk_bytes),
                leases: held.len() as u64,
            },
            sold: granted,
        })
    }

    fn devices(&self, overlay: &Overlay) -> Vec<DeviceSale> {
        Settings::new(&self.board, overlay).devices.value
    }

    fn has_edgex(&self) -> bool {
        self.board.edgex.is_some()
    }

    fn ceiling(&self) -> Capacity {
        board_capacity(&self.board)
    }

    fn check_devices(
        &self,
        add: &[DeviceSale],
    ) -> std::result::Result<std::result::Result<(), String>, String> {
        let Some(r) = &self.refresher else {
            return Ok(Err("this board sells no EdgeX devices".into()));
        };
        let offers: Vec<crate::board::Device> = add
            .iter()
            .map(|d| crate::board::Device {
                name: d.name.clone(),
                read: d.read.clone(),
                write: d.write.clone(),
            })
            .collect();
        r.check(&offers)
    }

    fn check_configuration(
        &self,
        overlay: &Overlay,
    ) -> std::result::Result<std::result::Result<(), String>, String> {
        let settings = Settings::new(&self.board, overlay);
        let mut caps = Capabilities::from_settings(&self.board, &settings);
        // The advert lists what EdgeX serves, with its detail (profiles,
        // value types): measured as it will be sent.
        if let Some(r) = &self.refresher {
            caps.devices = r.detailed(&settings.board_devices())?;
        }
        Ok(crate::market::check_advert(&caps)
            .map(|_| ())
            .map_err(|e| e.to_string()))
    }

    fn device_priced(&self, overlay: &Overlay) -> bool {
        Settings::new(&self.board, overlay)
            .prices
            .value
            .device_second
            .is_some()
    }

    fn evict(&self, lease: [u8; 32], reason: &str) -> std::result::Result<bool, String> {
        let id = LeaseId(lease);
        let Some(l) = self.book.get(&id).map_err(|e| logger::chain(&e))? else {
            return Ok(false);
        };
        match l.state {
            State::Offered | State::Accepting => {
                return Err(format!(
                    "lease {id} is still being accepted; evict it again once it runs"
                ));
            }
            // Ended by this eviction before a restart cut its record short.
            _ if l.reason.as_deref() == Some(&format!("{EVICTED}{reason}")) => return Ok(true),
            s if s.is_terminal() || s == State::Terminating => return Ok(false),
            _ => {}
        }
        // Only the lease's step, durable: the tick carries out what follows
        // (the container down, then the chain's steps on the chain worker),
        // so no offer waits on a teardown or a node here.
        self.book
            .apply(&id, &Event::Evict(reason.to_string()), UnixTime::now())
            .map_err(|e| logger::chain(&e))?;
        Ok(true)
    }

    fn configure(&self, overlay: &Overlay) {
        Agent::configure(self, overlay)
    }
}

/// A re-attached lease's backend ports, opened again (checked again: the
/// board may have changed; a refused or failed one is logged and left out).
fn reopen_backends(
    names: &Tree,
    l: &Lease,
    policy: BackendPolicy,
    pid: i32,
) -> Vec<crate::runtime::net::Forward> {
    let requested: Vec<String> = names.get(l.id.0).ok().flatten().unwrap_or_default();
    match backends::check(&requested, policy).and_then(|b| backends::open(pid, &b)) {
        Ok(f) => f,
        Err(e) => {
            log::error!("lease {}: {e}", l.id);
            Vec::new()
        }
    }
}

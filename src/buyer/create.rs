//! `dedge lease create`, one step per function, in the order the protocol
//! runs them (docs/PROTOCOL.md §6): the gateway's advert, the image (made
//! ready and published), the offer on chain, the offer sent and accepted,
//! the fee, the channel (reused or opened), its proof, one interval paid
//! ahead, the deploy. The lease's record is written as soon as it has an
//! id and updated after each step, so a failure leaves a record that says
//! where it stopped.

use std::path::{Path, PathBuf};

use alloy_primitives::{B256, U256};

use super::link::{self, Link};
use super::offer::{self, Request};
use super::pay;
use super::record::{self, LeaseRecord};
use super::wallet::{self, Channel};
use super::{Buyer, Error, Result, chain};
use crate::chain::eip712;
use crate::channel::onchain;
use crate::ipfs::publish::{check_image, dag_import, write_car};
use crate::ipfs::unixfs::Options;
use crate::market::{self, Capabilities};
use crate::p2p::{Body, OfferTerms};
use crate::runtime::image::{ImageStore, Limits, Platform};

/// The image a lease runs.
pub enum ImageSource {
    /// Already on IPFS: its CID and its OCI manifest digest.
    Published { cid: String, manifest: String },
    /// An OCI layout (directory or tar) or docker-save archive, published
    /// to the Kubo-compatible RPC at `api`.
    Local { path: PathBuf, api: String },
}

/// What the buyer is told as the lease comes up.
pub enum Step<'a> {
    /// A step done, in words.
    Done(&'a str),
    /// Bytes of the image uploaded so far, of a total.
    Upload(u64, u64),
}

pub struct Created {
    pub record: LeaseRecord,
    pub channel: Channel,
}

/// Takes a lease from nothing to a running container.
pub fn create(
    buyer: &Buyer,
    req: &Request,
    image: &ImageSource,
    deposit: Option<u128>,
    tell: &mut dyn FnMut(Step),
) -> Result<Created> {
    let (endpoint, caps) = link::advert(buyer, req.gateway)?;
    tell(Step::Done(&format!(
        "gateway {} at {endpoint}: {} ({}), up to {} cores",
        req.gateway,
        caps.model,
        caps.platform,
        f64::from(caps.cpu_millicores) / 1000.0
    )));
    let (cid, manifest) = ready_image(buyer, image, &caps, tell)?;
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| Error::Request(e.to_string()))?;
    let offer = offer::build(
        req,
        &caps,
        buyer.signer.address(),
        &cid,
        pay::now(),
        u64::from_be_bytes(nonce),
    )?;
    let lease = propose(buyer, &offer, &endpoint, &manifest, &req.backends, tell)?;
    let result = bring_up(buyer, &offer, lease, &endpoint, &manifest, deposit, tell);
    if let Err(e) = &result {
        let _ = record::set_state(&buyer.data, lease, "failed", Some(e.to_string()));
        // A lease that got its fee holds the gateway's capacity and the
        // fee until it ends: end it now, both sides, rather than leave it.
        let funded = super::market_state(buyer, lease).is_ok_and(|s| s >= 3);
        if funded {
            tell(Step::Done(&format!("ending lease {lease}: {e}")));
            let why = format!("create failed: {e}");
            if let Err(end) =
                super::end::terminate(buyer, lease, &why, &mut |l| tell(Step::Done(l)))
            {
                tell(Step::Done(&format!(
                    "could not end it ({end}); run `dedge lease terminate {lease}`"
                )));
            }
        }
    }
    result
}

fn bring_up(
    buyer: &Buyer,
    offer: &eip712::Offer,
    lease: B256,
    endpoint: &str,
    manifest: &str,
    deposit: Option<u128>,
    tell: &mut dyn FnMut(Step),
) -> Result<Created> {
    let mut link = Link::connect(buyer, offer.gateway, endpoint)?;
    send_offer(buyer, &mut link, offer, lease)?;
    record::set_state(&buyer.data, lease, "accepted", None)?;
    tell(Step::Done("the gateway accepted the offer on chain"));
    market::deposit_fee(&buyer.tx()?, &buyer.d, lease).map_err(chain)?;
    record::set_state(&buyer.data, lease, "funded", None)?;
    tell(Step::Done("platform fee escrowed in the market"));
    let mut r = record::load(&buyer.data, lease)?;
    let channel = choose_channel(buyer, &r, deposit, tell)?;
    channel.assign(lease)?;
    r.channel = Some(channel.info.id);
    r.state = "channel chosen".into();
    record::save(&buyer.data, &r)?;
    prove_channel(&mut link, lease, channel.info.id)?;
    record::set_state(&buyer.data, lease, "channel proven", None)?;
    tell(Step::Done("the gateway verified the channel on chain"));
    let ahead = pay::round(&mut link, &channel, &r)?;
    tell(Step::Done(&format!(
        "paid {} ahead (one payment interval)",
        crate::units::Edg(ahead)
    )));
    deploy(&mut link, &r, manifest)?;
    r.state = "running".into();
    record::save(&buyer.data, &r)?;
    tell(Step::Done("the container is running"));
    Ok(Created { record: r, channel })
}

/// The image's CID and manifest digest; a local image is checked (every
/// digest, and a manifest for the gateway's platform) and published first.
fn ready_image(
    buyer: &Buyer,
    image: &ImageSource,
    caps: &Capabilities,
    tell: &mut dyn FnMut(Step),
) -> Result<(String, String)> {
    let (path, api) = match image {
        ImageSource::Published { cid, manifest } => {
            let _: cid::Cid = cid
                .parse()
                .map_err(|e| Error::Request(format!("--image {cid}: not a CID: {e}")))?;
            crate::runtime::image::Digest::parse(manifest)
                .map_err(|e| Error::Request(format!("--manifest {manifest}: {e}")))?;
            return Ok((cid.clone(), manifest.clone()));
        }
        ImageSource::Local { path, api } => (path, api),
    };
    let img = |e: &dyn std::fmt::Display| Error::Image(format!("{}: {e}", path.display()));
    check_image(path).map_err(|e| img(&e))?;
    let manifest = manifest_for(buyer, path, caps)?;
    let scratch = buyer
        .data
        .join(format!("publish-{}.car", std::process::id()));
    let result = (|| {
        let root = write_car(path, &scratch, Options::default()).map_err(|e| img(&e))?;
        let size = std::fs::metadata(&scratch).map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = std::sync::mpsc::channel();
        let sent = std::thread::scope(|s| {
            let upload = s.spawn(|| {
                dag_import(api, &scratch, &root, move |done| {
                    let _ = tx.send(done);
                })
            });
            for done in rx {
                tell(Step::Upload(done, size));
            }
            upload.join()
        });
        sent.map_err(|_| Error::Image("the upload thread panicked".into()))?
            .map_err(|e| img(&e))?;
        Ok(root)
    })();
    let _ = std::fs::remove_file(&scratch);
    let root = result?;
    tell(Step::Done(&format!(
        "image {root} (manifest {manifest}) published to {api}"
    )));
    Ok((root.to_string(), manifest))
}

/// The digest of the manifest the gateway will run: the image is imported
/// into a scratch store, which verifies every blob and picks the
/// gateway's platform exactly as the agent will.
fn manifest_for(buyer: &Buyer, path: &Path, caps: &Capabilities) -> Result<String> {
    let platform = platform_of(caps)?;
    let dir = buyer
        .data
        .join(format!("image-check-{}", std::process::id()));
    let result = (|| {
        let store = crate::store::Store::temporary().map_err(|e| Error::Image(e.to_string()))?;
        let images = ImageStore::open(&dir, &store, Limits::default())
            .map_err(|e| Error::Image(e.to_string()))?;
        images
            .import(path, None, &platform, "lease")
            .map(|i| i.manifest.to_string())
            .map_err(|e| Error::Image(format!("{}: {e}", path.display())))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn platform_of(caps: &Capabilities) -> Result<Platform> {
    let arch = match caps.arch.as_str() {
        "aarch64" => crate::board::values::Arch::Aarch64,
        "armv7" => crate::board::values::Arch::Armv7,
        "x86_64" => crate::board::values::Arch::X86_64,
        other => {
            return Err(Error::Request(format!(
                "the gateway's architecture `{other}` is not one dEdge knows"
            )));
        }
    };
    Ok(Platform::of(arch))
}

/// The offer's hash on chain (`proposeOffer`): the lease id. The record
/// is written right after.
fn propose(
    buyer: &Buyer,
    offer: &eip712::Offer,
    endpoint: &str,
    manifest: &str,
    backends: &[String],
    tell: &mut dyn FnMut(Step),
) -> Result<B256> {
    let lease = market::propose(&buyer.tx()?, &buyer.d, offer).map_err(chain)?;
    record::save(
        &buyer.data,
        &LeaseRecord {
            lease,
            gateway: offer.gateway,
            endpoint: endpoint.into(),
            channel: None,
            image: offer.image.clone(),
            manifest: manifest.into(),
            price_per_second: offer.pricePerSecond.to_string(),
            payment_interval: u64::from(offer.paymentInterval),
            max_duration: u64::from(offer.maxDuration),
            devices: offer.devices.clone(),
            backends: backends.to_vec(),
            created: pay::now(),
            state: "proposed".into(),
            reason: None,
        },
    )?;
    tell(Step::Done(&format!(
        "offer on chain: lease {lease} at {} per second",
        crate::units::Edg(offer.pricePerSecond.to::<u128>())
    )));
    Ok(lease)
}

fn send_offer(buyer: &Buyer, link: &mut Link, offer: &eip712::Offer, lease: B256) -> Result<()> {
    let digest = eip712::offer_hash(
        offer,
        &eip712::market_domain(buyer.d.chain_id, buyer.d.market),
    );
    let signature = buyer
        .signer
        .sign_hash(&digest)
        .map_err(|e| Error::Request(e.to_string()))?
        .as_bytes()
        .to_vec();
    let decided = until_decided(
        || {
            link.ask(Body::Offer {
                terms: OfferTerms::from(offer),
                signature: signature.clone(),
            })
        },
        lease,
        OFFER_PENDING,
        OFFER_RETRY,
    )?;
    decided.map_err(|other| link.unexpected(&other, "OfferAccepted"))
}

/// Asks until the gateway decides on the offer: an accept sent but not
/// yet confirmed is asked about again every `retry` for up to `patience`
/// (the same offer never makes the gateway send a second accept). An
/// answer that is no decision on this lease comes back as it is.
fn until_decided(
    mut ask: impl FnMut() -> Result<Body>,
    lease: B256,
    patience: std::time::Duration,
    retry: std::time::Duration,
) -> Result<std::result::Result<(), Body>> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        match ask()? {
            Body::OfferAccepted { lease: id } if id == lease.0 => return Ok(Ok(())),
            Body::OfferRefused { reason, .. } => return Err(Error::Refused(reason)),
            Body::OfferPending { lease: id, .. }
                if id == lease.0 && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(retry);
            }
            other => return Ok(Err(other)),
        }
    }
}

/// How long the buyer keeps asking about an offer whose accept is pending
/// on chain, and how often.
const OFFER_PENDING: std::time::Duration = std::time::Duration::from_secs(600);
const OFFER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// A channel to the gateway with room for the whole lease: one of the
/// buyer's whose leases are all finished and that no other process holds,
/// or a new one with `deposit` (default: the lease's most).
fn choose_channel(
    buyer: &Buyer,
    r: &LeaseRecord,
    deposit: Option<u128>,
    tell: &mut dyn FnMut(Step),
) -> Result<Channel> {
    let need = U256::from(r.max_cost());
    let records = record::all(&buyer.data)?;
    let in_use = |id: B256| {
        records
            .iter()
            .any(|o| o.lease != r.lease && o.channel == Some(id) && !o.is_finished())
    };
    for id in wallet::known(&buyer.data) {
        if in_use(id) {
            continue;
        }
        let Ok(ch) = Channel::reopen(buyer, id) else {
            continue; // busy or unreadable: not this one
        };
        if ch.info.receiver != r.gateway || ch.remaining()? < need || !open_on_chain(buyer, id) {
            continue;
        }
        tell(Step::Done(&format!(
            "reusing channel {id} ({} left)",
            crate::units::Edg(ch.remaining()?.to::<u128>())
        )));
        return Ok(ch);
    }
    let deposit = U256::from(deposit.unwrap_or(r.max_cost()));
    if deposit < need {
        return Err(Error::Request(format!(
            "--deposit {}: the lease may cost up to {}",
            crate::units::Edg(deposit.to::<u128>()),
            crate::units::Edg(r.max_cost())
        )));
    }
    let info = onchain::open(&buyer.tx()?, &buyer.d, r.gateway, deposit).map_err(chain)?;
    tell(Step::Done(&format!(
        "channel {} opened with {}",
        info.id,
        crate::units::Edg(deposit.to::<u128>())
    )));
    Channel::open(buyer, info)
}

fn open_on_chain(buyer: &Buyer, id: B256) -> bool {
    use crate::chain::bindings::IChannelManager;
    crate::chain::tx::view::<_>(
        &buyer.rpc,
        buyer.d.channels,
        &IChannelManager::channelOfCall { channelId: id },
    )
    .map(|c: IChannelManager::Channel| c.settleAfter.is_zero() && !c.deposit.is_zero())
    .unwrap_or(false)
}

fn prove_channel(link: &mut Link, lease: B256, channel: B256) -> Result<()> {
    match link.ask(Body::ChannelProof {
        lease: lease.0,
        channel: channel.0,
    })? {
        Body::Status { state, .. } if state == "channel proven" => Ok(()),
        Body::Status { state, detail, .. } => Err(Error::Refused(format!(
            "the channel left the lease {state}: {detail}"
        ))),
        other => Err(link.unexpected(&other, "Status")),
    }
}

fn deploy(link: &mut Link, r: &LeaseRecord, manifest: &str) -> Result<()> {
    link.patience(super::link::DEPLOY_ANSWER)?;
    match link.ask(Body::Deploy {
        lease: r.lease.0,
        image_cid: r.image.clone(),
        manifest_digest: manifest.into(),
        backends: r.backends.clone(),
    })? {
        Body::Status { state, .. } if state == "running" => Ok(()),
        Body::Status { state, detail, .. } => Err(Error::Refused(format!(
            "the deploy left the lease {state}: {detail}"
        ))),
        other => Err(link.unexpected(&other, "Status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scripted(
        answers: Vec<Body>,
    ) -> (
        impl FnMut() -> Result<Body>,
        std::rc::Rc<std::cell::Cell<usize>>,
    ) {
        let asked = std::rc::Rc::new(std::cell::Cell::new(0));
        let count = asked.clone();
        let mut answers = answers.into_iter();
        let ask = move || {
            count.set(count.get() + 1);
            Ok(answers.next().unwrap_or(Body::Error {
                message: "asked once too often".into(),
            }))
        };
        (ask, asked)
    }

    #[test]
    fn a_pending_offer_is_asked_about_again_until_decided() {
        let lease = B256::repeat_byte(7);
        let pending = || Body::OfferPending {
            lease: lease.0,
            detail: "mining".into(),
        };
        let (ask, asked) = scripted(vec![
            pending(),
            pending(),
            Body::OfferAccepted { lease: lease.0 },
        ]);
        let decided = until_decided(ask, lease, Duration::from_secs(60), Duration::ZERO).unwrap();
        assert!(decided.is_ok());
        assert_eq!(asked.get(), 3, "asked again after each pending answer");
        // Refused while pending: the reason comes back.
        let (ask, _) = scripted(vec![
            pending(),
            Body::OfferRefused {
                lease: lease.0,
                reason: "expired".into(),
            },
        ]);
        let err = until_decided(ask, lease, Duration::from_secs(60), Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        // Out of patience: the pending answer comes back, asked once.
        let (ask, asked) = scripted(vec![pending(), pending()]);
        let left = until_decided(ask, lease, Duration::ZERO, Duration::ZERO).unwrap();
        assert!(matches!(left, Err(Body::OfferPending { .. })));
        assert_eq!(asked.get(), 1);
        // Another lease's answer is not this one's decision.
        let (ask, _) = scripted(vec![Body::OfferAccepted { lease: [8; 32] }]);
        let other = until_decided(ask, lease, Duration::from_secs(60), Duration::ZERO).unwrap();
        assert!(matches!(other, Err(Body::OfferAccepted { .. })));
    }
}

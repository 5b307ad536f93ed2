//! The offer a buyer makes: what it asks for, checked against what the
//! gateway's capability document sells, priced at the gateway's prices
//! unless the buyer names its own.

use alloy_primitives::{Address, Uint};

use super::{Error, Result};
use crate::chain::eip712::Offer;
use crate::market::Capabilities;

#[derive(Debug, Clone)]
pub struct Request {
    pub gateway: Address,
    /// CPU cores, fractions allowed.
    pub cpus: f64,
    pub memory: u64,
    pub disk: u64,
    /// Seconds.
    pub duration: u64,
    /// Seconds between payments; the gateway's when `None`.
    pub interval: Option<u64>,
    /// `NAME:CMD[:r|w|rw]`.
    pub devices: Vec<String>,
    /// EDG base units per second; the gateway's prices when `None`.
    pub price: Option<u128>,
    /// Seconds the offer stays open.
    pub expiry: u64,
    /// `HOST:PORT` endpoints the container reaches on its loopback, through
    /// the agent (sent with the deploy; not part of the signed offer).
    pub backends: Vec<String>,
}

impl Request {
    pub fn new(gateway: Address) -> Request {
        Request {
            gateway,
            cpus: 0.5,
            memory: 64 << 20,
            disk: 256 << 20,
            duration: 3600,
            interval: None,
            devices: Vec::new(),
            price: None,
            expiry: 600,
            backends: Vec::new(),
        }
    }
}

/// `NAME:CMD[:MODE]` normalised to `NAME:CMD:MODE` (read when omitted).
fn device_grant(d: &str) -> Result<(String, String, String)> {
    let parts: Vec<&str> = d.split(':').collect();
    let (name, cmd, mode) = match parts.as_slice() {
        [n, c] => (*n, *c, "r"),
        [n, c, m @ ("r" | "w" | "rw")] => (*n, *c, *m),
        _ => {
            return Err(Error::Request(format!(
                "--device {d}: expected NAME:CMD[:r|w|rw]"
            )));
        }
    };
    if name.is_empty() || cmd.is_empty() {
        return Err(Error::Request(format!(
            "--device {d}: expected NAME:CMD[:r|w|rw]"
        )));
    }
    Ok((name.into(), cmd.into(), mode.into()))
}

/// The offer for `image` from `buyer`, or why the gateway cannot take it.
pub fn build(
    req: &Request,
    caps: &Capabilities,
    buyer: Address,
    image: &str,
    now: u64,
    nonce: u64,
) -> Result<Offer> {
    let cpus = req.cpus;
    // NaN and non-positive values fail the first test.
    if !cpus.is_finite() || cpus <= 0.0 || cpus * 1000.0 > f64::from(caps.cpu_millicores) {
        return Err(Error::Request(format!(
            "--cpus {cpus}: the gateway sells up to {}",
            f64::from(caps.cpu_millicores) / 1000.0
        )));
    }
    let millicores = (cpus * 1000.0).round() as u32;
    if req.memory == 0 || req.memory > caps.memory {
        return Err(Error::Request(format!(
            "--memory {} bytes: the gateway sells up to {}",
            req.memory, caps.memory
        )));
    }
    if req.disk > caps.disk {
        return Err(Error::Request(format!(
            "--disk {} bytes: the gateway sells up to {}",
            req.disk, caps.disk
        )));
    }
    if req.duration < caps.min_lease_s {
        return Err(Error::Request(format!(
            "--duration {} s: the gateway's shortest lease is {} s",
            req.duration, caps.min_lease_s
        )));
    }
    let mut devices = Vec::new();
    for d in &req.devices {
        let (name, cmd, mode) = device_grant(d)?;
        if !caps.sells(&name, Some(&cmd)) {
            return Err(Error::Request(format!(
                "--device {d}: the gateway does not sell it"
            )));
        }
        devices.push(format!("{name}:{cmd}:{mode}"));
    }
    let price = match req.price {
        Some(p) => p,
        None => caps.lease_price(millicores, req.memory, devices.len()),
    };
    let u32_of = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| Error::Request(format!("{what} is too long")))
    };
    Ok(Offer {
        buyer,
        gateway: req.gateway,
        cpuMillicores: millicores,
        memoryBytes: req.memory,
        diskBytes: req.disk,
        devices,
        pricePerSecond: Uint::try_from(price)
            .map_err(|_| Error::Request("--price is too large".into()))?,
        maxDuration: u32_of(req.duration, "--duration")?,
        paymentInterval: u32_of(
            req.interval.unwrap_or(caps.payment_interval_s),
            "--interval",
        )?,
        image: image.into(),
        expiry: Uint::from(now.saturating_add(req.expiry)),
        nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardFile;

    fn caps() -> Capabilities {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/dev-x86_64.toml");
        Capabilities::from_board(&BoardFile::load(&path).unwrap().board)
    }

    #[test]
    fn an_offer_is_priced_by_the_gateway_and_checked_against_what_it_sells() {
        let caps = caps();
        let mut req = Request::new(Address::repeat_byte(2));
        req.devices = vec!["Random-Integer-Device:Int8".into()];
        let o = build(&req, &caps, Address::repeat_byte(1), "QmX", 100, 7).unwrap();
        assert_eq!(o.cpuMillicores, 500);
        assert_eq!(o.devices, vec!["Random-Integer-Device:Int8:r"]);
        assert_eq!(
            o.pricePerSecond.to::<u128>(),
            caps.lease_price(500, 64 << 20, 1)
        );
        assert_eq!(u64::from(o.paymentInterval), caps.payment_interval_s);
        assert_eq!(o.expiry.to::<u64>(), 700);

        let refused = |edit: &dyn Fn(&mut Request), why: &str| {
            let mut r = req.clone();
            edit(&mut r);
            let e = build(&r, &caps, Address::ZERO, "QmX", 0, 0).unwrap_err();
            assert!(e.to_string().contains(why), "{e} lacks {why}");
        };
        refused(&|r| r.cpus = f64::NAN, "--cpus");
        refused(&|r| r.cpus = 0.0, "--cpus");
        refused(&|r| r.cpus = 64.0, "sells up to");
        refused(&|r| r.memory = u64::MAX, "--memory");
        refused(&|r| r.disk = u64::MAX, "--disk");
        refused(&|r| r.duration = 0, "shortest lease");
        refused(&|r| r.duration = u64::MAX, "too long");
        refused(&|r| r.devices = vec!["Nope:Int8".into()], "does not sell");
        refused(
            &|r| r.devices = vec!["Random-Integer-Device".into()],
            "NAME:CMD",
        );
        refused(&|r| r.devices = vec!["A:B:x".into()], "NAME:CMD");
        refused(&|r| r.price = Some(u128::MAX), "too large");
    }
}

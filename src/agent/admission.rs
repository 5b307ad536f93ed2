//! Whether the agent takes an offer: addressed to this gateway, not
//! expired, within the board's free capacity, for devices the catalogue
//! sells in the modes asked, paid often enough and at least at the board's
//! price. Each refusal says which rule and by how much, and goes back to
//! the buyer in `OfferRefused`.

use alloy_primitives::Address;

use super::lease::{Lease, Terms};
use crate::control::overlay::{Selling, Settings, Tenants};
use crate::edgex::catalogue::Catalogue;
use crate::edgex::grants::grants_from_offer;
use crate::market::capabilities::lease_price;
use crate::p2p::OfferTerms;

/// What the board offers, in the units offers use.
#[derive(Debug, Clone)]
pub struct Policy {
    pub gateway: Address,
    pub cpu_millicores: u32,
    pub memory: u64,
    pub disk: u64,
    pub max_leases: u32,
    cpu_core_second: u128,
    memory_gib_second: u128,
    device_second: Option<u128>,
    min_lease_s: u64,
    payment_interval_s: u64,
    /// Whether the operator lets the gateway take new leases.
    selling: Selling,
    tenants: Tenants,
}

impl Policy {
    /// The board alone, before any command.
    pub fn from_board(b: &crate::board::Board, gateway: Address) -> Policy {
        let none = crate::control::Overlay::default();
        Policy::new(b, &Settings::new(b, &none), gateway)
    }

    /// The board's `[pricing]` times, with what the operator's commands
    /// set (`settings`: capacity, prices, selling, tenants).
    pub fn new(b: &crate::board::Board, s: &Settings, gateway: Address) -> Policy {
        let p = &b.pricing;
        let (c, price) = (&s.capacity.value, &s.prices.value);
        Policy {
            gateway,
            cpu_millicores: c.cpu_millicores,
            memory: c.memory,
            disk: c.disk,
            max_leases: c.max_leases,
            cpu_core_second: price.cpu_core_second,
            memory_gib_second: price.memory_gib_second,
            device_second: price.device_second,
            min_lease_s: p.min_lease.get().as_secs(),
            payment_interval_s: p.payment_interval.get().as_secs(),
            selling: s.selling.value,
            tenants: s.tenants.value.clone(),
        }
    }
}

/// Takes the offer, or says why not.
pub(crate) fn admit(
    policy: &Policy,
    t: &OfferTerms,
    leases: &[Lease],
    catalogue: &Catalogue,
    now: u64,
) -> Result<(), String> {
    if Address::from(t.gateway) != policy.gateway {
        return Err(format!(
            "the offer is for gateway {}, this is {}",
            Address::from(t.gateway),
            policy.gateway
        ));
    }
    match policy.selling {
        Selling::Open => {}
        Selling::Paused => return Err("the gateway's operator paused it: no new leases".into()),
        Selling::Draining => {
            return Err("the gateway's operator is draining it: no new leases".into());
        }
    }
    if let Some(why) = policy.tenants.refuses(Address::from(t.buyer)) {
        return Err(why);
    }
    if t.expiry <= now {
        return Err(format!("the offer expired at {} (now {now})", t.expiry));
    }
    if t.cpu_millicores == 0 || t.memory_bytes == 0 {
        return Err("an offer must ask for some CPU and memory".into());
    }
    let held: Vec<&Lease> = leases.iter().filter(|l| l.holds_resources()).collect();
    if held.len() as u64 >= u64::from(policy.max_leases) {
        return Err(format!(
            "the gateway runs its maximum of {} leases",
            policy.max_leases
        ));
    }
    let used = |f: fn(&Terms) -> u64| held.iter().map(|l| f(&l.terms)).sum::<u64>();
    for (what, asked, used, total) in [
        (
            "CPU (millicores)",
            u64::from(t.cpu_millicores),
            used(|x| u64::from(x.cpu_millicores)),
            u64::from(policy.cpu_millicores),
        ),
        (
            "memory (bytes)",
            t.memory_bytes,
            used(|x| x.memory_bytes),
            policy.memory,
        ),
        (
            "disk (bytes)",
            t.disk_bytes,
            used(|x| x.disk_bytes),
            policy.disk,
        ),
    ] {
        let free = total.saturating_sub(used);
        if asked > free {
            return Err(format!("{what}: asked {asked}, {free} free of {total}"));
        }
    }
    if u64::from(t.max_duration) < policy.min_lease_s {
        return Err(format!(
            "a lease of {} s is shorter than this gateway's minimum of {} s",
            t.max_duration, policy.min_lease_s
        ));
    }
    if t.payment_interval == 0 || u64::from(t.payment_interval) > policy.payment_interval_s {
        return Err(format!(
            "payments every {} s: this gateway wants one at least every {} s",
            t.payment_interval, policy.payment_interval_s
        ));
    }
    if cid::Cid::try_from(t.image.as_str()).is_err() {
        return Err(format!("image `{}` is not a CID", t.image));
    }
    let grants = grants_from_offer(&t.devices).map_err(|e| e.to_string())?;
    if !grants.is_empty() && policy.device_second.is_none() {
        return Err("this gateway sells no EdgeX devices".into());
    }
    catalogue.check_grants(&grants)?;
    let devices = grants
        .values()
        .map(|g| g.read.union(&g.write).count())
        .sum();
    let floor = lease_price(
        policy.cpu_core_second,
        policy.memory_gib_second,
        policy.device_second.unwrap_or(0),
        t.cpu_millicores,
        t.memory_bytes,
        devices,
    );
    if t.price_per_second < floor {
        return Err(format!(
            "offered {} per second, these resources cost {floor}",
            t.price_per_second
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::agent::lease::{Lease, State, Terms, UnixTime};
    use crate::edgex::catalogue::{Command, OfferedDevice, Resource};
    use crate::edgex::value::ValueType;
    use crate::market::LeaseId;

    fn policy() -> Policy {
        Policy {
            gateway: Address::from([2; 20]),
            cpu_millicores: 1000,
            memory: 512 << 20,
            disk: 2 << 30,
            max_leases: 2,
            cpu_core_second: 100_000,
            memory_gib_second: 50_000,
            device_second: Some(10_000),
            min_lease_s: 60,
            payment_interval_s: 5,
            selling: Selling::Open,
            tenants: Tenants::default(),
        }
    }

    fn catalogue() -> Catalogue {
        let cmd = |read, write| Command {
            read,
            write,
            resources: vec![Resource {
                name: "Int8".into(),
                value_type: ValueType::Int(8),
                hidden: false,
            }],
        };
        let mut commands = BTreeMap::new();
        commands.insert("Int8".to_string(), cmd(true, true));
        commands.insert("Int16".to_string(), cmd(true, false));
        let mut c = Catalogue::default();
        c.devices.insert(
            "D".into(),
            OfferedDevice {
                name: "D".into(),
                profile: "P".into(),
                commands,
            },
        );
        c
    }

    fn offer() -> OfferTerms {
        OfferTerms {
            buyer: [1; 20],
            gateway: [2; 20],
            cpu_millicores: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 256 << 20,
            devices: vec!["D:Int8:rw".into()],
            // 50_000 + 3_125 + 10_000
            price_per_second: 63_125,
            max_duration: 3600,
            payment_interval: 5,
            image: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            expiry: 2_000,
            nonce: 1,
        }
    }

    fn held(cpu: u32) -> Lease {
        let mut l = Lease::offered(
            LeaseId([3; 32]),
            Terms::from(&OfferTerms {
                cpu_millicores: cpu,
                ..offer()
            }),
            UnixTime(0),
        );
        l.state = State::Running;
        l
    }

    #[test]
    fn a_fair_offer_is_taken_at_exactly_the_price() {
        admit(&policy(), &offer(), &[], &catalogue(), 1_000).unwrap();
        let cheap = OfferTerms {
            price_per_second: 63_124,
            ..offer()
        };
        let why = admit(&policy(), &cheap, &[], &catalogue(), 1_000).unwrap_err();
        assert!(why.contains("these resources cost 63125"), "{why}");
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let p = policy();
        let c = catalogue();
        let cases: Vec<(OfferTerms, Vec<Lease>, &str)> = vec![
            (
                OfferTerms {
                    gateway: [9; 20],
                    ..offer()
                },
                vec![],
                "is for gateway",
            ),
            (
                OfferTerms {
                    expiry: 1_000,
                    ..offer()
                },
                vec![],
                "expired",
            ),
            (
                OfferTerms {
                    cpu_millicores: 0,
                    ..offer()
                },
                vec![],
                "some CPU",
            ),
            (
                offer(),
                vec![held(600)],
                "CPU (millicores): asked 500, 400 free",
            ),
            (
                OfferTerms {
                    memory_bytes: 1 << 30,
                    ..offer()
                },
                vec![],
                "memory (bytes)",
            ),
            (
                OfferTerms {
                    disk_bytes: 3 << 30,
                    ..offer()
                },
                vec![],
                "disk (bytes)",
            ),
            (offer(), vec![held(100), held(100)], "maximum of 2 leases"),
            (
                OfferTerms {
                    max_duration: 30,
                    ..offer()
                },
                vec![],
                "shorter than",
            ),
            (
                OfferTerms {
                    payment_interval: 60,
                    ..offer()
                },
                vec![],
                "at least every 5 s",
            ),
            (
                OfferTerms {
                    image: "latest".into(),
                    ..offer()
                },
                vec![],
                "not a CID",
            ),
            (
                OfferTerms {
                    devices: vec!["D:Int16:w".into()],
                    ..offer()
                },
                vec![],
                "D:Int16 is not sold for writing",
            ),
            (
                OfferTerms {
                    devices: vec!["E:Int8:r".into()],
                    ..offer()
                },
                vec![],
                "E:Int8 is not sold",
            ),
            (
                OfferTerms {
                    devices: vec!["D:Int8".into()],
                    ..offer()
                },
                vec![],
                "expected DEVICE:COMMAND",
            ),
        ];
        for (t, leases, why) in cases {
            let got = admit(&p, &t, &leases, &c, 1_000).unwrap_err();
            assert!(got.contains(why), "{got:?} lacks {why:?}");
        }
        // Settled and refused leases hold nothing.
        let mut done = held(900);
        done.state = State::Settled;
        admit(&p, &offer(), &[done], &c, 1_000).unwrap();
        for (selling, why) in [
            (Selling::Paused, "paused it"),
            (Selling::Draining, "draining it"),
        ] {
            let p = Policy {
                selling,
                ..policy()
            };
            let got = admit(&p, &offer(), &[], &c, 1_000).unwrap_err();
            assert!(got.contains(why), "{got}");
        }
        let buyer = Address::from(offer().buyer);
        let denied = Policy {
            tenants: Tenants {
                allow: vec![],
                deny: vec![buyer],
            },
            ..policy()
        };
        let got = admit(&denied, &offer(), &[], &c, 1_000).unwrap_err();
        assert!(
            got.contains("is refused by this gateway's operator"),
            "{got}"
        );
        let others_only = Policy {
            tenants: Tenants {
                allow: vec![Address::repeat_byte(7)],
                deny: vec![],
            },
            ..policy()
        };
        let got = admit(&others_only, &offer(), &[], &c, 1_000).unwrap_err();
        assert!(got.contains("is not on it"), "{got}");
        let listed = Policy {
            tenants: Tenants {
                allow: vec![buyer],
                deny: vec![],
            },
            ..policy()
        };
        admit(&listed, &offer(), &[], &c, 1_000).unwrap();
        let no_devices = Policy {
            device_second: None,
            ..policy()
        };
        let got = admit(&no_devices, &offer(), &[], &c, 1_000).unwrap_err();
        assert!(got.contains("sells no EdgeX devices"), "{got}");
    }
}

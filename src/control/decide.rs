//! What a gateway does with one posted command: a pure decision from the
//! command's bytes, the event it came in and the gateway's state, so every
//! refusal is testable without a chain. The agent records the decision
//! before any effect (`agent::control`).
//!
//! Buyers are protected (each running lease keeps the terms it was sold):
//! - capacity below what running leases hold is refused: the gateway
//!   cannot give back what it sold, and a lower figure would let it accept
//!   nothing until they end, which is what `drain` is for;
//! - prices, tenant lists, devices on sale and the backend policy apply to
//!   new leases only: a running lease's price, grants and wiring are in its
//!   signed terms and its record, which no command rewrites;
//! - pause and drain stop new leases only; ending one early is `evict`,
//!   which settles it for the time served.

use alloy_primitives::Address;

use super::command::{
    Capacity, Command, DeviceSale, Envelope, MAX_DEVICES, MAX_REASON, MAX_RELEASE,
};
use super::overlay::{Overlay, Selling, Sourced, Tenants};

/// The `Command` event as the agent verified it.
#[derive(Debug, Clone, Copy)]
pub struct Posted<'a> {
    pub seq: u64,
    pub operator: Address,
    pub bytes: &'a [u8],
}

/// What running leases hold, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub cpu_millicores: u64,
    pub memory: u64,
    pub disk: u64,
    pub leases: u64,
}

/// A device command a running lease was sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sold {
    pub device: String,
    pub command: String,
    pub write: bool,
}

/// What running leases hold and were sold of the devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leased {
    pub held: Held,
    pub sold: Vec<Sold>,
}

/// The gateway, as a decision needs it.
pub struct Gateway<'a> {
    pub chain_id: u64,
    pub control: Address,
    pub address: Address,
    /// The gateway's operator on chain now.
    pub operator: Address,
    pub now: u64,
    pub overlay: &'a Overlay,
    /// The board's `[resources]`: capacity's ceiling.
    pub ceiling: Capacity,
    /// What is on sale now (board or overlay).
    pub devices: &'a [DeviceSale],
    /// Whether the board sells EdgeX devices at all.
    pub has_edgex: bool,
    /// Whether the prices in force include a device price.
    pub device_priced: bool,
    pub held: Held,
    /// What running leases were sold of the devices.
    pub granted: &'a [Sold],
    /// Checks devices to be put on sale against the EdgeX catalogue, as the
    /// board's are: `Err` names the first that EdgeX cannot serve.
    pub check_devices: &'a dyn Fn(&[DeviceSale]) -> Result<(), String>,
}

/// Something a command does once, beyond the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Evict { lease: [u8; 32], reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A configuration command: this overlay is in force from now on.
    Configure(Box<Overlay>),
    /// An action to carry out.
    Act(Action),
    Refuse(String),
}

/// The decision for command `posted` on gateway `g`.
pub fn decide(posted: Posted<'_>, g: &Gateway<'_>) -> Decision {
    match check(posted, g) {
        Ok(d) => d,
        Err(why) => Decision::Refuse(why),
    }
}

fn check(posted: Posted<'_>, g: &Gateway<'_>) -> Result<Decision, String> {
    let e = Envelope::decode(posted.bytes).map_err(|e| e.to_string())?;
    addressed(&e, posted, g)?;
    if posted.operator != g.operator {
        return Err(format!(
            "posted by {}, no longer this gateway's operator (now {})",
            posted.operator, g.operator
        ));
    }
    if e.expiry <= g.now {
        return Err(format!("expired at {} (now {})", e.expiry, g.now));
    }
    match (e.command.is_configuration(), e.expects) {
        (true, None) => {
            return Err(format!(
                "{} changes the configuration and must name the version it expects",
                e.command.name()
            ));
        }
        (true, Some(v)) if v != g.overlay.version => {
            return Err(format!(
                "conflict: written for configuration version {v}, the gateway is at version {}",
                g.overlay.version
            ));
        }
        (false, Some(_)) => {
            return Err(format!(
                "{} is not a configuration change and names no configuration version",
                e.command.name()
            ));
        }
        _ => {}
    }
    let seq = posted.seq;
    let mut o = g.overlay.clone();
    let set = |value| Some(Sourced { value, seq });
    match e.command {
        // Whether it sells is not a configuration version of its own.
        Command::Pause | Command::Drain | Command::Resume => {
            o.selling = set(match e.command {
                Command::Pause => Selling::Paused,
                Command::Drain => Selling::Draining,
                _ => Selling::Open,
            });
            return Ok(Decision::Configure(Box::new(o)));
        }
        Command::Prices(p) => {
            if p.device_second.is_none() && g.has_edgex && !g.devices.is_empty() {
                return Err(
                    "the gateway sells EdgeX devices: prices must include a device price".into(),
                );
            }
            o.prices = Some(Sourced { value: p, seq })
        }
        Command::Capacity(c) => {
            capacity(c, g)?;
            o.capacity = Some(Sourced { value: c, seq });
        }
        Command::Devices { add, remove } => {
            let list = devices(g, &add, &remove)?;
            o.devices = Some(Sourced { value: list, seq });
        }
        Command::Backends(b) => o.backends = Some(Sourced { value: b, seq }),
        Command::Tenants { allow, deny } => {
            o.tenants = Some(Sourced {
                value: Tenants { allow, deny },
                seq,
            })
        }
        Command::LogLevel(l) => o.log_level = Some(Sourced { value: l, seq }),
        Command::Evict { lease, reason } => {
            return Ok(Decision::Act(Action::Evict {
                lease,
                reason: crate::logger::untrusted(&reason, MAX_REASON),
            }));
        }
        Command::Upgrade { version, .. } => {
            return Err(format!(
                "this agent (dedge {}) cannot upgrade itself yet; release {} not fetched",
                env!("CARGO_PKG_VERSION"),
                crate::logger::untrusted(&version, MAX_RELEASE)
            ));
        }
    }
    o.version = seq;
    Ok(Decision::Configure(Box::new(o)))
}

/// The envelope is for this chain, contract, gateway and sequence number.
fn addressed(e: &Envelope, posted: Posted<'_>, g: &Gateway<'_>) -> Result<(), String> {
    if e.chain_id != g.chain_id {
        return Err(format!(
            "meant for chain {}, this is chain {}",
            e.chain_id, g.chain_id
        ));
    }
    if e.control != g.control {
        return Err(format!(
            "meant for AgentControl {}, posted to {}",
            e.control, g.control
        ));
    }
    if e.gateway != g.address {
        return Err(format!(
            "meant for gateway {}, this is {}",
            e.gateway, g.address
        ));
    }
    if e.seq != posted.seq {
        return Err(format!(
            "written as command {}, posted as {} (another was posted first)",
            e.seq, posted.seq
        ));
    }
    Ok(())
}

fn capacity(c: Capacity, g: &Gateway<'_>) -> Result<(), String> {
    let max = g.ceiling;
    for (what, asked, ceiling, held) in [
        (
            "cpu_millicores",
            u64::from(c.cpu_millicores),
            u64::from(max.cpu_millicores),
            g.held.cpu_millicores,
        ),
        ("memory", c.memory, max.memory, g.held.memory),
        ("disk", c.disk, max.disk, g.held.disk),
        (
            "max_leases",
            u64::from(c.max_leases),
            u64::from(max.max_leases),
            g.held.leases,
        ),
    ] {
        if asked > ceiling {
            return Err(format!(
                "capacity {what} {asked} is over the board's {ceiling}"
            ));
        }
        if asked < held {
            return Err(format!(
                "capacity {what} {asked} is below the {held} running leases hold"
            ));
        }
    }
    Ok(())
}

/// The list on sale after `remove` and `add`, checked.
fn devices(
    g: &Gateway<'_>,
    add: &[DeviceSale],
    remove: &[String],
) -> Result<Vec<DeviceSale>, String> {
    if !g.has_edgex {
        return Err("this board sells no EdgeX devices ([edgex] is not configured)".into());
    }
    if !add.is_empty() && !g.device_priced {
        return Err("no device price is in force: set one with prices first".into());
    }
    let mut list = g.devices.to_vec();
    for name in remove {
        let before = list.len();
        list.retain(|d| &d.name != name);
        if list.len() == before {
            return Err(format!("device `{name}` is not on sale"));
        }
    }
    for d in add {
        list.retain(|x| x.name != d.name);
        list.push(d.clone());
    }
    if list.len() > MAX_DEVICES {
        return Err(format!("at most {MAX_DEVICES} devices on sale"));
    }
    // What a running lease was sold stays on sale: its bridge checks
    // every request against what is offered.
    for Sold {
        device,
        command,
        write,
    } in g.granted
    {
        let kept = list.iter().any(|d| {
            &d.name == device && if *write { &d.write } else { &d.read }.contains(command)
        });
        if !kept {
            return Err(format!(
                "{device}:{command} ({}) is leased by a running lease: evict it or wait for it to end",
                if *write { "write" } else { "read" }
            ));
        }
    }
    (g.check_devices)(add)?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::command::{Level, Prices};

    const CHAIN: u64 = 31337;

    fn control() -> Address {
        Address::repeat_byte(0xc0)
    }
    fn gw() -> Address {
        Address::repeat_byte(0x9a)
    }
    fn op() -> Address {
        Address::repeat_byte(0x0e)
    }

    fn cap(cpu: u32, leases: u32) -> Capacity {
        Capacity {
            cpu_millicores: cpu,
            memory: 1 << 30,
            disk: 1 << 32,
            max_leases: leases,
        }
    }

    fn serves_only_sensor(add: &[DeviceSale]) -> Result<(), String> {
        match add.iter().find(|d| d.name != "Sensor") {
            Some(d) => Err(format!(
                "device `{}`: core-metadata has no such device",
                d.name
            )),
            None => Ok(()),
        }
    }

    struct World {
        overlay: Overlay,
        devices: Vec<DeviceSale>,
        held: Held,
        granted: Vec<Sold>,
        operator: Address,
    }

    impl World {
        fn new() -> World {
            World {
                overlay: Overlay::default(),
                devices: vec![DeviceSale {
                    name: "Old".into(),
                    read: vec!["X".into()],
                    write: vec![],
                }],
                held: Held::default(),
                granted: vec![],
                operator: op(),
            }
        }

        fn decide(&self, seq: u64, e: &Envelope) -> Decision {
            let bytes = e.encode();
            decide(
                Posted {
                    seq,
                    operator: op(),
                    bytes: &bytes,
                },
                &Gateway {
                    chain_id: CHAIN,
                    control: control(),
                    address: gw(),
                    operator: self.operator,
                    now: 1_000,
                    overlay: &self.overlay,
                    ceiling: cap(2000, 4),
                    devices: &self.devices,
                    has_edgex: true,
                    device_priced: true,
                    held: self.held,
                    granted: &self.granted,
                    check_devices: &serves_only_sensor,
                },
            )
        }

        /// Applies `command` as the next command, expecting success.
        fn apply(&mut self, command: Command) -> &Overlay {
            let seq = self.overlay.version + 1;
            match self.decide(seq, &envelope(seq, command, Some(self.overlay.version))) {
                Decision::Configure(o) => self.overlay = *o,
                other => panic!("{other:?}"),
            }
            &self.overlay
        }
    }

    fn envelope(seq: u64, command: Command, expects: Option<u64>) -> Envelope {
        Envelope {
            chain_id: CHAIN,
            control: control(),
            gateway: gw(),
            seq,
            expiry: 2_000,
            expects,
            command,
        }
    }

    fn refused(d: Decision) -> String {
        match d {
            Decision::Refuse(why) => why,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn configuration_commands_fold_into_the_overlay_with_their_origin() {
        let mut w = World::new();
        let mut seq = 0;
        let mut take = |w: &mut World, c: Command| {
            seq += 1;
            let expects = c.is_configuration().then_some(w.overlay.version);
            match w.decide(seq, &envelope(seq, c, expects)) {
                Decision::Configure(o) => w.overlay = *o,
                other => panic!("{other:?}"),
            }
        };
        take(&mut w, Command::Pause);
        assert_eq!(w.overlay.selling.as_ref().unwrap().value, Selling::Paused);
        assert_eq!(
            w.overlay.version, 0,
            "selling is not a configuration version"
        );
        let prices = Prices {
            cpu_core_second: 7,
            memory_gib_second: 8,
            device_second: Some(1),
        };
        take(&mut w, Command::Prices(prices));
        take(&mut w, Command::Resume);
        take(&mut w, Command::LogLevel(Level::Debug));
        let o = &w.overlay;
        assert_eq!(o.version, 4);
        assert_eq!(
            o.selling,
            Some(Sourced {
                value: Selling::Open,
                seq: 3
            })
        );
        assert_eq!(
            o.prices,
            Some(Sourced {
                value: prices,
                seq: 2
            })
        );
        assert_eq!(o.log_level.as_ref().unwrap().seq, 4);
        // Prices that would stop device sales unannounced are refused.
        let free = Command::Prices(Prices {
            device_second: None,
            ..prices
        });
        let got = refused(w.decide(5, &envelope(5, free, Some(4))));
        assert!(got.contains("must include a device price"), "{got}");
    }

    #[test]
    fn a_command_for_another_place_or_time_is_refused() {
        let w = World::new();
        let base = envelope(1, Command::LogLevel(Level::Info), Some(0));
        let cases = [
            (
                Envelope {
                    chain_id: 1,
                    ..base.clone()
                },
                "meant for chain 1",
            ),
            (
                Envelope {
                    control: Address::ZERO,
                    ..base.clone()
                },
                "meant for AgentControl",
            ),
            (
                Envelope {
                    gateway: op(),
                    ..base.clone()
                },
                "meant for gateway",
            ),
            (
                Envelope {
                    seq: 2,
                    ..base.clone()
                },
                "posted as 1",
            ),
            (
                Envelope {
                    expiry: 1_000,
                    ..base.clone()
                },
                "expired at 1000",
            ),
            (
                Envelope {
                    expects: None,
                    ..base.clone()
                },
                "must name the version",
            ),
            (
                Envelope {
                    expects: Some(5),
                    ..base.clone()
                },
                "conflict",
            ),
            (
                envelope(
                    1,
                    Command::Evict {
                        lease: [0; 32],
                        reason: String::new(),
                    },
                    Some(0),
                ),
                "names no configuration version",
            ),
            (
                envelope(1, Command::Pause, Some(0)),
                "names no configuration version",
            ),
        ];
        for (e, why) in cases {
            let got = refused(w.decide(1, &e));
            assert!(got.contains(why), "{got:?} lacks {why:?}");
        }
    }

    #[test]
    fn a_previous_operators_command_is_refused() {
        let mut w = World::new();
        w.operator = Address::repeat_byte(0x77);
        let got = refused(w.decide(1, &envelope(1, Command::Pause, None)));
        assert!(got.contains("no longer this gateway's operator"), "{got}");
    }

    #[test]
    fn two_changes_written_against_the_same_version_conflict() {
        let mut w = World::new();
        let a = envelope(
            1,
            Command::Backends(crate::control::command::Backends::None),
            Some(0),
        );
        let b = envelope(2, Command::LogLevel(Level::Warn), Some(0));
        match w.decide(1, &a) {
            Decision::Configure(o) => w.overlay = *o,
            other => panic!("{other:?}"),
        }
        let got = refused(w.decide(2, &b));
        assert!(
            got.contains("written for configuration version 0, the gateway is at version 1"),
            "{got}"
        );
        // Actions do not take part.
        let evict = envelope(
            2,
            Command::Evict {
                lease: [1; 32],
                reason: "x".into(),
            },
            None,
        );
        assert_eq!(
            w.decide(2, &evict),
            Decision::Act(Action::Evict {
                lease: [1; 32],
                reason: "x".into()
            })
        );
    }

    #[test]
    fn capacity_stays_within_the_board_and_above_what_leases_hold() {
        let mut w = World::new();
        w.held = Held {
            cpu_millicores: 500,
            memory: 1,
            disk: 1,
            leases: 2,
        };
        let try_cap =
            |w: &World, c| refused(w.decide(1, &envelope(1, Command::Capacity(c), Some(0))));
        assert!(try_cap(&w, cap(4000, 4)).contains("cpu_millicores 4000 is over the board's 2000"));
        assert!(try_cap(&w, cap(400, 4)).contains("cpu_millicores 400 is below the 500"));
        assert!(try_cap(&w, cap(1000, 1)).contains("max_leases 1 is below the 2"));
        w.apply(Command::Capacity(cap(500, 2)));
        assert_eq!(w.overlay.capacity.as_ref().unwrap().value, cap(500, 2));
    }

    #[test]
    fn devices_are_checked_against_edgex_and_the_list_on_sale() {
        let mut w = World::new();
        let sensor = DeviceSale {
            name: "Sensor".into(),
            read: vec!["T".into()],
            write: vec![],
        };
        let ghost = DeviceSale {
            name: "Ghost".into(),
            ..sensor.clone()
        };
        let devices = |add: Vec<DeviceSale>, remove: Vec<&str>| Command::Devices {
            add,
            remove: remove.into_iter().map(String::from).collect(),
        };
        let got = refused(w.decide(1, &envelope(1, devices(vec![ghost], vec![]), Some(0))));
        assert!(
            got.contains("`Ghost`: core-metadata has no such device"),
            "{got}"
        );
        let got = refused(w.decide(1, &envelope(1, devices(vec![], vec!["Nope"]), Some(0))));
        assert!(got.contains("`Nope` is not on sale"), "{got}");
        // A running lease reads Old:X: Old stays on sale as long as it runs.
        w.granted = vec![Sold {
            device: "Old".into(),
            command: "X".into(),
            write: false,
        }];
        let got = refused(w.decide(
            1,
            &envelope(1, devices(vec![sensor.clone()], vec!["Old"]), Some(0)),
        ));
        assert!(
            got.contains("Old:X (read) is leased by a running lease"),
            "{got}"
        );
        let narrowed = DeviceSale {
            name: "Old".into(),
            read: vec![],
            write: vec!["X".into()],
        };
        let got = refused(w.decide(1, &envelope(1, devices(vec![narrowed], vec![]), Some(0))));
        assert!(got.contains("is leased by a running lease"), "{got}");
        w.granted.clear();
        w.apply(devices(vec![sensor.clone()], vec!["Old"]));
        assert_eq!(w.overlay.devices.as_ref().unwrap().value, vec![sensor]);
    }

    #[test]
    fn an_upgrade_is_refused_by_this_agent_with_its_reason() {
        let w = World::new();
        let up = Command::Upgrade {
            release: "bafy".into(),
            version: "9.9.9".into(),
        };
        let got = refused(w.decide(1, &envelope(1, up, None)));
        assert!(got.contains("cannot upgrade itself yet"), "{got}");
    }
}

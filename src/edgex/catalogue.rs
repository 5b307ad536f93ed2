//! What the gateway sells of its EdgeX devices: the board's offers checked
//! against what core-metadata says exists. An offered command must be a
//! visible device command or device resource of the device's profile, and
//! readable (writable) where the board offers it for reading (writing);
//! anything else is left out with a problem the operator can read. The
//! agent reads it at start and again periodically; the advert's capability
//! document and every lease's bridge use it.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Error;
use super::client::Client;
use super::model::{Access, DeviceProfile};
use super::value::ValueType;
use crate::board::Device as BoardDevice;

/// One device resource a command reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub value_type: ValueType,
    pub hidden: bool,
}

/// A command (or resource, addressed by name) as sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub read: bool,
    pub write: bool,
    /// In the profile's order: the command's resource operations, or the
    /// resource itself.
    pub resources: Vec<Resource>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedDevice {
    pub name: String,
    pub profile: String,
    pub commands: BTreeMap<String, Command>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub devices: BTreeMap<String, OfferedDevice>,
    /// Offers left out, and why.
    pub problems: Vec<String>,
}

impl Catalogue {
    /// Reads every offered device and its profile. EdgeX being unreachable
    /// is an error (the agent keeps its previous catalogue); a device or
    /// command that does not exist, is locked, hidden or lacks the access
    /// is a problem and left out.
    pub fn read(client: &Client, offers: &[BoardDevice]) -> Result<Catalogue, Error> {
        let mut cat = Catalogue::default();
        for offer in offers {
            let device = match client.device(&offer.name) {
                Ok(d) => d,
                Err(Error::Status { status: 404, .. }) => {
                    cat.problems.push(format!(
                        "device `{}`: core-metadata has no such device",
                        offer.name
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if device.admin_state == "LOCKED" || device.operating_state == "DOWN" {
                cat.problems.push(format!(
                    "device `{}`: {} / {} in core-metadata, not offered",
                    offer.name, device.admin_state, device.operating_state
                ));
                continue;
            }
            let profile = client.profile(&device.profile_name)?;
            let commands = offer_commands(&profile, offer, &mut cat.problems);
            if commands.is_empty() {
                continue;
            }
            cat.devices.insert(
                offer.name.clone(),
                OfferedDevice {
                    name: offer.name.clone(),
                    profile: profile.name.clone(),
                    commands,
                },
            );
        }
        for p in &cat.problems {
            log::debug!("edgex catalogue: {p}");
        }
        Ok(cat)
    }

    pub fn command(&self, device: &str, command: &str) -> Option<&Command> {
        self.devices.get(device)?.commands.get(command)
    }

    /// Is every granted command sold, in the mode granted? The first one
    /// that is not, as `DEVICE:COMMAND is not sold for reading`.
    pub(crate) fn check_grants(&self, grants: &super::grants::Grants) -> Result<(), String> {
        for (device, g) in grants {
            let modes = g.read.iter().map(|c| (c, false));
            for (command, write) in modes.chain(g.write.iter().map(|c| (c, true))) {
                let sold = self
                    .command(device, command)
                    .is_some_and(|c| if write { c.write } else { c.read });
                if !sold {
                    return Err(format!(
                        "{device}:{command} is not sold for {}",
                        if write { "writing" } else { "reading" }
                    ));
                }
            }
        }
        Ok(())
    }

    /// The devices for the capability document.
    pub fn offers(&self) -> Vec<DeviceOffer> {
        self.devices
            .values()
            .map(|d| {
                let names = |f: fn(&Command) -> bool| {
                    d.commands
                        .iter()
                        .filter(|(_, c)| f(c))
                        .map(|(n, _)| n.clone())
                        .collect::<Vec<_>>()
                };
                DeviceOffer {
                    name: d.name.clone(),
                    profile: Some(d.profile.clone()),
                    read: names(|c| c.read),
                    write: names(|c| c.write),
                    commands: d
                        .commands
                        .iter()
                        .map(|(n, c)| CommandOffer {
                            name: n.clone(),
                            value_types: c
                                .resources
                                .iter()
                                .filter(|r| !r.hidden)
                                .map(|r| r.value_type.to_string())
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// The catalogue the agent's bridges check against, read again every
/// `every` on its own thread. A failed read keeps the previous catalogue
/// (EdgeX restarting must not unsell every device for a refresh period);
/// a successful one replaces it, so a device the operator stopped offering
/// or EdgeX removed is refused from then on.
pub struct Refresher {
    current: Arc<RwLock<Catalogue>>,
    /// Moved by every `set_offers`: a periodic read started before one
    /// does not overwrite the catalogue it made.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// What is offered: the board's devices, or what a command set.
    offers: Arc<RwLock<Vec<BoardDevice>>>,
    client: Arc<Client>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Refresher {
    /// Reads once now (an error leaves the catalogue empty until EdgeX
    /// answers), then every `every`.
    pub fn start(client: Arc<Client>, offers: Vec<BoardDevice>, every: Duration) -> Refresher {
        use std::sync::atomic::Ordering::SeqCst;
        let offers = Arc::new(RwLock::new(offers));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (list, gen_seen) = (offers.clone(), generation.clone());
        // The catalogue for the offers of now, and which generation they are.
        let read = move |client: &Client| {
            let at = gen_seen.load(SeqCst);
            let offers = list.read().unwrap_or_else(|p| p.into_inner()).clone();
            Catalogue::read(client, &offers).map(|c| (c, at))
        };
        let first = read(&client).map(|(c, _)| c).unwrap_or_else(|e| {
            log::warn!("edgex catalogue: {e}; nothing is offered until EdgeX answers");
            Catalogue::default()
        });
        let current = Arc::new(RwLock::new(first));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (current, stop, client) = (current.clone(), stop.clone(), client.clone());
            let generation = generation.clone();
            std::thread::spawn(move || {
                let (lock, wake) = &*stop;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    stopped = wake
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        return;
                    }
                    match read(&client) {
                        Ok((cat, at)) => {
                            let mut now = current.write().unwrap_or_else(|p| p.into_inner());
                            if generation.load(SeqCst) == at {
                                *now = cat;
                            }
                        }
                        Err(e) => log::warn!("edgex catalogue: {e}; keeping the last one"),
                    }
                }
            })
        };
        Refresher {
            current,
            generation,
            offers,
            client,
            stop,
            thread: Some(thread),
        }
    }

    /// Offers `offers` from now on, read at once: EdgeX not answering is an
    /// error and changes nothing.
    /// Offers `offers` from now on: read at once; if EdgeX does not answer,
    /// devices no longer offered leave the catalogue now and the rest waits
    /// for the next refresh (the error says so).
    pub fn set_offers(&self, offers: Vec<BoardDevice>) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        *self.offers.write().unwrap_or_else(|p| p.into_inner()) = offers.clone();
        self.generation.fetch_add(1, SeqCst);
        match Catalogue::read(&self.client, &offers) {
            Ok(cat) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = cat;
                Ok(())
            }
            Err(e) => {
                // Nothing more is sold than the new offers: what they drop
                // or narrow goes now; what they add waits for EdgeX.
                let mut cat = self.current.write().unwrap_or_else(|p| p.into_inner());
                cat.devices.retain(|name, d| {
                    let Some(o) = offers.iter().find(|o| &o.name == name) else {
                        return false;
                    };
                    d.commands.retain(|c, modes| {
                        modes.read &= o.read.contains(c);
                        modes.write &= o.write.contains(c);
                        modes.read || modes.write
                    });
                    !d.commands.is_empty()
                });
                Err(e)
            }
        }
    }

    /// The detailed offers (profiles, value types) EdgeX serves of
    /// `offers`, as the advert lists them; `Err`: EdgeX did not answer.
    pub fn detailed(&self, offers: &[BoardDevice]) -> Result<Vec<DeviceOffer>, String> {
        Catalogue::read(&self.client, offers)
            .map(|c| c.offers())
            .map_err(|e| format!("EdgeX did not answer: {e}"))
    }

    /// Why EdgeX cannot serve these offers as offered, if it cannot: the
    /// first problem the catalogue finds (a device it does not have, a
    /// command the profile lacks, a mode it does not allow).
    /// `Err`: EdgeX did not answer (ask again later).
    pub fn check(&self, offers: &[BoardDevice]) -> Result<Result<(), String>, String> {
        let cat = Catalogue::read(&self.client, offers)
            .map_err(|e| format!("EdgeX did not answer: {e}"))?;
        Ok(match cat.problems.first() {
            Some(p) => Err(p.clone()),
            None => Ok(()),
        })
    }

    /// The catalogue to give bridges; it changes in place at each refresh.
    pub fn catalogue(&self) -> Arc<RwLock<Catalogue>> {
        self.current.clone()
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The offered commands of one device that its profile can serve.
fn offer_commands(
    profile: &DeviceProfile,
    offer: &BoardDevice,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Command> {
    let mut out: BTreeMap<String, Command> = BTreeMap::new();
    let wanted = offer
        .read
        .iter()
        .map(|c| (c, true))
        .chain(offer.write.iter().map(|c| (c, false)));
    for (name, is_read) in wanted {
        let at = format!("device `{}` command `{name}`", offer.name);
        let (access, resources) = match resolve(profile, name) {
            Ok(found) => found,
            Err(why) => {
                problems.push(format!("{at}: {why}"));
                continue;
            }
        };
        let can = if is_read { access.read } else { access.write };
        if !can {
            problems.push(format!(
                "{at}: offered for {} but profile `{}` marks it {}",
                if is_read { "reading" } else { "writing" },
                profile.name,
                if is_read { "write-only" } else { "read-only" }
            ));
            continue;
        }
        let entry = out.entry(name.clone()).or_insert(Command {
            read: false,
            write: false,
            resources,
        });
        if is_read {
            entry.read = true;
        } else {
            entry.write = true;
        }
    }
    out
}

/// A visible device command, or failing that a visible device resource.
fn resolve(profile: &DeviceProfile, name: &str) -> Result<(Access, Vec<Resource>), String> {
    let resource = |n: &str| -> Result<Resource, String> {
        let r = profile
            .resource(n)
            .ok_or_else(|| format!("profile `{}` has no resource `{n}`", profile.name))?;
        Ok(Resource {
            name: r.name.clone(),
            value_type: r.value_type().map_err(|e| e.to_string())?,
            hidden: r.is_hidden,
        })
    };
    if let Some(c) = profile.command(name) {
        if c.is_hidden {
            return Err(format!("hidden in profile `{}`", profile.name));
        }
        let access = Access::parse(&c.read_write).map_err(|e| e.to_string())?;
        let resources = c
            .resource_operations
            .iter()
            .map(|op| resource(&op.device_resource))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((access, resources));
    }
    if let Some(r) = profile.resource(name) {
        if r.is_hidden {
            return Err(format!("hidden in profile `{}`", profile.name));
        }
        return Ok((
            r.access().map_err(|e| e.to_string())?,
            vec![resource(name)?],
        ));
    }
    Err(format!(
        "profile `{}` has no command or resource of that name",
        profile.name
    ))
}

/// A device as the gateway's capability document offers it (the
/// Market's advert carries these; `market::capabilities` names them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOffer {
    pub name: String,
    /// The EdgeX device profile, once the agent has read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    /// Value types per command, from the profile (empty until read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandOffer>,
}

/// The value types a command reads or writes, in the profile's order
/// (hidden resources left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOffer {
    pub name: String,
    pub value_types: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edgex::model::DeviceProfile;

    fn profile() -> DeviceProfile {
        serde_json::from_value(serde_json::json!({
            "name": "P",
            "deviceResources": [
                {"name": "Int8", "isHidden": false,
                 "properties": {"valueType": "Int8", "readWrite": "RW"}},
                {"name": "Secret", "isHidden": true,
                 "properties": {"valueType": "Bool", "readWrite": "W"}},
                {"name": "Binary", "isHidden": false,
                 "properties": {"valueType": "Binary", "readWrite": "R"}}
            ],
            "deviceCommands": [
                {"name": "WriteInt8", "isHidden": false, "readWrite": "W",
                 "resourceOperations": [{"deviceResource": "Int8"},
                                        {"deviceResource": "Secret", "defaultValue": "false"}]}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn only_what_the_profile_allows_is_offered() {
        let offer = BoardDevice {
            name: "D".into(),
            read: vec![
                "Int8".into(),
                "Binary".into(),
                "Secret".into(),
                "Nope".into(),
            ],
            write: vec!["WriteInt8".into(), "Binary".into()],
        };
        let mut problems = Vec::new();
        let got = offer_commands(&profile(), &offer, &mut problems);
        assert_eq!(
            got.keys().map(String::as_str).collect::<Vec<_>>(),
            ["Binary", "Int8", "WriteInt8"]
        );
        assert!(got["Binary"].read && !got["Binary"].write);
        assert!(got["WriteInt8"].write && !got["WriteInt8"].read);
        assert_eq!(got["WriteInt8"].resources.len(), 2);
        assert!(got["WriteInt8"].resources[1].hidden);
        let all = problems.join("\n");
        assert!(all.contains("`Secret`: hidden"), "{all}");
        assert!(all.contains("`Nope`: profile `P` has no command"), "{all}");
        assert!(
            all.contains("`Binary`: offered for writing but profile `P` marks it read-only"),
            "{all}"
        );
        assert_eq!(problems.len(), 3);
    }
}

//! What a lease bought of the gateway's EdgeX devices, as its offer names
//! them. The bridge enforces grants; the catalogue checks they are sold.

use std::collections::{BTreeMap, BTreeSet};

use super::Error;

/// The commands a lease may use on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceGrant {
    pub read: BTreeSet<String>,
    pub write: BTreeSet<String>,
}

/// What a lease bought: device name → commands.
pub type Grants = BTreeMap<String, DeviceGrant>;

/// The grants an offer's `devices` carry: `DEVICE:COMMAND:MODE`, MODE
/// `r`, `w` or `rw`. The device name is everything before the last two
/// colons (board checks keep colons out of command names).
pub(crate) fn grants_from_offer(devices: &[String]) -> Result<Grants, Error> {
    let mut grants = Grants::new();
    for d in devices {
        let mut parts = d.rsplitn(3, ':');
        let (mode, command, device) = (parts.next(), parts.next(), parts.next());
        let (Some(mode), Some(command), Some(device)) = (mode, command, device) else {
            return Err(Error::Value(format!(
                "device grant `{d}`: expected DEVICE:COMMAND:r|w|rw"
            )));
        };
        let (read, write) = match mode {
            "r" => (true, false),
            "w" => (false, true),
            "rw" => (true, true),
            _ => {
                return Err(Error::Value(format!(
                    "device grant `{d}`: mode `{mode}` is not r, w or rw"
                )));
            }
        };
        if device.is_empty() || command.is_empty() {
            return Err(Error::Value(format!(
                "device grant `{d}`: empty device or command"
            )));
        }
        let g = grants.entry(device.to_string()).or_default();
        if read {
            g.read.insert(command.to_string());
        }
        if write {
            g.write.insert(command.to_string());
        }
    }
    Ok(grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_carry_grants_as_device_command_mode() {
        let g = grants_from_offer(&[
            "Random-Integer-Device:Int8:r".into(),
            "Random-Integer-Device:WriteInt8Value:w".into(),
            "Modbus:Unit-1:Temp:rw".into(),
        ])
        .unwrap();
        let int = &g["Random-Integer-Device"];
        assert!(int.read.contains("Int8") && !int.write.contains("Int8"));
        assert!(int.write.contains("WriteInt8Value") && !int.read.contains("WriteInt8Value"));
        let m = &g["Modbus:Unit-1"];
        assert!(m.read.contains("Temp") && m.write.contains("Temp"));
        for bad in ["Int8", "D:Int8", "D:Int8:x", ":Int8:r", "D::r"] {
            assert!(grants_from_offer(&[bad.into()]).is_err(), "{bad}");
        }
    }
}

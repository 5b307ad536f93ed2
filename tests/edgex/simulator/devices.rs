//! device-virtual's devices as the simulator keeps them: profiles and
//! devices from its YAML, a value per resource with its randomisation
//! flag, reads and writes that behave as device-virtual-go and
//! device-sdk-go v4 do (docs/edgex.md, "The simulator").

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// A resource's properties the simulator needs.
#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub hidden: bool,
    pub value_type: String,
    pub read_write: String,
    pub default: Option<String>,
    pub media_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub resource: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeviceCommand {
    pub name: String,
    pub hidden: bool,
    pub read_write: String,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile as YAML gives it, for core-metadata's answer.
    pub json: Value,
    pub name: String,
    pub resources: Vec<Resource>,
    pub commands: Vec<DeviceCommand>,
}

impl Profile {
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
    pub fn command(&self, name: &str) -> Option<&DeviceCommand> {
        self.commands.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Device {
    pub json: Value,
    pub name: String,
    pub profile: String,
}

/// Stored value and randomisation flag of one resource.
#[derive(Debug, Clone)]
struct Slot {
    value: String,
    random: bool,
}

pub struct Devices {
    pub profiles: BTreeMap<String, Profile>,
    /// In the order of devices.yaml (core-metadata sorts by `created`).
    pub devices: Vec<Device>,
    slots: BTreeMap<(String, String), Slot>,
    rng: Rng,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(String::from)
}

fn load_yaml(path: &Path) -> Result<Value, String> {
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&s).map_err(|e| format!("{}: {e}", path.display()))
}

impl Devices {
    pub fn load(res: &Path) -> Result<Devices, String> {
        let mut profiles = BTreeMap::new();
        let mut names: Vec<_> = std::fs::read_dir(res.join("profiles"))
            .map_err(|e| format!("{}: {e}", res.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        names.sort();
        for path in names {
            let mut json = load_yaml(&path)?;
            let name = text(&json, "name").ok_or("profile without name")?;
            let resources = json["deviceResources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| Resource {
                    name: text(r, "name").unwrap_or_default(),
                    hidden: r["isHidden"].as_bool().unwrap_or(false),
                    value_type: text(&r["properties"], "valueType").unwrap_or_default(),
                    read_write: text(&r["properties"], "readWrite").unwrap_or_default(),
                    default: text(&r["properties"], "defaultValue"),
                    media_type: text(&r["properties"], "mediaType"),
                })
                .collect();
            let commands = json["deviceCommands"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| DeviceCommand {
                    name: text(c, "name").unwrap_or_default(),
                    hidden: c["isHidden"].as_bool().unwrap_or(false),
                    read_write: text(c, "readWrite").unwrap_or_default(),
                    operations: c["resourceOperations"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|o| Operation {
                            resource: text(o, "deviceResource").unwrap_or_default(),
                            default: text(o, "defaultValue"),
                        })
                        .collect(),
                })
                .collect();
            // deviceCommands is [] in the real answer, never null.
            if json.get("deviceCommands").is_none_or(Value::is_null) {
                json["deviceCommands"] = json!([]);
            }
            profiles.insert(
                name.clone(),
                Profile {
                    json,
                    name,
                    resources,
                    commands,
                },
            );
        }
        let list = load_yaml(&res.join("devices/devices.yaml"))?;
        let mut devices = Vec::new();
        let mut slots = BTreeMap::new();
        for d in list["deviceList"].as_array().cloned().unwrap_or_default() {
            let name = text(&d, "name").ok_or("device without name")?;
            let profile = text(&d, "profileName").ok_or("device without profileName")?;
            let p = profiles
                .get(&profile)
                .ok_or_else(|| format!("device {name}: no profile {profile}"))?;
            for r in &p.resources {
                if r.value_type != "Binary" {
                    slots.insert(
                        (name.clone(), r.name.clone()),
                        Slot {
                            value: r.default.clone().unwrap_or_default(),
                            random: true,
                        },
                    );
                }
            }
            devices.push(Device {
                json: d,
                name,
                profile,
            });
        }
        Ok(Devices {
            profiles,
            devices,
            slots,
            rng: Rng::seeded(),
        })
    }

    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// One reading of `resource`: a fresh random value while randomisation
    /// is on (stored), else the stored one. Binary is random every time.
    pub fn read(&mut self, device: &str, r: &Resource) -> Value {
        let key = (device.to_string(), r.name.clone());
        if r.value_type == "Binary" {
            let bytes: Vec<u8> = (0..16777).map(|_| self.rng.next() as u8).collect();
            return json!({"binaryValue": base64(&bytes),
                          "mediaType": r.media_type.clone().unwrap_or_default()});
        }
        let random = self.slots.get(&key).is_none_or(|s| s.random);
        let object = r.value_type.starts_with("Object");
        if random && !object {
            let v = random_value(&mut self.rng, &r.value_type);
            self.slots.insert(
                key.clone(),
                Slot {
                    value: v,
                    random: true,
                },
            );
        }
        let stored = self
            .slots
            .get(&key)
            .map(|s| s.value.clone())
            .unwrap_or_default();
        if object {
            let v: Value = serde_json::from_str(&stored).unwrap_or(Value::Null);
            return json!({ "objectValue": v });
        }
        json!({ "value": format_reading(&r.value_type, &stored) })
    }

    /// Writes a parsed value: the resource keeps it and stops being
    /// random; a Bool write to `EnableRandomization_X` switches X's flag.
    pub fn store(&mut self, device: &str, r: &Resource, value: String) {
        if let Some(target) = r.name.strip_prefix("EnableRandomization_") {
            let on = value == "true";
            if let Some(s) = self
                .slots
                .get_mut(&(device.to_string(), target.to_string()))
            {
                s.random = on;
            }
        }
        self.slots.insert(
            (device.to_string(), r.name.clone()),
            Slot {
                value,
                random: false,
            },
        );
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.rng.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A value as stored after a read or write: scalars as text, arrays as a
/// JSON array of element texts.
fn random_value(rng: &mut Rng, vt: &str) -> String {
    let (base, array) = match vt.strip_suffix("Array") {
        Some(b) => (b, true),
        None => (vt, false),
    };
    let one = |rng: &mut Rng| -> String {
        let bits = |p: &str| base.strip_prefix(p).and_then(|b| b.parse::<u32>().ok());
        if base == "Bool" {
            (rng.next() % 2 == 1).to_string()
        } else if let Some(b) = bits("Uint") {
            let mask = if b == 64 { u64::MAX } else { (1u64 << b) - 1 };
            (rng.next() & mask).to_string()
        } else if let Some(b) = bits("Int") {
            let shift = 64 - b;
            (((rng.next() << shift) as i64) >> shift).to_string()
        } else if let Some(b) = bits("Float") {
            let (u1, u2) = (rng.unit(), rng.unit());
            let max = if b == 32 {
                f64::from(f32::MAX)
            } else {
                f64::MAX
            };
            let v = u1 * -max + u2 * max;
            if b == 32 {
                format!("{:e}", v as f32)
            } else {
                format!("{v:e}")
            }
        } else {
            String::new()
        }
    };
    if array {
        let items: Vec<Value> = (0..5).map(|_| Value::String(one(rng))).collect();
        Value::Array(items).to_string()
    } else {
        one(rng)
    }
}

/// The reading's `value` text: Go's `%e`-style floats with a signed,
/// two-digit exponent; arrays as `[a, b]`.
pub fn format_reading(vt: &str, stored: &str) -> String {
    let float = vt.starts_with("Float");
    let scalar = |s: &str| if float { go_e(s) } else { s.to_string() };
    if vt.ends_with("Array") {
        let items: Vec<String> = serde_json::from_str::<Vec<Value>>(stored)
            .unwrap_or_default()
            .iter()
            .map(|v| match v {
                Value::String(s) => scalar(s),
                other => scalar(&other.to_string()),
            })
            .collect();
        return format!("[{}]", items.join(", "));
    }
    scalar(stored)
}

/// `2.85e1` or `28.5` → `2.85e+01` (strconv.FormatFloat(f, 'e', -1, n)).
fn go_e(s: &str) -> String {
    let Ok(v) = s.parse::<f64>() else {
        return s.to_string();
    };
    let r = format!("{v:e}");
    let (mantissa, exp) = r.split_once('e').unwrap_or((&r, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `fmt.Sprint` of a decoded JSON value, which the SDK applies to
/// every value of a PUT body before parsing it.
pub fn go_sprint(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            // JSON numbers decode as float64, and %v prints those with
            // strconv's shortest 'g': e-notation when the exponent is
            // below -4 or at least 6 (1234567 → "1.234567e+06").
            let f = n.as_f64().unwrap_or(0.0);
            let exp: i32 = format!("{f:e}")
                .split_once('e')
                .and_then(|(_, x)| x.parse().ok())
                .unwrap_or(0);
            if f != 0.0 && !(-4..6).contains(&exp) {
                go_e(&f.to_string())
            } else {
                format!("{f}")
            }
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|x| go_sprint(x).unwrap_or_else(|| "<nil>".into()))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Value::Object(_) => "map[]".to_string(),
    })
}

/// Parses a PUT value as the SDK does for the resource's type; the error
/// text is the SDK's (`strconv...: parsing "x": invalid syntax`).
pub fn parse_set(vt: &str, raw: &Value) -> Result<String, String> {
    // Object types take the JSON itself, or a string holding JSON.
    if vt == "Object" || vt == "ObjectArray" {
        let v = match raw {
            Value::String(s) => serde_json::from_str(s).map_err(|e| e.to_string())?,
            other => other.clone(),
        };
        let ok = if vt == "Object" {
            v.is_object()
        } else {
            v.is_array()
        };
        return if ok {
            Ok(v.to_string())
        } else {
            Err(format!("failed to convert set parameter to ValueType {vt}"))
        };
    }
    let s = go_sprint(raw).ok_or_else(|| format!("nil value for ValueType {vt}"))?;
    let fail = |inner: String| {
        format!(
            "failed to create CommandValue -> failed to convert set parameter {s} to ValueType {vt} -> {inner}"
        )
    };
    if s.trim().is_empty() {
        return Err(fail("empty value".into()));
    }
    if let Some(base) = vt.strip_suffix("Array") {
        let items: Vec<String> = if base.starts_with("Uint") {
            s.trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|x| x.trim().to_string())
                .collect()
        } else {
            let a: Vec<Value> = serde_json::from_str(&s).map_err(|e| fail(e.to_string()))?;
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                })
                .collect()
        };
        let mut out = Vec::new();
        for i in items {
            out.push(Value::String(parse_scalar(base, &i).map_err(&fail)?));
        }
        return Ok(Value::Array(out).to_string());
    }
    parse_scalar(vt, &s).map_err(fail)
}

fn parse_scalar(vt: &str, s: &str) -> Result<String, String> {
    let syntax = |f: &str| format!("strconv.{f}: parsing {s:?}: invalid syntax");
    let range = |f: &str| format!("strconv.{f}: parsing {s:?}: value out of range");
    let bits = |p: &str| vt.strip_prefix(p).and_then(|b| b.parse::<u32>().ok());
    if vt == "Bool" {
        return match s {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok("true".into()),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok("false".into()),
            _ => Err(syntax("ParseBool")),
        };
    }
    if vt == "String" {
        return Ok(s.to_string());
    }
    if let Some(b) = bits("Uint") {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(syntax("ParseUint"));
        }
        let v: u128 = s.parse().map_err(|_| range("ParseUint"))?;
        return if v >> b == 0 {
            Ok(v.to_string())
        } else {
            Err(range("ParseUint"))
        };
    }
    if let Some(b) = bits("Int") {
        let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(syntax("ParseInt"));
        }
        let v: i128 = s
            .trim_start_matches('+')
            .parse()
            .map_err(|_| range("ParseInt"))?;
        let lim = 1i128 << (b - 1);
        return if (-lim..lim).contains(&v) {
            Ok(v.to_string())
        } else {
            Err(range("ParseInt"))
        };
    }
    if let Some(b) = bits("Float") {
        let v: f64 = s.parse().map_err(|_| syntax("ParseFloat"))?;
        if b == 32 && v.is_finite() && v.abs() > f64::from(f32::MAX) {
            return Err(range("ParseFloat"));
        }
        return Ok(if b == 32 {
            format!("{:e}", v as f32)
        } else {
            format!("{v:e}")
        });
    }
    Err(format!("unsupported ValueType {vt}"))
}

/// xorshift64*: random enough for sensor values, no dependency.
pub struct Rng(u64);

static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

impl Rng {
    pub fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ SEED.fetch_add(0x9e37_79b9, Ordering::Relaxed)) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Standard base64 with padding (binaryValue).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64url without padding (JWT parts).
pub fn base64url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

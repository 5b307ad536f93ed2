//! edgex-simulator: a TEST TOOL, not EdgeX. It serves the v3 API of
//! EdgeX's core-metadata, core-command and core-data for device-virtual's
//! devices and profiles, answering as the real Go services do, quirks
//! included (docs/edgex.md lists them), and optionally a secret store's
//! login flow with JWTs the services check ("secure mode").
//!
//!   edgex-simulator [--res DIR] [--metadata-port P] [--command-port P]
//!                   [--data-port P] [--secure USER:PASSWORD] [--jwt-ttl SECS]
//!                   [--secret-store-port P]
//!
//! Ports default to 0 (free ones). Once listening it prints one JSON line
//! with the URLs, then serves until killed. Test-only routes, on every
//! port: `GET /sim/requests` (what core-command was sent), `POST
//! /sim/revoke` (every issued JWT stops being valid), `GET /sim/stats`.

// A test tool: a failed unwrap fails the test that runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod devices;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dedge::edgex::http::{Handler, Limits, Request, Response, Server};
use devices::{Devices, Resource};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Service {
    Metadata,
    Command,
    Data,
    SecretStore,
}

struct Token {
    user: String,
    expires: Instant,
}

#[derive(Default)]
struct Secure {
    users: BTreeMap<String, String>,
    jwt_ttl: u64,
    /// Vault tokens → user.
    vault: BTreeMap<String, String>,
    /// Issued JWTs (the introspection table).
    jwts: BTreeMap<String, Token>,
    logins: u64,
}

struct State {
    devices: Devices,
    /// core-data's events per device, oldest first.
    events: BTreeMap<String, Vec<Value>>,
    /// Requests core-command received (method, path, query, body).
    requests: Vec<Value>,
    secure: Option<Secure>,
    command_url: String,
    counter: u64,
}

struct Sim {
    service: Service,
    state: Arc<Mutex<State>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

impl State {
    fn uuid(&mut self) -> String {
        self.counter += 1;
        let a = self.devices_rng();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a as u32,
            (a >> 32) as u16,
            (a >> 48) as u16 & 0xfff,
            self.counter & 0xfff,
            self.counter
        )
    }

    fn devices_rng(&mut self) -> u64 {
        let mut r = devices::Rng::seeded();
        r.next() ^ self.counter
    }
}

fn base(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"apiVersion": "v3", "message": message, "statusCode": status}),
    )
}

/// echo's own errors (routing, auth header): only a message.
fn echo(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "message": message }))
}

fn ok(mut v: Value) -> Response {
    v["apiVersion"] = json!("v3");
    v["statusCode"] = json!(200);
    Response::json(200, &v)
}

fn query(req: &Request) -> BTreeMap<String, String> {
    req.query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            (d(k), d(v))
        })
        .collect()
}

/// offset/limit as edgex-go checks them.
fn paging(q: &BTreeMap<String, String>, total: usize) -> Result<(usize, usize), Response> {
    let get = |k: &str, default: i64| -> Result<i64, Response> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => v.parse::<i64>().map_err(|_| {
                base(
                    400,
                    &format!("querystring {k}'s value {v} is out of min -1 ~ max 1024 range."),
                )
            }),
        }
    };
    let offset = get("offset", 0)?;
    let mut limit = get("limit", 20)?;
    if !(-1..=1024).contains(&limit) {
        return Err(base(
            400,
            &format!("querystring limit's value {limit} is out of min -1 ~ max 1024 range."),
        ));
    }
    if limit == -1 {
        limit = 1024;
    }
    let offset = offset.max(0) as usize;
    if offset > total {
        return Err(base(
            416,
            &format!("query objects bounds out of range. length:{total} offset:{offset}"),
        ));
    }
    Ok((offset, limit as usize))
}

fn stamp(mut v: Value, id: &str) -> Value {
    let t = json!(now_ms());
    let mut out = serde_json::Map::new();
    out.insert("created".into(), t.clone());
    out.insert("modified".into(), t);
    out.insert("id".into(), json!(id));
    if let Value::Object(m) = v.take() {
        out.extend(m);
    }
    Value::Object(out)
}

impl Sim {
    fn device_json(st: &mut State, i: usize) -> Value {
        let d = st.devices.devices[i].json.clone();
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let mut v = stamp(json!({}), &id);
        v["name"] = d["name"].clone();
        v["description"] = d["description"].clone();
        v["adminState"] = json!("UNLOCKED");
        v["operatingState"] = json!("UP");
        v["labels"] = d["labels"].clone();
        v["serviceName"] = json!("device-virtual");
        v["profileName"] = d["profileName"].clone();
        let autos: Vec<Value> = d["autoEvents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                json!({"interval": a["interval"], "onChange": a["onChange"],
                       "onChangeThreshold": 0, "sourceName": a["sourceName"]})
            })
            .collect();
        v["autoEvents"] = json!(autos);
        v["protocols"] = d["protocols"].clone();
        v["properties"] = json!({});
        v
    }

    fn metadata(&self, st: &mut State, req: &Request, segs: &[String]) -> Response {
        let q = query(req);
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (req.method.as_str(), s.as_slice()) {
            ("GET", ["device", "all"]) => {
                let labels: Vec<&str> = q
                    .get("labels")
                    .map(|l| l.split(',').collect())
                    .unwrap_or_default();
                let matching: Vec<usize> = (0..st.devices.devices.len())
                    .filter(|&i| {
                        labels.is_empty()
                            || st.devices.devices[i].json["labels"]
                                .as_array()
                                .is_some_and(|a| {
                                    a.iter().any(|l| labels.contains(&l.as_str().unwrap_or("")))
                                })
                    })
                    .collect();
                let (offset, limit) = match paging(&q, matching.len()) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let devices: Vec<Value> = matching
                    .iter()
                    .skip(offset)
                    .take(limit)
                    .map(|&i| Sim::device_json(st, i))
                    .collect();
                ok(json!({"totalCount": matching.len(), "devices": devices}))
            }
            ("GET", ["device", "name", name]) => {
                match st.devices.devices.iter().position(|d| d.name == *name) {
                    Some(i) => ok(json!({ "device": Sim::device_json(st, i) })),
                    None => base(404, &format!("no device with name '{name}' found")),
                }
            }
            ("GET", ["deviceprofile", "name", name]) => match st.devices.profiles.get(*name) {
                Some(p) => {
                    let mut v = stamp(p.json.clone(), "00000000-0000-4000-8000-0000000000aa");
                    v["linkedDeviceCount"] = json!(1);
                    v["apiVersion"] = json!("v3");
                    ok(json!({ "profile": v }))
                }
                None => base(404, &format!("no device profile with name '{name}' found")),
            },
            ("GET", ["deviceservice", "all"]) => {
                let svc = stamp(
                    json!({"name": "device-virtual", "baseAddress": "http://localhost:59900",
                           "adminState": "UNLOCKED", "properties": {}}),
                    "00000000-0000-4000-8000-0000000000bb",
                );
                ok(json!({"totalCount": 1, "services": [svc]}))
            }
            _ => echo(404, "Not Found"),
        }
    }

    fn command(&self, st: &mut State, req: &Request, segs: &[String]) -> Response {
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (req.method.as_str(), s.as_slice()) {
            ("GET", ["device", "all"]) => self.command_listing(st, req),
            ("GET", ["device", "name", d, c]) => self.command_get(st, req, d, c),
            ("PUT", ["device", "name", d, c]) => self.command_put(st, req, d, c),
            (_, ["device", "name", _, _]) => echo(405, "Method Not Allowed"),
            _ => echo(404, "Not Found"),
        }
    }

    fn command_listing(&self, st: &mut State, req: &Request) -> Response {
        let q = query(req);
        let total = st.devices.devices.len();
        let (offset, limit) = match paging(&q, total) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let url = st.command_url.clone();
        let mut out = Vec::new();
        let page: Vec<devices::Device> = st
            .devices
            .devices
            .iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        for d in &page {
            let Some(p) = st.devices.profiles.get(&d.profile).cloned() else {
                continue;
            };
            let path = |c: &str| format!("/api/v3/device/name/{}/{c}", d.name);
            let param = |r: &str| {
                let vt = p
                    .resource(r)
                    .map(|r| r.value_type.clone())
                    .unwrap_or_default();
                json!({"resourceName": r, "valueType": vt})
            };
            let entry = |name: &str, rw: &str, params: Vec<Value>| {
                let mut c = json!({"name": name, "path": path(name), "url": url,
                                   "parameters": params});
                if rw.contains('R') {
                    c["get"] = json!(true);
                }
                if rw.contains('W') {
                    c["set"] = json!(true);
                }
                c
            };
            let mut commands: Vec<Value> = p
                .commands
                .iter()
                .filter(|c| !c.hidden)
                .map(|c| {
                    entry(
                        &c.name,
                        &c.read_write,
                        c.operations.iter().map(|o| param(&o.resource)).collect(),
                    )
                })
                .chain(
                    p.resources
                        .iter()
                        .filter(|r| !r.hidden)
                        .map(|r| entry(&r.name, &r.read_write, vec![param(&r.name)])),
                )
                .collect();
            // Built from a map in core-command: no stable order.
            st.devices.shuffle(&mut commands);
            out.push(json!({"deviceName": d.name, "profileName": d.profile,
                            "coreCommands": commands}));
        }
        ok(json!({"totalCount": total, "deviceCoreCommands": out}))
    }

    /// core-command wraps the device service's GET errors with its whole
    /// JSON body.
    fn ds_get_error(status: u16, message: &str) -> Response {
        let inner = json!({"apiVersion": "v3", "message": message, "statusCode": status});
        base(
            status,
            &format!("request failed, status code: {status}, err: {inner}"),
        )
    }

    fn ds_put_error(status: u16, message: &str) -> Response {
        base(
            status,
            &format!("request failed, status code: {status}, err: {message}"),
        )
    }

    fn flag(q: &BTreeMap<String, String>, k: &str, default: bool) -> Result<bool, Response> {
        match q.get(k).map(String::as_str) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(base(
                400,
                &format!("invalid query parameter, {v} has to be true or false"),
            )),
        }
    }

    fn command_get(&self, st: &mut State, req: &Request, d: &str, c: &str) -> Response {
        let q = query(req);
        let Some(device) = st.devices.device(d).cloned() else {
            return Sim::ds_put_error(404, &format!("no device with name '{d}' found"));
        };
        let (push, ret) = match (
            Sim::flag(&q, "ds-pushevent", false),
            Sim::flag(&q, "ds-returnevent", true),
        ) {
            (Ok(p), Ok(r)) => (p, r),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let regex = q.get("ds-regexcmd").map(String::as_str) != Some("false");
        let Some(profile) = st.devices.profiles.get(&device.profile).cloned() else {
            return base(500, "profile missing");
        };
        let resources: Vec<Resource> = if let Some(cmd) = profile.command(c) {
            if !cmd.read_write.contains('R') {
                return Sim::ds_get_error(
                    405,
                    &format!("DeviceCommand {c} is marked as write-only"),
                );
            }
            cmd.operations
                .iter()
                .filter_map(|o| profile.resource(&o.resource).cloned())
                .collect()
        } else if !regex {
            match profile.resource(c) {
                None => {
                    return Sim::ds_get_error(404, &format!("DeviceResource {c} not found"));
                }
                Some(r) if !r.read_write.contains('R') => {
                    return Sim::ds_get_error(
                        405,
                        &format!("DeviceResource {c} is marked as write-only"),
                    );
                }
                Some(r) => vec![r.clone()],
            }
        } else {
            let re = match regex::Regex::new(&format!("^(?:{c})$")) {
                Ok(re) => re,
                Err(e) => {
                    return Sim::ds_get_error(
                        400,
                        &format!("failed to CompilePOSIX resource name -> {e}"),
                    );
                }
            };
            let matched: Vec<&Resource> = profile
                .resources
                .iter()
                .filter(|r| r.name == c || re.is_match(&r.name))
                .collect();
            if matched.is_empty() {
                return Sim::ds_get_error(404, &format!("Regex DeviceResource {c} not found"));
            }
            let mut readable: Vec<Resource> = matched
                .into_iter()
                .filter(|r| r.read_write.contains('R'))
                .cloned()
                .collect();
            if readable.is_empty() {
                return Sim::ds_get_error(405, &format!("no readable resources matched with {c}"));
            }
            st.devices.shuffle(&mut readable);
            readable
        };
        let origin = now_ns();
        let mut readings = Vec::new();
        for r in &resources {
            let mut reading = json!({"id": st.uuid(), "origin": origin, "deviceName": d,
                                     "resourceName": r.name, "profileName": profile.name,
                                     "valueType": r.value_type});
            if let (Value::Object(m), Value::Object(v)) = (&mut reading, st.devices.read(d, r)) {
                m.extend(v);
            }
            readings.push(reading);
        }
        let event = json!({"apiVersion": "v3", "id": st.uuid(), "deviceName": d,
                           "profileName": profile.name, "sourceName": c,
                           "origin": origin, "readings": readings});
        if push {
            st.events
                .entry(d.to_string())
                .or_default()
                .push(event.clone());
        }
        if !ret {
            // 200, JSON content type, no body at all.
            return Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Vec::new(),
            };
        }
        ok(json!({ "event": event }))
    }

    fn command_put(&self, st: &mut State, req: &Request, d: &str, c: &str) -> Response {
        let Some(device) = st.devices.device(d).cloned() else {
            return Sim::ds_put_error(404, &format!("no device with name '{d}' found"));
        };
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) else {
            return base(400, "failed to parse request body");
        };
        let Some(profile) = st.devices.profiles.get(&device.profile).cloned() else {
            return base(500, "profile missing");
        };
        // (resource, value or default) in the command's order.
        let ops: Vec<(Resource, Option<String>)> = if let Some(cmd) = profile.command(c) {
            if !cmd.read_write.contains('W') {
                return Sim::ds_put_error(
                    405,
                    &format!("DeviceCommand {c} is marked as read-only"),
                );
            }
            cmd.operations
                .iter()
                .filter_map(|o| {
                    profile
                        .resource(&o.resource)
                        .map(|r| (r.clone(), o.default.clone().or(r.default.clone())))
                })
                .collect()
        } else {
            match profile.resource(c) {
                None => return Sim::ds_put_error(404, &format!("DeviceResource {c} not found")),
                Some(r) if !r.read_write.contains('W') => {
                    return Sim::ds_put_error(
                        405,
                        &format!("DeviceResource {c} is marked as read-only"),
                    );
                }
                Some(r) => vec![(r.clone(), r.default.clone())],
            }
        };
        let mut parsed = Vec::new();
        for (r, default) in ops {
            // A missing key silently takes the default; extra keys are ignored.
            let raw = match body.get(&r.name) {
                Some(v) => v.clone(),
                None => Value::String(default.unwrap_or_default()),
            };
            if raw.is_null() {
                continue;
            }
            match devices::parse_set(&r.value_type, &raw) {
                Ok(v) => parsed.push((r, v)),
                Err(e) => return Sim::ds_put_error(400, &e),
            }
        }
        let origin = now_ns();
        let mut readings = Vec::new();
        for (r, v) in parsed {
            readings.push(json!({"id": st.uuid(), "origin": origin, "deviceName": d,
                                 "resourceName": r.name, "profileName": profile.name,
                                 "valueType": r.value_type,
                                 "value": devices::format_reading(&r.value_type, &v)}));
            st.devices.store(d, &r, v);
        }
        let writes_only = profile.command(c).is_some_and(|x| x.read_write == "W")
            || profile.resource(c).is_some_and(|x| x.read_write == "W");
        if !writes_only {
            let event = json!({"apiVersion": "v3", "id": st.uuid(), "deviceName": d,
                               "profileName": profile.name, "sourceName": c,
                               "origin": origin, "readings": readings});
            st.events.entry(d.to_string()).or_default().push(event);
        }
        ok(json!({}))
    }

    fn data(&self, st: &mut State, req: &Request, segs: &[String]) -> Response {
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (req.method.as_str(), s.as_slice()) {
            ("GET", ["event", "device", "name", d]) => {
                let q = query(req);
                // An unknown device is not an error here: no events.
                let events = st.events.get(*d).cloned().unwrap_or_default();
                let (offset, limit) = match paging(&q, events.len()) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let page: Vec<Value> = events
                    .iter()
                    .rev()
                    .skip(offset)
                    .take(limit)
                    .cloned()
                    .collect();
                ok(json!({"totalCount": events.len(), "events": page}))
            }
            _ => echo(404, "Not Found"),
        }
    }

    /// The services' auth hook: a bearer JWT whose unverified `iss` is the
    /// secret store's, checked by "introspection" (the issued table).
    fn authorised(st: &State, req: &Request) -> Result<(), Response> {
        let Some(secure) = &st.secure else {
            return Ok(());
        };
        let header = req.header("Authorization").unwrap_or("");
        let (scheme, token) = header.split_once(' ').unwrap_or(("", ""));
        if !scheme.eq_ignore_ascii_case("Bearer") || token.is_empty() {
            return Err(echo(401, "Unauthorized"));
        }
        let claims = token
            .split('.')
            .nth(1)
            .and_then(base64url_decode)
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let Some(iss) = claims.as_ref().and_then(|c| c["iss"].as_str()) else {
            return Err(echo(401, "Unauthorized"));
        };
        let active = iss == "/v1/identity/oidc"
            && secure
                .jwts
                .get(token)
                .is_some_and(|t| Instant::now() < t.expires && secure.users.contains_key(&t.user));
        if active {
            Ok(())
        } else {
            Err(base(
                401,
                &format!("Request to '{}' UNAUTHORIZED", req.path),
            ))
        }
    }

    fn secret_store(&self, st: &mut State, req: &Request) -> Response {
        let vault = |status: u16, msg: &str| Response::json(status, &json!({ "errors": [msg] }));
        let Some(secure) = st.secure.as_mut() else {
            return vault(404, "no secret store");
        };
        let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["v1", "auth", "userpass", "login", user]) => {
                let user = user.to_lowercase();
                let pass = serde_json::from_slice::<Value>(&req.body)
                    .ok()
                    .and_then(|v| v["password"].as_str().map(String::from));
                if pass.is_none() || secure.users.get(&user) != pass.as_ref() {
                    return vault(400, "invalid username or password");
                }
                secure.logins += 1;
                let token = format!("hvs.sim{:016x}", devices::Rng::seeded().next());
                secure.vault.insert(token.clone(), user.clone());
                Response::json(
                    200,
                    &json!({"request_id": "sim", "lease_id": "", "renewable": false,
                            "lease_duration": 0, "data": null, "wrap_info": null,
                            "warnings": null,
                            "auth": {"client_token": token, "accessor": "sim",
                                     "policies": ["default"], "token_policies": ["default"],
                                     "metadata": {"username": user}, "lease_duration": 3600,
                                     "renewable": true, "entity_id": "sim-entity",
                                     "token_type": "service", "orphan": true,
                                     "mfa_requirement": null, "num_uses": 0}}),
                )
            }
            ("GET", ["v1", "identity", "oidc", "token", user]) => {
                let given = req
                    .header("X-Vault-Token")
                    .or_else(|| {
                        req.header("Authorization")
                            .and_then(|a| a.strip_prefix("Bearer "))
                    })
                    .unwrap_or("");
                if secure.vault.get(given).map(String::as_str) != Some(*user) {
                    return vault(403, "permission denied");
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let header = devices::base64url(br#"{"alg":"ES384","kid":"sim"}"#);
                let claims = json!({"aud": "sim", "exp": now + secure.jwt_ttl, "iat": now,
                                    "iss": "/v1/identity/oidc", "namespace": "root",
                                    "sub": "sim-entity", "name": user});
                let sig = devices::base64url(&devices::Rng::seeded().next().to_be_bytes());
                let jwt = format!(
                    "{header}.{}.{sig}",
                    devices::base64url(claims.to_string().as_bytes())
                );
                secure.jwts.insert(
                    jwt.clone(),
                    Token {
                        user: user.to_string(),
                        expires: Instant::now() + Duration::from_secs(secure.jwt_ttl),
                    },
                );
                Response::json(
                    200,
                    &json!({"request_id": "sim", "lease_id": "", "renewable": false,
                            "lease_duration": 0, "wrap_info": null, "warnings": null,
                            "data": {"client_id": "sim", "token": jwt, "ttl": secure.jwt_ttl}}),
                )
            }
            _ => vault(404, "unsupported path"),
        }
    }

    fn control(&self, st: &mut State, req: &Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sim/requests") => Response::json(200, &json!(st.requests)),
            ("POST", "/sim/revoke") => {
                if let Some(s) = st.secure.as_mut() {
                    s.jwts.clear();
                }
                Response::json(200, &json!({}))
            }
            ("GET", "/sim/stats") => Response::json(
                200,
                &json!({"logins": st.secure.as_ref().map_or(0, |s| s.logins),
                        "requests": st.requests.len()}),
            ),
            _ => echo(404, "Not Found"),
        }
    }
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

impl Handler for Sim {
    fn handle(&self, req: &Request) -> Response {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let response = if req.path.starts_with("/sim/") {
            self.control(&mut st, req)
        } else if self.service == Service::SecretStore {
            self.secret_store(&mut st, req)
        } else if req.path == "/api/v3/ping" && req.method == "GET" {
            let name = match self.service {
                Service::Metadata => "core-metadata",
                Service::Command => "core-command",
                _ => "core-data",
            };
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Response::json(
                200,
                &json!({"apiVersion": "v3", "timestamp": dedge::edgex::unix_date(secs),
                        "serviceName": name}),
            )
        } else if let Err(denied) = Sim::authorised(&st, req) {
            denied
        } else if req.path == "/api/v3/version" && req.method == "GET" {
            let name = match self.service {
                Service::Metadata => "core-metadata",
                Service::Command => "core-command",
                _ => "core-data",
            };
            Response::json(
                200,
                &json!({"apiVersion": "v3", "version": "4.0.2", "serviceName": name}),
            )
        } else {
            let segs: Option<Vec<String>> = req.path.strip_prefix("/api/v3/").map(|p| {
                p.split('/')
                    .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
                    .collect()
            });
            match segs {
                None => echo(404, "Not Found"),
                Some(segs) => match self.service {
                    Service::Metadata => self.metadata(&mut st, req, &segs),
                    Service::Command => {
                        st.requests.push(json!({
                            "method": req.method, "path": req.path,
                            "query": req.query,
                            "body": String::from_utf8_lossy(&req.body),
                        }));
                        self.command(&mut st, req, &segs)
                    }
                    Service::Data => self.data(&mut st, req, &segs),
                    Service::SecretStore => echo(404, "Not Found"),
                },
            }
        };
        let id = st.uuid();
        response.with_header("X-Correlation-ID", &id)
    }

    fn refusal(&self, status: u16, message: &str) -> Response {
        echo(status, message)
    }
}

struct Args {
    res: PathBuf,
    ports: [u16; 4],
    secure: Option<(String, String)>,
    jwt_ttl: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        res: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/edgex/device-virtual-res"),
        ports: [0; 4],
        secure: None,
        jwt_ttl: 3600,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let port = |v: String| v.parse::<u16>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--res" => a.res = value()?.into(),
            "--metadata-port" => a.ports[0] = port(value()?)?,
            "--command-port" => a.ports[1] = port(value()?)?,
            "--data-port" => a.ports[2] = port(value()?)?,
            "--secret-store-port" => a.ports[3] = port(value()?)?,
            "--secure" => {
                let v = value()?;
                let (u, p) = v.split_once(':').ok_or("--secure USER:PASSWORD")?;
                a.secure = Some((u.to_lowercase(), p.to_string()));
            }
            "--jwt-ttl" => a.jwt_ttl = value()?.parse().map_err(|e| format!("--jwt-ttl: {e}"))?,
            "-h" | "--help" => {
                println!("edgex-simulator (a test tool): see tests/edgex/README.md");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("edgex-simulator: {e}");
            std::process::exit(2);
        }
    };
    let devices = match Devices::load(&args.res) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("edgex-simulator: {e}");
            std::process::exit(1);
        }
    };
    let bind = |port: u16| {
        TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
            eprintln!("edgex-simulator: listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        })
    };
    let services = [
        Service::Metadata,
        Service::Command,
        Service::Data,
        Service::SecretStore,
    ];
    let count = if args.secure.is_some() { 4 } else { 3 };
    let listeners: Vec<TcpListener> = args.ports[..count].iter().map(|&p| bind(p)).collect();
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| {
            format!(
                "http://{}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let state = Arc::new(Mutex::new(State {
        devices,
        events: BTreeMap::new(),
        requests: Vec::new(),
        secure: args.secure.map(|(u, p)| Secure {
            users: [(u, p)].into_iter().collect(),
            jwt_ttl: args.jwt_ttl,
            ..Secure::default()
        }),
        command_url: urls[1].clone(),
        counter: 0,
    }));
    let limits = Limits {
        connections: 256,
        body: 1 << 20,
        ..Limits::default()
    };
    let _servers: Vec<Server> = listeners
        .into_iter()
        .zip(services)
        .map(|(l, service)| {
            let sim = Arc::new(Sim {
                service,
                state: state.clone(),
            });
            Server::spawn(l, limits, sim)
        })
        .collect();
    let mut line = json!({"metadata": urls[0], "command": urls[1], "data": urls[2]});
    if count == 4 {
        line["secret_store"] = json!(urls[3]);
    }
    println!("{line}");
    loop {
        std::thread::park();
    }
}

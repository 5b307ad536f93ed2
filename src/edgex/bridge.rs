//! The per-lease EdgeX bridge: an HTTP API inside the tenant's container
//! (a socket in its network namespace, `runtime::net::listen_in`) that
//! speaks core-command's API for exactly the devices and commands the lease
//! grants, and nothing else.
//!
//! Served:
//! - `GET /api/v3/ping`
//! - `GET /api/v3/device/all`: the leased devices and commands, shaped like
//!   core-command's listing
//! - `GET /api/v3/device/name/{device}/{command}[?ds-pushevent=..&ds-returnevent=..]`
//! - `PUT /api/v3/device/name/{device}/{command}` with `{"Resource": "value", ...}`
//!
//! Every request is checked before EdgeX sees it, in this order: rate
//! limit, method and path, names (percent-decoded, then matched exactly
//! against the grant: no regular expressions, `ds-regexcmd=false` always
//! sent), query parameters (only the two above, `true`/`false`), hidden
//! resources, read/write grant, then for writes the body: a JSON object
//! naming each visible resource of the command once, values checked
//! against the profile's value types and forwarded as canonical strings.
//! Errors are EdgeX-shaped (`{"apiVersion","message","statusCode"}`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use super::Error;
use super::catalogue::{Catalogue, Command};
use super::client::{Client, command_path};
use super::grants::{DeviceGrant, Grants};
use super::http::{Handler, Limits, Request, Response, Server};
use super::meter::{self, Meter, Usage};
use super::value;

/// Where the bridge listens inside every container (core-command's own
/// default port), and the variable that tells the container.
pub const PORT: u16 = 59882;
pub const ENV: &str = "DEDGE_EDGEX_URL";

/// Per-lease limits on the bridge.
#[derive(Debug, Clone, Copy)]
pub struct BridgeLimits {
    /// Requests per second, sustained, and the burst allowed above it.
    pub rate: f64,
    pub burst: f64,
    pub http: Limits,
}

impl Default for BridgeLimits {
    fn default() -> BridgeLimits {
        BridgeLimits {
            rate: 20.0,
            burst: 40.0,
            http: Limits {
                body: 16 << 10,
                connections: 4,
                ..Limits::default()
            },
        }
    }
}

impl BridgeLimits {
    /// The board's `lease_rate` (bursts of twice that) and `lease_max_body`.
    pub fn from_board(e: &crate::board::Edgex) -> BridgeLimits {
        let d = BridgeLimits::default();
        BridgeLimits {
            rate: f64::from(e.lease_rate),
            burst: 2.0 * f64::from(e.lease_rate),
            http: Limits {
                body: usize::try_from(e.lease_max_body.bytes()).unwrap_or(d.http.body),
                ..d.http
            },
        }
    }
}

/// A token bucket.
struct RateLimit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One lease's bridge.
pub struct Bridge {
    lease: String,
    grants: Grants,
    catalogue: Arc<RwLock<Catalogue>>,
    client: Arc<Client>,
    meter: Meter,
    limits: BridgeLimits,
    rate: RateLimit,
}

/// A refusal: status and message, counted against `device` if known.
struct Refusal {
    status: u16,
    message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// EdgeX's error body.
fn base_response(status: u16, message: &str) -> Response {
    Response::json(
        status,
        &json!({"apiVersion": "v3", "message": message, "statusCode": status}),
    )
}

impl Bridge {
    pub fn new(
        lease: &str,
        grants: Grants,
        catalogue: Arc<RwLock<Catalogue>>,
        client: Arc<Client>,
        meter: Meter,
        limits: BridgeLimits,
    ) -> Bridge {
        Bridge {
            lease: lease.to_string(),
            grants,
            catalogue,
            client,
            meter,
            rate: RateLimit::new(limits.rate, limits.burst),
            limits,
        }
    }

    /// Serves this bridge on `listener` (made by `runtime::net::listen_in`
    /// in the container's network namespace) until the server is dropped.
    pub fn serve(self: Arc<Self>, listener: std::net::TcpListener) -> Server {
        let limits = self.limits.http;
        Server::spawn(listener, limits, self)
    }

    /// The URL a container is given in [`ENV`].
    pub fn url() -> String {
        format!("http://127.0.0.1:{PORT}")
    }

    fn count(&self, device: &str, u: &Usage) {
        if let Err(e) = self.meter.add(&self.lease, device, u) {
            log::error!("lease {}: cannot count EdgeX use: {e}", self.lease);
        }
    }

    fn route(&self, req: &Request) -> Result<(String, Response), (String, Refusal)> {
        let anon = |r: Refusal| (meter::NO_DEVICE.to_string(), r);
        if !self.rate.allow() {
            return Err(anon(refuse(
                429,
                format!(
                    "rate limit: at most {} requests per second (burst {}) for this lease",
                    self.limits.rate, self.limits.burst
                ),
            )));
        }
        let segments: Vec<&str> = req.path.split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["", "api", "v3", "ping"]) => Ok((
                meter::NO_DEVICE.to_string(),
                Response::json(
                    200,
                    &json!({"apiVersion": "v3", "timestamp": unix_date(),
                            "serviceName": "dedge-edgex-bridge"}),
                ),
            )),
            ("GET", ["", "api", "v3", "device", "all"]) => {
                Ok((meter::NO_DEVICE.to_string(), self.listing()))
            }
            (m, ["", "api", "v3", "device", "name", device, command]) => {
                let device = decode(device).map_err(anon)?;
                let command = decode(command).map_err(anon)?;
                let Some(grant) = self.grants.get(&device) else {
                    return Err(anon(refuse(
                        403,
                        format!("device `{device}` is not leased"),
                    )));
                };
                let result = match m {
                    "GET" => self.read(req, &device, &command, grant),
                    "PUT" => self.write(req, &device, &command, grant),
                    _ => Err(refuse(
                        405,
                        format!("method {m} not allowed: use GET to read, PUT to write"),
                    )),
                };
                result.map(|r| (device.clone(), r)).map_err(|r| (device, r))
            }
            (_, ["", "api", "v3", ..]) => Err(anon(refuse(
                404,
                "not served by the bridge: /api/v3/ping, /api/v3/device/all, \
                 /api/v3/device/name/{device}/{command}",
            ))),
            _ => Err(anon(refuse(404, format!("no route {}", req.path)))),
        }
    }

    /// The catalogue's entry for a granted command, refusing hidden and
    /// unsold ones (the grant is checked against the catalogue of the day:
    /// a command the operator stopped selling is refused).
    fn command(&self, device: &str, command: &str) -> Result<Command, Refusal> {
        let cat = self.catalogue.read().unwrap_or_else(|p| p.into_inner());
        cat.command(device, command).cloned().ok_or_else(|| {
            refuse(
                404,
                format!("command `{command}` of device `{device}` is not offered by this gateway"),
            )
        })
    }

    fn read(
        &self,
        req: &Request,
        device: &str,
        command: &str,
        grant: &DeviceGrant,
    ) -> Result<Response, Refusal> {
        leased(&grant.read, device, command, "reading")?;
        let (push, ret) = read_flags(req.query.as_deref())?;
        let c = self.command(device, command)?;
        if !c.read {
            return Err(refuse(405, format!("command `{command}` cannot be read")));
        }
        let answer = self
            .client
            .command_get(device, command, push, ret)
            .map_err(upstream)?;
        Ok(if answer.is_null() {
            // As core-command does for ds-returnevent=false.
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Vec::new(),
            }
        } else {
            Response::json(200, &answer)
        })
    }

    fn write(
        &self,
        req: &Request,
        device: &str,
        command: &str,
        grant: &DeviceGrant,
    ) -> Result<Response, Refusal> {
        leased(&grant.write, device, command, "writing")?;
        if req.query.is_some() {
            return Err(refuse(400, "a write takes no query parameters"));
        }
        let c = self.command(device, command)?;
        if !c.write {
            return Err(refuse(
                405,
                format!("command `{command}` cannot be written"),
            ));
        }
        let values = write_body(&req.body, &c)?;
        self.client
            .write(device, command, &values)
            .map_err(upstream)?;
        Ok(Response::json(
            200,
            &json!({"apiVersion": "v3", "statusCode": 200}),
        ))
    }

    fn listing(&self) -> Response {
        let cat = self.catalogue.read().unwrap_or_else(|p| p.into_inner());
        let mut devices = Vec::new();
        for (name, grant) in &self.grants {
            let Some(d) = cat.devices.get(name) else {
                continue;
            };
            let commands: Vec<Value> = d
                .commands
                .iter()
                .filter(|(c, _)| grant.read.contains(*c) || grant.write.contains(*c))
                .map(|(c, cmd)| {
                    json!({
                        "name": c,
                        "get": grant.read.contains(c) && cmd.read,
                        "set": grant.write.contains(c) && cmd.write,
                        "path": command_path(name, c),
                        "url": Bridge::url(),
                        "parameters": cmd.resources.iter().filter(|r| !r.hidden).map(|r| json!({
                            "resourceName": r.name, "valueType": r.value_type.to_string()
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            devices.push(json!({"deviceName": name, "profileName": d.profile,
                                "coreCommands": commands}));
        }
        Response::json(
            200,
            &json!({"apiVersion": "v3", "statusCode": 200, "totalCount": devices.len(),
                    "deviceCoreCommands": devices}),
        )
    }
}

impl Handler for Bridge {
    fn handle(&self, req: &Request) -> Response {
        let bytes_in = req.body.len() as u64;
        match self.route(req) {
            Ok((device, resp)) => {
                let is_call = req.path.starts_with("/api/v3/device/name/");
                self.count(
                    &device,
                    &Usage {
                        reads: u64::from(is_call && req.method == "GET"),
                        writes: u64::from(is_call && req.method == "PUT"),
                        bytes_in,
                        bytes_out: resp.body.len() as u64,
                        refused: 0,
                    },
                );
                resp
            }
            Err((device, r)) => {
                let resp = base_response(r.status, &r.message);
                log::info!(
                    "lease {}: {} {}: {}",
                    self.lease,
                    r.status,
                    req.path,
                    r.message
                );
                self.count(
                    &device,
                    &Usage {
                        refused: 1,
                        bytes_in,
                        bytes_out: resp.body.len() as u64,
                        ..Usage::default()
                    },
                );
                resp
            }
        }
    }

    fn refusal(&self, status: u16, message: &str) -> Response {
        self.count(
            meter::NO_DEVICE,
            &Usage {
                refused: 1,
                ..Usage::default()
            },
        );
        base_response(status, message)
    }
}

/// Is `command` in the lease's grant for reading (writing)?
fn leased(grant: &BTreeSet<String>, device: &str, command: &str, how: &str) -> Result<(), Refusal> {
    if grant.contains(command) {
        Ok(())
    } else {
        Err(refuse(
            403,
            format!("command `{command}` of device `{device}` is not leased for {how}"),
        ))
    }
}

/// A path segment, percent-decoded; must be UTF-8 and non-empty.
fn decode(segment: &str) -> Result<String, Refusal> {
    let s = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| refuse(400, "a device or command name is not UTF-8 once decoded"))?;
    if s.is_empty() {
        return Err(refuse(400, "empty device or command name"));
    }
    Ok(s.into_owned())
}

/// `ds-pushevent` and `ds-returnevent`, each at most once and exactly
/// `true` or `false`; any other parameter is refused, not dropped, so a
/// tenant learns at once that `ds-regexcmd` and friends do not pass.
fn read_flags(query: Option<&str>) -> Result<(bool, bool), Refusal> {
    let (mut push, mut ret) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "ds-pushevent" => &mut push,
            "ds-returnevent" => &mut ret,
            _ => {
                return Err(refuse(
                    400,
                    format!(
                        "query parameter `{}` is not allowed: the bridge takes only \
                         ds-pushevent and ds-returnevent",
                        k.escape_debug()
                    ),
                ));
            }
        };
        let b = match v {
            "true" => true,
            "false" => false,
            _ => {
                return Err(refuse(
                    400,
                    format!("invalid query parameter, {k} has to be true or false"),
                ));
            }
        };
        if slot.replace(b).is_some() {
            return Err(refuse(400, format!("query parameter {k} given twice")));
        }
    }
    Ok((push.unwrap_or(false), ret.unwrap_or(true)))
}

/// A write's body: a JSON object naming every visible resource of the
/// command exactly once (the device service would silently write defaults
/// for missing ones and ignore extra ones); values checked by type.
fn write_body(body: &[u8], c: &Command) -> Result<BTreeMap<String, String>, Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(400, format!("the body is not JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(refuse(
            400,
            "the body must be a JSON object: {\"Resource\": \"value\"}",
        ));
    };
    let visible: Vec<_> = c.resources.iter().filter(|r| !r.hidden).collect();
    let mut out = BTreeMap::new();
    for (k, v) in &map {
        let Some(r) = c.resources.iter().find(|r| &r.name == k) else {
            return Err(refuse(
                400,
                format!(
                    "`{}` is not a resource of this command (it writes {})",
                    k.escape_debug(),
                    visible
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if r.hidden {
            return Err(refuse(403, format!("resource `{k}` is hidden")));
        }
        let text = value::check_write(r.value_type, v)
            .map_err(|e| refuse(400, format!("resource `{k}`: {e}")))?;
        out.insert(k.clone(), text);
    }
    if let Some(missing) = visible.iter().find(|r| !out.contains_key(&r.name)) {
        return Err(refuse(
            400,
            format!("resource `{}` is missing from the body", missing.name),
        ));
    }
    Ok(out)
}

/// EdgeX's answers as the tenant sees them: its own errors keep their
/// status and message; the agent's credentials being refused or EdgeX
/// being down are the gateway's problem (502/503), not the tenant's.
fn upstream(e: Error) -> Refusal {
    match e {
        Error::Status { status, .. } if status == 401 || status == 403 => refuse(
            502,
            "the gateway's EdgeX refused the agent's credentials; the operator has been told",
        ),
        Error::Status {
            status, message, ..
        } => refuse(status, message),
        Error::Unavailable(m) => refuse(503, format!("EdgeX is unavailable: {m}")),
        Error::Auth(m) => refuse(503, format!("EdgeX login failed: {m}")),
        other => refuse(502, format!("unexpected answer from EdgeX: {other}")),
    }
}

/// `time.UnixDate`, as EdgeX's ping reports it.
fn unix_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    super::unix_date(secs)
}

/// The bridge of a lease, served in a container's network namespace.
pub struct Serving {
    _server: Server,
    pub inside: SocketAddr,
}

impl Serving {
    /// Serves `bridge` on `listener`, made in the container's network
    /// namespace on `PORT` by the caller (`runtime::net::listen_in`).
    pub fn open(listener: std::net::TcpListener, bridge: Arc<Bridge>) -> Result<Serving, Error> {
        let inside = listener
            .local_addr()
            .map_err(|e| Error::Unavailable(format!("bridge socket: {e}")))?;
        Ok(Serving {
            _server: bridge.serve(listener),
            inside,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edgex::catalogue::Resource;
    use crate::edgex::value::ValueType;

    fn cmd(resources: &[(&str, ValueType, bool)]) -> Command {
        Command {
            read: true,
            write: true,
            resources: resources
                .iter()
                .map(|(n, t, h)| Resource {
                    name: n.to_string(),
                    value_type: *t,
                    hidden: *h,
                })
                .collect(),
        }
    }

    fn status<T>(r: Result<T, Refusal>) -> u16 {
        r.map(|_| 200).unwrap_or_else(|r| r.status)
    }

    #[test]
    fn only_two_flags_pass_and_only_as_booleans() {
        assert_eq!(read_flags(None).ok().unwrap(), (false, true));
        assert_eq!(
            read_flags(Some("ds-returnevent=false&ds-pushevent=true"))
                .ok()
                .unwrap(),
            (true, false)
        );
        for bad in [
            "ds-regexcmd=true",
            "ds-regexcmd=false",
            "ds-pushevent=yes",
            "ds-pushevent=true&ds-pushevent=true",
            "x",
            "ds-returnevent",
        ] {
            assert_eq!(status(read_flags(Some(bad))), 400, "{bad}");
        }
    }

    #[test]
    fn write_bodies_name_each_visible_resource_once() {
        let c = cmd(&[
            ("Int8", ValueType::Int(8), false),
            ("EnableRandomization_Int8", ValueType::Bool, true),
        ]);
        let ok = write_body(br#"{"Int8":"-5"}"#, &c).ok().unwrap();
        assert_eq!(ok["Int8"], "-5");
        assert_eq!(ok.len(), 1);
        assert_eq!(status(write_body(br#"{"Int8":"300"}"#, &c)), 400);
        assert_eq!(status(write_body(br#"{"Int8":5}"#, &c)), 400);
        assert_eq!(status(write_body(br#"{}"#, &c)), 400);
        assert_eq!(status(write_body(br#"{"Int8":"1","Other":"1"}"#, &c)), 400);
        assert_eq!(
            status(write_body(
                br#"{"Int8":"1","EnableRandomization_Int8":"true"}"#,
                &c
            )),
            403
        );
        assert_eq!(status(write_body(b"[1]", &c)), 400);
        assert_eq!(status(write_body(b"not json", &c)), 400);
    }

    #[test]
    fn names_are_decoded_once_and_must_be_utf8() {
        assert_eq!(decode("a%2Fb").ok().unwrap(), "a/b");
        assert_eq!(decode(".%2A").ok().unwrap(), ".*");
        assert_eq!(status(decode("%FF")), 400);
        assert_eq!(status(decode("")), 400);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let r = RateLimit::new(1.0, 3.0);
        assert!((0..3).all(|_| r.allow()));
        assert!(!r.allow());
    }

    #[test]
    fn edgex_trouble_is_the_gateways_not_the_tenants() {
        let s = |e| upstream(e).status;
        assert_eq!(
            s(Error::Status {
                url: "u".into(),
                status: 401,
                message: "m".into()
            }),
            502
        );
        assert_eq!(
            s(Error::Status {
                url: "u".into(),
                status: 404,
                message: "m".into()
            }),
            404
        );
        assert_eq!(s(Error::Unavailable("down".into())), 503);
    }
}

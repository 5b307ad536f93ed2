//! EdgeX through the agent, against the simulator (tests/edgex/): the
//! client, the catalogue, secure mode, and the per-lease bridge with every
//! trick a tenant might try, EdgeX going down and coming back, and the
//! counts that go on the invoice. The last test runs a real container
//! that reads and writes through its bridge (root and cgroups; SKIP
//! otherwise).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dedge::board::Device as BoardDevice;
use dedge::edgex::bridge::{self, Bridge, BridgeLimits};
use dedge::edgex::catalogue::Catalogue;
use dedge::edgex::grants::{DeviceGrant, Grants};
use dedge::edgex::meter::{self, Meter};
use dedge::edgex::{Error, http};
use dedge::store::Store;
use serde_json::Value;

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/edgex.rs"]
mod edgex;
#[path = "common/oci.rs"]
mod oci;
#[path = "common/sandbox.rs"]
mod sandbox;
use edgex::Simulator;

const INT: &str = "Random-Integer-Device";
const BOOL: &str = "Random-Boolean-Device";

fn offers() -> Vec<BoardDevice> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        BoardDevice {
            name: INT.into(),
            read: s(&["Int8", "Int16", "Int32"]),
            // The hidden resource is left out of the catalogue.
            write: s(&["WriteInt8Value", "Int16", "EnableRandomization_Int8"]),
        },
        BoardDevice {
            name: BOOL.into(),
            read: s(&["Bool"]),
            write: vec![],
        },
        BoardDevice {
            name: "Random-Binary-Device".into(),
            read: s(&["Binary"]),
            write: s(&["Binary"]),
        },
        BoardDevice {
            name: "No-Such-Device".into(),
            read: s(&["X"]),
            write: vec![],
        },
    ]
}

/// The lease: two of the integer device's reads, its write command and
/// (try as it might) the hidden resource; the boolean device is sold but
/// not leased.
fn grants() -> Grants {
    let set = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    [(
        INT.to_string(),
        DeviceGrant {
            read: set(&["Int8", "Int32"]),
            write: set(&["WriteInt8Value", "EnableRandomization_Int8"]),
        },
    )]
    .into_iter()
    .collect()
}

struct Served {
    addr: SocketAddr,
    meter: Meter,
    _server: http::Server,
    _store: Store,
}

fn serve(sim: &Simulator, limits: BridgeLimits) -> Served {
    let client = Arc::new(sim.client());
    let cat = Catalogue::read(&client, &offers()).unwrap();
    let store = Store::temporary().unwrap();
    let meter = Meter::new(store.tree("edgex-usage").unwrap());
    let b = Arc::new(Bridge::new(
        "lease-7",
        grants(),
        Arc::new(RwLock::new(cat)),
        client,
        meter.clone(),
        limits,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    Served {
        addr,
        meter,
        _server: b.serve(listener),
        _store: store,
    }
}

fn roomy() -> BridgeLimits {
    BridgeLimits {
        rate: 1000.0,
        burst: 1000.0,
        ..BridgeLimits::default()
    }
}

/// One raw HTTP/1.1 exchange (no client library in between that could
/// normalise the path). Returns the status and the body as JSON (Null
/// when empty).
fn call(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: bridge\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
    };
    (status, json)
}

fn read_path(device: &str, command: &str) -> String {
    format!("/api/v3/device/name/{device}/{command}")
}

/// The EdgeX error shape every refusal has, and its message.
fn refused(r: &(u16, Value), status: u16) -> String {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["statusCode"], status, "{}", r.1);
    assert_eq!(r.1["apiVersion"], "v3", "{}", r.1);
    r.1["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_client_reads_writes_and_lists_like_edgex() {
    let sim = Simulator::start(&[]);
    let c = sim.client();
    c.ping().unwrap();
    assert_eq!(c.version().unwrap(), "4.0.2");
    let all = c.devices().unwrap();
    assert_eq!(all.len(), 6, "device-virtual's six devices");
    assert!(all.iter().all(|d| d.service_name == "device-virtual"));
    let services = c.device_services().unwrap();
    assert_eq!(services[0].name, "device-virtual");
    let d = c.device(INT).unwrap();
    assert_eq!(d.profile_name, INT);
    assert_eq!(d.service_name, "device-virtual");
    let p = c.profile(&d.profile_name).unwrap();
    assert!(p.command("WriteInt8Value").is_some());
    let e = c.read(INT, "Int8").unwrap();
    assert_eq!(e.source_name, "Int8");
    assert_eq!(e.readings.len(), 1);
    assert!(e.readings[0].value.as_ref().unwrap().is_string());
    let values = [("Int8".to_string(), "-7".to_string())]
        .into_iter()
        .collect();
    c.write(INT, "WriteInt8Value", &values).unwrap();
    let e = c.read(INT, "Int8").unwrap();
    assert_eq!(e.readings[0].value.as_ref().unwrap(), "-7");
    // An event is pushed to core-data by a pushed read.
    let v = c.command_get(INT, "Int16", true, false).unwrap();
    assert!(v.is_null(), "ds-returnevent=false answers an empty body");
    let events = c.events(INT, 10).unwrap();
    assert!(
        events.iter().any(|e| e.source_name == "Int16"),
        "{events:?}"
    );
    // Errors keep EdgeX's status and message.
    match c.read(INT, "Nope") {
        Err(Error::Status {
            status: 404,
            message,
            ..
        }) => assert!(
            message.contains("DeviceResource Nope not found"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    match c.device("Nope") {
        Err(Error::Status { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_catalogue_sells_only_what_exists_and_is_allowed() {
    let sim = Simulator::start(&[]);
    let cat = Catalogue::read(&sim.client(), &offers()).unwrap();
    let int = &cat.devices[INT];
    assert_eq!(int.profile, INT);
    assert_eq!(
        int.commands.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Int16", "Int32", "Int8", "WriteInt8Value"]
    );
    assert!(int.commands["Int16"].read && int.commands["Int16"].write);
    assert!(cat.devices[BOOL].commands["Bool"].read);
    assert!(cat.devices["Random-Binary-Device"].commands["Binary"].read);
    assert!(!cat.devices["Random-Binary-Device"].commands["Binary"].write);
    assert!(!cat.devices.contains_key("No-Such-Device"));
    let problems = cat.problems.join("\n");
    for expected in [
        "`EnableRandomization_Int8`: hidden",
        "`Binary`: offered for writing but profile `Random-Binary-Device` marks it read-only",
        "device `No-Such-Device`: core-metadata has no such device",
    ] {
        assert!(problems.contains(expected), "{expected} in\n{problems}");
    }
    // The capability document carries profiles and value types.
    let offers = cat.offers();
    let int = offers.iter().find(|o| o.name == INT).unwrap();
    assert_eq!(int.profile.as_deref(), Some(INT));
    let w = int
        .commands
        .iter()
        .find(|c| c.name == "WriteInt8Value")
        .unwrap();
    assert_eq!(w.value_types, ["Int8"]);
}

#[test]
fn secure_mode_logs_in_renews_and_survives_revocation() {
    let sim = Simulator::start(&["--secure", "dedge:pw", "--jwt-ttl", "2"]);
    let c = sim.client();
    // The services refuse a request without a token.
    let r = ureq::get(&format!("{}/api/v3/device/name/{INT}", sim.metadata))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    c.read(INT, "Int8").unwrap();
    assert_eq!(sim.get("/sim/stats")["logins"], 1);
    c.read(INT, "Int8").unwrap();
    assert_eq!(sim.get("/sim/stats")["logins"], 1, "the token is reused");
    // Past 90% of its life the token is renewed before it is used.
    std::thread::sleep(Duration::from_millis(2100));
    c.read(INT, "Int8").unwrap();
    assert_eq!(sim.get("/sim/stats")["logins"], 2);
    // Revoked early (the store restarted, say): a 401, a new login, the
    // same call again.
    sim.revoke_tokens();
    c.read(INT, "Int8").unwrap();
    assert_eq!(sim.get("/sim/stats")["logins"], 3);
    // Wrong credentials are a clear error.
    let bad = dedge::edgex::client::Client::new(
        &sim.metadata,
        &sim.command,
        &sim.data,
        Duration::from_secs(5),
    )
    .with_jwt(
        sim.secret_store.as_deref().unwrap(),
        dedge::edgex::client::Credentials {
            username: "dedge".into(),
            password: "wrong".into(),
        },
    );
    match bad.read(INT, "Int8") {
        Err(Error::Status {
            status: 400,
            message,
            ..
        }) => assert!(
            message.contains("invalid username or password"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_bridge_passes_leased_calls_and_refuses_every_trick() {
    let sim = Simulator::start(&[]);
    let b = serve(&sim, roomy());
    let a = b.addr;

    // A leased read and a leased write go through.
    let r = call(a, "GET", &read_path(INT, "Int8"), "");
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["event"]["readings"][0]["resourceName"], "Int8");
    let r = call(
        a,
        "PUT",
        &read_path(INT, "WriteInt8Value"),
        r#"{"Int8":"-7"}"#,
    );
    assert_eq!(r.0, 200, "{}", r.1);
    let r = call(a, "GET", &read_path(INT, "Int8"), "");
    assert_eq!(r.1["event"]["readings"][0]["value"], "-7");
    let r = call(
        a,
        "GET",
        &format!("{}?ds-returnevent=false", read_path(INT, "Int32")),
        "",
    );
    assert_eq!((r.0, r.1.clone()), (200, Value::Null));
    // The listing shows exactly the lease.
    let r = call(a, "GET", "/api/v3/device/all", "");
    let names: Vec<&str> = r.1["deviceCoreCommands"][0]["coreCommands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Int32", "Int8", "WriteInt8Value"]);
    assert_eq!(r.1["totalCount"], 1);
    let forwarded = sim.requests().len();

    // Each trick, its status and what the tenant is told.
    let tricks: &[(&str, &str, String, &str, u16, &str)] = &[
        (
            "unleased device",
            "GET",
            read_path(BOOL, "Bool"),
            "",
            403,
            "device `Random-Boolean-Device` is not leased",
        ),
        (
            "unleased command",
            "GET",
            read_path(INT, "Int16"),
            "",
            403,
            "`Int16` of device `Random-Integer-Device` is not leased for reading",
        ),
        (
            "regex command name",
            "GET",
            read_path(INT, ".*"),
            "",
            403,
            "`.*` of device",
        ),
        (
            "regex command name, encoded",
            "GET",
            read_path(INT, "Int%2E%2A"),
            "",
            403,
            "`Int.*` of device",
        ),
        (
            "regex mode switched on",
            "GET",
            format!("{}?ds-regexcmd=true", read_path(INT, "Int8")),
            "",
            400,
            "`ds-regexcmd` is not allowed",
        ),
        (
            "other query passed through",
            "GET",
            format!("{}?limit=5", read_path(INT, "Int8")),
            "",
            400,
            "`limit` is not allowed",
        ),
        (
            "bad flag value",
            "GET",
            format!("{}?ds-pushevent=yes", read_path(INT, "Int8")),
            "",
            400,
            "ds-pushevent has to be true or false",
        ),
        (
            "path climbing in a name",
            "GET",
            read_path("Random-Integer-Device%2F..%2FRandom-Boolean-Device", "Bool"),
            "",
            403,
            "`Random-Integer-Device/../Random-Boolean-Device` is not leased",
        ),
        (
            "hidden resource",
            "PUT",
            read_path(INT, "EnableRandomization_Int8"),
            r#"{"EnableRandomization_Int8":"true"}"#,
            404,
            "is not offered by this gateway",
        ),
        (
            "hidden resource in a command's body",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            r#"{"Int8":"1","EnableRandomization_Int8":"true"}"#,
            403,
            "resource `EnableRandomization_Int8` is hidden",
        ),
        (
            "write to a read grant",
            "PUT",
            read_path(INT, "Int8"),
            r#"{"Int8":"5"}"#,
            403,
            "is not leased for writing",
        ),
        (
            "value out of range",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            r#"{"Int8":"300"}"#,
            400,
            "`300` is not a valid Int8",
        ),
        (
            "value of the wrong JSON type",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            r#"{"Int8":5}"#,
            400,
            "must be sent as a JSON string",
        ),
        (
            "missing resource (EdgeX would write its default)",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            r#"{}"#,
            400,
            "resource `Int8` is missing",
        ),
        (
            "extra resource (EdgeX would ignore it)",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            r#"{"Int8":"1","Int16":"1"}"#,
            400,
            "`Int16` is not a resource of this command",
        ),
        (
            "body not JSON",
            "PUT",
            read_path(INT, "WriteInt8Value"),
            "Int8=1",
            400,
            "not JSON",
        ),
        (
            "query on a write",
            "PUT",
            format!("{}?ds-regexcmd=true", read_path(INT, "WriteInt8Value")),
            r#"{"Int8":"1"}"#,
            400,
            "a write takes no query parameters",
        ),
        (
            "other method",
            "DELETE",
            read_path(INT, "Int8"),
            "",
            405,
            "method DELETE not allowed",
        ),
        (
            "other API",
            "GET",
            "/api/v3/deviceprofile/name/Random-Integer-Device".into(),
            "",
            404,
            "not served by the bridge",
        ),
        (
            "outside the API",
            "GET",
            "/../etc/passwd".into(),
            "",
            404,
            "no route",
        ),
    ];
    for (what, method, target, body, status, says) in tricks {
        let r = call(a, method, target, body);
        let message = refused(&r, *status);
        assert!(message.contains(says), "{what}: {message:?} lacks {says:?}");
    }
    // None of them reached EdgeX.
    assert_eq!(sim.requests().len(), forwarded, "{:#?}", sim.requests());

    // An oversized body is refused before it is read.
    let big = format!(r#"{{"Int8":"{}"}}"#, "1".repeat(20 << 10));
    let message = refused(
        &call(a, "PUT", &read_path(INT, "WriteInt8Value"), &big),
        413,
    );
    assert!(
        message.contains("over the limit of 16384 bytes"),
        "{message}"
    );

    // Everything EdgeX saw: exact names, one encoded segment each, and
    // ds-regexcmd=false on every read.
    for r in sim.requests() {
        let path = r["path"].as_str().unwrap();
        assert!(
            path.starts_with("/api/v3/device/name/Random-Integer-Device/"),
            "{r}"
        );
        if r["method"] == "GET" {
            assert!(
                r["query"].as_str().unwrap().ends_with("&ds-regexcmd=false"),
                "{r}"
            );
        } else {
            assert_eq!(r["query"], Value::Null, "{r}");
            assert_eq!(r["body"], r#"{"Int8":"-7"}"#, "{r}");
        }
    }

    // The counts: three reads and a write of the device forwarded, every
    // refusal counted, nothing counted under names a tenant made up.
    let usage = b.meter.usage("lease-7").unwrap();
    let int = usage[INT];
    assert_eq!((int.reads, int.writes), (3, 1), "{usage:?}");
    assert_eq!(
        int.bytes_in,
        r#"{"Int8":"-7"}"#.len() as u64 + tricks_body_bytes(tricks)
    );
    assert!(int.bytes_out > 0);
    let on_device = tricks.iter().filter(|t| on_int(&t.2)).count() as u64;
    assert_eq!(int.refused, on_device, "{usage:?}");
    let elsewhere = usage[meter::NO_DEVICE];
    assert_eq!(
        elsewhere.refused,
        tricks.len() as u64 - on_device + 1,
        "{usage:?}"
    );
    assert_eq!(usage.len(), 2, "{usage:?}");
}

/// Is this a call on the leased integer device (counted under it)?
fn on_int(target: &str) -> bool {
    target.starts_with(&read_path(INT, ""))
}

/// Bytes of the refused bodies sent on the integer device's paths.
fn tricks_body_bytes(tricks: &[(&str, &str, String, &str, u16, &str)]) -> u64 {
    tricks
        .iter()
        .filter(|t| on_int(&t.2))
        .map(|t| t.3.len() as u64)
        .sum()
}

#[test]
fn a_burst_over_the_rate_limit_is_refused() {
    let sim = Simulator::start(&[]);
    let b = serve(
        &sim,
        BridgeLimits {
            rate: 1.0,
            burst: 3.0,
            ..BridgeLimits::default()
        },
    );
    let statuses: Vec<u16> = (0..6)
        .map(|_| call(b.addr, "GET", &read_path(INT, "Int8"), "").0)
        .collect();
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].iter().all(|&s| s == 429), "{statuses:?}");
    let message = refused(&call(b.addr, "GET", "/api/v3/ping", ""), 429);
    assert!(
        message.contains("at most 1 requests per second (burst 3)"),
        "{message}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(b.addr, "GET", &read_path(INT, "Int8"), "").0, 200);
    assert_eq!(b.meter.usage("lease-7").unwrap()[INT].reads, 4);
}

#[test]
fn the_bridge_says_503_while_edgex_is_down_and_recovers() {
    let mut sim = Simulator::start(&["--secure", "dedge:pw"]);
    let b = serve(&sim, roomy());
    assert_eq!(call(b.addr, "GET", &read_path(INT, "Int8"), "").0, 200);
    sim.stop();
    let message = refused(&call(b.addr, "GET", &read_path(INT, "Int8"), ""), 503);
    assert!(message.contains("EdgeX is unavailable"), "{message}");
    // Back, with a fresh secret store: the old token is unknown there, so
    // the bridge logs in again on the 401 and the tenant never sees it.
    sim.restart();
    let r = call(b.addr, "GET", &read_path(INT, "Int8"), "");
    assert_eq!(r.0, 200, "{}", r.1);
}

#[test]
fn a_container_reads_and_writes_through_its_bridge() {
    use dedge::runtime::container::{Exit, Rootfs, Stdio};
    use dedge::runtime::spec::{Overrides, Spec};
    use dedge::runtime::unpack::Options;

    if !sandbox::can_run("a_container_reads_and_writes_through_its_bridge") {
        return;
    }
    let sim = Simulator::start(&[]);
    let env = sandbox::Env::new();
    env.image("tenant", |_| {}, &[]);
    let url = bridge::Bridge::url();
    let put = r#"{"Int8":"42"}"#;
    let script = format!(
        "wget -q -O - {url}/api/v3/device/name/{INT}/Int8; echo; \
         printf 'PUT /api/v3/device/name/{INT}/WriteInt8Value HTTP/1.1\\r\\nHost: b\\r\\nContent-Length: {}\\r\\nConnection: close\\r\\n\\r\\n{put}' | nc 127.0.0.1 {}; echo; \
         wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/{INT}/Int8; echo; \
         wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/{BOOL}/Bool || echo REFUSED",
        put.len(),
        bridge::PORT
    );
    let rootfs = env.rt().prepare("tenant").unwrap();
    let img = env.images.get("tenant").unwrap();
    env.images
        .unpack(&img, &rootfs, Options::default())
        .unwrap();
    let spec = Spec::new(
        &img.run,
        &rootfs,
        Overrides {
            cmd: vec!["sh".into(), "-c".into(), script],
            env: vec![format!("{}={url}", bridge::ENV)],
            hostname: "tenant".into(),
            limits: sandbox::limits(32, 16, 500),
        },
    )
    .unwrap();
    let r = env
        .rt()
        .create(
            "tenant",
            Rootfs::Prepared,
            &spec,
            Stdio::Logs { cap: 1 << 20 },
            false,
        )
        .unwrap();

    let client = Arc::new(sim.client());
    let cat = Catalogue::read(&client, &offers()).unwrap();
    let meter = Meter::new(env.store.tree("edgex-usage").unwrap());
    let b = Arc::new(Bridge::new(
        "lease-9",
        grants(),
        Arc::new(RwLock::new(cat)),
        client,
        meter.clone(),
        roomy(),
    ));
    let listener = dedge::runtime::net::listen_in(r.init.pid, bridge::PORT).unwrap();
    let serving = bridge::Serving::open(listener, b).unwrap();
    assert_eq!(serving.inside.port(), bridge::PORT);
    env.rt().start("tenant").unwrap();
    let r = env
        .rt()
        .wait("tenant", Some(Duration::from_secs(30)))
        .unwrap();
    let (out, err) = env.rt().logs("tenant").unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    );
    assert_eq!(r.exit, Some(Exit::Code(0)), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    let first: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{out}: {e}"));
    assert_eq!(
        first["event"]["readings"][0]["resourceName"], "Int8",
        "{out}"
    );
    assert!(lines[1].starts_with("HTTP/1.1 200 OK"), "{out}");
    let after = lines
        .iter()
        .find(|l| l.contains("\"event\"") && l.contains("\"42\""));
    assert!(after.is_some(), "the written value is read back: {out}");
    assert_eq!(lines.last(), Some(&"REFUSED"), "{out}");
    assert!(err.contains("403"), "{err}");
    let usage = meter.usage("lease-9").unwrap();
    assert_eq!((usage[INT].reads, usage[INT].writes), (2, 1), "{usage:?}");
    assert_eq!(usage[meter::NO_DEVICE].refused, 1, "{usage:?}");
}

/// One exchange with the simulator, recorded for the OpenAPI check.
fn exchange(sim: &Simulator, service: &str, method: &str, target: &str, body: &str) -> Value {
    let base = match service {
        "core-metadata" => &sim.metadata,
        "core-data" => &sim.data,
        _ => &sim.command,
    };
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: edgex\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, response) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    serde_json::json!({"service": service, "method": method, "path": path, "query": query,
                       "body": (!body.is_empty()).then_some(body),
                       "status": status, "response": response})
}

/// The simulator answers as the OpenAPI files say (plus the documented
/// errata, each of which must still be needed), and the requests the
/// bridge sends are valid core-command requests.
#[test]
fn simulator_answers_and_bridge_requests_match_the_openapi_files() {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/openapi");
    assert!(
        tools.join(".installed-0.23.1").exists(),
        "openapi-core is missing from {}: run tests/setup.sh",
        tools.display()
    );
    let sim = Simulator::start(&[]);
    let mut x = Vec::new();
    let md = "core-metadata";
    x.push(exchange(&sim, md, "GET", "/api/v3/device/all?limit=-1", ""));
    x.push(exchange(
        &sim,
        md,
        "GET",
        "/api/v3/device/all?offset=99",
        "",
    ));
    x.push(exchange(
        &sim,
        md,
        "GET",
        &format!("/api/v3/device/name/{INT}"),
        "",
    ));
    x.push(exchange(&sim, md, "GET", "/api/v3/device/name/Nope", ""));
    x.push(exchange(&sim, md, "GET", "/api/v3/deviceservice/all", ""));
    x.push(exchange(&sim, md, "GET", "/api/v3/version", ""));
    for p in [
        "Random-Boolean-Device",
        INT,
        "Random-UnsignedInteger-Device",
        "Random-Float-Device",
        "Random-Binary-Device",
        "Fixed-Object-Device",
    ] {
        x.push(exchange(
            &sim,
            md,
            "GET",
            &format!("/api/v3/deviceprofile/name/{p}"),
            "",
        ));
    }
    let cmd = "core-command";
    x.push(exchange(&sim, cmd, "GET", "/api/v3/device/all", ""));
    for (d, c) in [
        (INT, "Int8"),
        (INT, "Int64Array"),
        ("Random-UnsignedInteger-Device", "Uint64"),
        ("Random-Float-Device", "Float32"),
        ("Random-Float-Device", "Float64Array"),
        (BOOL, "BoolArray"),
        ("Random-Binary-Device", "Binary"),
        ("Fixed-Object-Device", "Object"),
        ("Fixed-Object-Device", "ObjectArray"),
    ] {
        x.push(exchange(
            &sim,
            cmd,
            "GET",
            &format!("{}?ds-pushevent=true&ds-returnevent=true", read_path(d, c)),
            "",
        ));
    }
    for (method, target, body) in [
        (
            "GET",
            format!("{}?ds-returnevent=false", read_path(INT, "Int16")),
            "",
        ),
        ("GET", read_path(INT, "Nope"), ""),
        ("GET", read_path(INT, "WriteInt8Value"), ""),
        ("PUT", read_path(INT, "WriteInt8Value"), r#"{"Int8":"12"}"#),
        ("PUT", read_path(INT, "WriteInt8Value"), r#"{"Int8":"300"}"#),
        (
            "PUT",
            read_path("Random-Binary-Device", "Binary"),
            r#"{"Binary":"AA=="}"#,
        ),
        (
            "PUT",
            read_path("Fixed-Object-Device", "Object"),
            r#"{"Object":"{\"k\":1}"}"#,
        ),
    ] {
        x.push(exchange(&sim, cmd, method, &target, body));
    }
    let data = "core-data";
    for d in [INT, "Fixed-Object-Device", "Nope"] {
        x.push(exchange(
            &sim,
            data,
            "GET",
            &format!("/api/v3/event/device/name/{d}?limit=5"),
            "",
        ));
    }

    // The bridge's own requests, as core-command received them.
    let before = sim.requests().len();
    let b = serve(&sim, roomy());
    for (m, c, body) in [
        ("GET", "Int8", ""),
        ("GET", "Int32", ""),
        ("PUT", "WriteInt8Value", r#"{"Int8":"-5"}"#),
    ] {
        assert_eq!(call(b.addr, m, &read_path(INT, c), body).0, 200);
    }
    let sent = sim.requests();
    assert_eq!(sent.len(), before + 3);
    for r in &sent[before..] {
        let body = r["body"].as_str().filter(|b| !b.is_empty());
        x.push(
            serde_json::json!({"service": cmd, "method": r["method"], "path": r["path"],
                                  "query": r["query"], "body": body, "status": null}),
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exchanges.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&x).unwrap()).unwrap();
    let out = bounded::output(
        std::process::Command::new("python3")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/edgex/validate.py"))
            .arg(&file)
            .env("PYTHONPATH", &tools),
        bounded::DEFAULT,
    )
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{} exchanges, 0 failed", x.len())),
        "{text}"
    );
    eprintln!("{text}");
}

/// The dev board pointed at `sim` (or at nothing listening).
fn dev_board(dir: &std::path::Path, sim: Option<&Simulator>) -> std::path::PathBuf {
    let mut text = sandbox::dev_board_text();
    let (m, c, d) = match sim {
        Some(s) => (s.metadata.clone(), s.command.clone(), s.data.clone()),
        None => {
            let free = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let u = format!("http://{free}");
            (u.clone(), u.clone(), u)
        }
    };
    for (from, to) in [
        ("http://127.0.0.1:59881", m),
        ("http://127.0.0.1:59882", c),
        ("http://127.0.0.1:59880", d),
    ] {
        text = text.replace(from, &to);
    }
    let boards = dir.join("boards");
    std::fs::create_dir_all(&boards).unwrap();
    let path = boards.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn edgex_ls_shows_the_catalogue_and_names_what_is_left_out() {
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let board = dev_board(dir.path(), Some(&sim));
    let dedge = |args: &[&str]| {
        let o = bounded::output(
            std::process::Command::new(env!("CARGO_BIN_EXE_dedge")).args(args),
            bounded::DEFAULT,
        )
        .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let b = board.to_str().unwrap();
    let (code, out, err) = dedge(&["edgex", "ls", "--board", b]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with(INT) && l.contains(" Int8 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("yes    yes    Int8"), "{row}");
    // The dev board offers Bool for writing: it is RW in device-virtual.
    assert!(out.lines().any(|l| l.starts_with(BOOL)), "{out}");
    let (code, out, _) = dedge(&["edgex", "ls", "--board", b, "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["problems"], serde_json::json!([]));

    // EdgeX not there: a runtime failure that says so.
    let down = dev_board(&dir.path().join("down"), None);
    let (code, _, err) = dedge(&["edgex", "ls", "--board", down.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("EdgeX unavailable"), "{err}");
}

/// `dedge sandbox run` with grants: the operator's way to try the bridge.
#[test]
fn sandbox_run_with_grants_reaches_edgex_and_prints_the_counts() {
    if !sandbox::can_run("sandbox_run_with_grants_reaches_edgex_and_prints_the_counts") {
        return;
    }
    let sim = Simulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let board = dev_board(dir.path(), Some(&sim));
    let layout = oci::busybox_layout(dir.path(), "latest");
    let script = format!(
        "wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/{INT}/Int16 && echo && \
         wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/{INT}/Int8 || echo REFUSED"
    );
    let run = |grants: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dedge"));
        cmd.args(["sandbox", "run", "--board"]).arg(&board);
        cmd.args(grants);
        cmd.arg(format!("{}:latest", layout.display()));
        cmd.args(["--", "sh", "-c", &script]);
        let o = bounded::output(&mut cmd, bounded::DEFAULT).unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--edgex-read", &format!("{INT}:Int16")]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"resourceName\":\"Int16\""), "{out}");
    assert!(
        out.trim_end().ends_with("REFUSED"),
        "Int8 was not granted: {out}"
    );
    assert!(
        err.contains(&format!("dedge: edgex {INT}: 1 reads, 0 writes")),
        "{err}"
    );
    assert!(err.contains("1 refused"), "{err}");
    // A grant the board does not sell is a usage error, before anything runs.
    let (code, _, err) = run(&["--edgex-write", &format!("{INT}:Int64")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("Random-Integer-Device:Int64 is not sold for writing"),
        "{err}"
    );
}

/// The agent's catalogue survives EdgeX being away at start and fills in
/// when it answers.
/// Offers changed by an operator's command: read at once; with EdgeX away,
/// what the new offers drop or narrow leaves the catalogue at once, what
/// they add waits, and the periodic read that comes back later reads the
/// new offers, not the old ones.
#[test]
fn new_offers_narrow_the_catalogue_at_once_even_with_edgex_away() {
    let mut sim = Simulator::start(&[]);
    let client = Arc::new(sim.client());
    let r = dedge::edgex::catalogue::Refresher::start(client, offers(), Duration::from_millis(200));
    let cat = r.catalogue();
    assert!(cat.read().unwrap().command(BOOL, "Bool").is_some());
    let int8_read_only = vec![BoardDevice {
        name: INT.into(),
        read: vec!["Int8".into()],
        write: vec![],
    }];
    sim.stop();
    assert!(
        r.set_offers(int8_read_only.clone()).is_err(),
        "EdgeX is away"
    );
    {
        let c = cat.read().unwrap();
        assert!(c.command(BOOL, "Bool").is_none(), "dropped at once");
        let int8 = c.command(INT, "Int8").unwrap();
        assert!(int8.read && !int8.write, "narrowed at once");
        assert!(c.command(INT, "Int16").is_none());
    }
    assert!(
        r.check(&offers()).is_err(),
        "a check with EdgeX away is not a verdict"
    );
    sim.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat
        .read()
        .unwrap()
        .problems
        .iter()
        .any(|p| p.contains("No-Such-Device"))
        || cat.read().unwrap().devices.len() != 1
    {
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let c = cat.read().unwrap();
    assert_eq!(
        c.devices.len(),
        1,
        "the new offers, not the board's: {:?}",
        c.devices.keys()
    );
    assert!(c.command(INT, "Int8").is_some_and(|x| x.read && !x.write));
    drop(c);
    // A check with EdgeX there names what it cannot serve.
    let why = r.check(&offers()).unwrap().unwrap_err();
    assert!(why.starts_with("device `"), "a problem named: {why}");
    let fine = vec![BoardDevice {
        name: BOOL.into(),
        read: vec!["Bool".into()],
        write: vec![],
    }];
    assert_eq!(r.check(&fine), Ok(Ok(())));
}

#[test]
fn the_catalogue_is_read_again_until_edgex_answers() {
    let mut sim = Simulator::start(&[]);
    let client = Arc::new(sim.client());
    sim.stop();
    let r = dedge::edgex::catalogue::Refresher::start(client, offers(), Duration::from_millis(100));
    let cat = r.catalogue();
    assert!(cat.read().unwrap().devices.is_empty());
    sim.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat.read().unwrap().devices.is_empty() {
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cat.read().unwrap().command(INT, "Int8").is_some());
    // EdgeX going away again keeps what was read.
    sim.stop();
    std::thread::sleep(Duration::from_millis(300));
    assert!(cat.read().unwrap().command(INT, "Int8").is_some());
}

//! A blocking client of EdgeX's v3 API: core-metadata (devices, profiles),
//! core-command (read and write a device's commands), core-data (recent
//! events), ping. Secure mode gets a JWT from the secret store's login flow
//! and renews it before it expires, or once on a 401.
//!
//! Names go into paths percent-encoded, one segment each; command reads
//! always carry `ds-regexcmd=false` (the device service would otherwise
//! treat the name as a regular expression over every resource).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;

use super::Error;
use super::model::{BaseResponse, Device, DeviceProfile, DeviceService, Event};

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded (`/`, `?`, `#`, `%`, spaces included).
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// `/api/v3/device/name/{device}/{command}`.
pub(crate) fn command_path(device: &str, command: &str) -> String {
    format!(
        "/api/v3/device/name/{}/{}",
        segment(device),
        segment(command)
    )
}

/// Credentials of the secret-store user the operator created
/// (`secrets-config proxy adduser` prints them in this shape).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// A JWT and when to stop using it.
#[derive(Debug, Clone)]
struct Token {
    jwt: String,
    renew_at: Instant,
}

/// Renew a token of lifetime `ttl` this long after it was issued: a tenth
/// of its life early, at most a minute, so a request never carries a token
/// that expires on the way.
fn renew_after(ttl: Duration) -> Duration {
    ttl.saturating_sub((ttl / 10).min(Duration::from_secs(60)))
}

enum Auth {
    None,
    Jwt {
        store: String,
        credentials: Credentials,
        token: Mutex<Option<Token>>,
    },
}

/// Where the three services are, and how to authenticate to them.
pub struct Client {
    metadata: String,
    command: String,
    data: String,
    agent: ureq::Agent,
    auth: Auth,
}

impl Client {
    pub fn new(metadata: &str, command: &str, data: &str, timeout: Duration) -> Client {
        // EdgeX answers are small: 16 KiB buffers, not ureq's 128 KiB.
        let agent = crate::http_agent::agent(
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .input_buffer_size(16 << 10)
                .output_buffer_size(16 << 10)
                .http_status_as_error(false),
        );
        let trim = |u: &str| u.trim_end_matches('/').to_string();
        Client {
            metadata: trim(metadata),
            command: trim(command),
            data: trim(data),
            agent,
            auth: Auth::None,
        }
    }

    /// The client a board's `[edgex]` describes; in secure mode the
    /// credentials file must hold `{"username": …, "password": …}`.
    pub fn from_board(e: &crate::board::Edgex) -> Result<Client, Error> {
        let c = Client::new(
            e.core_metadata.as_str(),
            e.core_command.as_str(),
            e.core_data.as_str(),
            Duration::from_secs(10),
        );
        if e.auth != crate::board::values::EdgexAuth::Jwt {
            return Ok(c);
        }
        let (Some(store), Some(file)) = (&e.secret_store, &e.credentials_file) else {
            return Err(Error::Auth(
                "auth = \"jwt\" needs secret_store and credentials_file".into(),
            ));
        };
        let text = std::fs::read_to_string(file)
            .map_err(|err| Error::Auth(format!("{}: {err}", file.display())))?;
        let credentials: Credentials = serde_json::from_str(&text).map_err(|err| {
            Error::Auth(format!(
                "{}: expected {{\"username\": …, \"password\": …}}: {err}",
                file.display()
            ))
        })?;
        Ok(c.with_jwt(store.as_str(), credentials))
    }

    /// Secure mode: tokens from the secret store at `store`.
    pub fn with_jwt(mut self, store: &str, credentials: Credentials) -> Client {
        self.auth = Auth::Jwt {
            store: store.trim_end_matches('/').to_string(),
            credentials,
            token: Mutex::new(None),
        };
        self
    }

    /// A current JWT, logging in again when the old one is due.
    fn bearer(&self, force: bool) -> Result<Option<String>, Error> {
        let Auth::Jwt {
            store,
            credentials,
            token,
        } = &self.auth
        else {
            return Ok(None);
        };
        let mut slot = token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot
            .as_ref()
            .filter(|t| !force && Instant::now() < t.renew_at)
        {
            return Ok(Some(t.jwt.clone()));
        }
        let login = format!(
            "{store}/v1/auth/userpass/login/{}",
            segment(&credentials.username)
        );
        let answer: serde_json::Value = self.send_json(
            self.agent
                .post(&login)
                .send_json(serde_json::json!({ "password": credentials.password })),
            &login,
        )?;
        let vault_token = answer
            .pointer("/auth/client_token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Auth(format!("{login}: no auth.client_token in the answer")))?;
        let url = format!(
            "{store}/v1/identity/oidc/token/{}",
            segment(&credentials.username)
        );
        let answer: serde_json::Value = self.send_json(
            self.agent
                .get(&url)
                .header("X-Vault-Token", vault_token)
                .call(),
            &url,
        )?;
        let jwt = answer
            .pointer("/data/token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Auth(format!("{url}: no data.token in the answer")))?
            .to_string();
        let ttl = answer
            .pointer("/data/ttl")
            .and_then(|v| v.as_u64())
            .unwrap_or(60);
        *slot = Some(Token {
            jwt: jwt.clone(),
            renew_at: Instant::now() + renew_after(Duration::from_secs(ttl)),
        });
        Ok(Some(jwt))
    }

    fn send_json<T: DeserializeOwned>(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        url: &str,
    ) -> Result<T, Error> {
        let mut resp = sent.map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
        if !(200..300).contains(&status) {
            let message = error_message(&text);
            return Err(Error::Status {
                url: url.to_string(),
                status,
                message,
            });
        }
        // core-command answers `ds-returnevent=false` with 200 and no body.
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text)
            .map_err(|e| Error::Value(format!("{url}: unexpected answer: {e}")))
    }

    /// Sends with the bearer token (renewed once on a 401); `send` makes
    /// the request given the `Authorization` value, if any.
    fn authed<T: DeserializeOwned>(
        &self,
        url: &str,
        send: impl Fn(Option<&str>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, Error> {
        let mut force = false;
        loop {
            let header = self.bearer(force)?.map(|jwt| format!("Bearer {jwt}"));
            match self.send_json(send(header.as_deref()), url) {
                Err(Error::Status { status: 401, .. })
                    if !force && matches!(self.auth, Auth::Jwt { .. }) =>
                {
                    force = true;
                }
                other => return other,
            }
        }
    }

    fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        self.authed(url, |auth| {
            let mut req = self.agent.get(url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.call()
        })
    }

    /// Writes a command (or resource) of a device through core-command.
    /// `values` maps each resource to its value as text (`value::check_write`).
    pub fn write(
        &self,
        device: &str,
        command: &str,
        values: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let url = format!("{}{}", self.command, command_path(device, command));
        let _: BaseResponse = self.authed(&url, |auth| {
            let mut req = self.agent.put(&url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            // Compact JSON (ureq's send_json pretty-prints).
            let body = serde_json::to_vec(values).unwrap_or_default();
            req.header("Content-Type", "application/json")
                .send(&body[..])
        })?;
        Ok(())
    }

    pub fn device(&self, name: &str) -> Result<Device, Error> {
        let url = format!("{}/api/v3/device/name/{}", self.metadata, segment(name));
        let v: serde_json::Value = self.get(&url)?;
        serde_json::from_value(v["device"].clone())
            .map_err(|e| Error::Value(format!("{url}: device: {e}")))
    }

    /// Every device core-metadata knows (up to EdgeX's maximum page, 1024).
    pub fn devices(&self) -> Result<Vec<Device>, Error> {
        let url = format!("{}/api/v3/device/all?limit=-1", self.metadata);
        let v: serde_json::Value = self.get(&url)?;
        serde_json::from_value(v["devices"].clone())
            .map_err(|e| Error::Value(format!("{url}: devices: {e}")))
    }

    /// The device services core-metadata knows.
    pub fn device_services(&self) -> Result<Vec<DeviceService>, Error> {
        let url = format!("{}/api/v3/deviceservice/all?limit=-1", self.metadata);
        let v: serde_json::Value = self.get(&url)?;
        serde_json::from_value(v["services"].clone())
            .map_err(|e| Error::Value(format!("{url}: services: {e}")))
    }

    /// core-command's version (`4.0.2` for EdgeX 4.0.2).
    pub fn version(&self) -> Result<String, Error> {
        let url = format!("{}/api/v3/version", self.command);
        let v: serde_json::Value = self.get(&url)?;
        v["version"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| Error::Value(format!("{url}: no version in the answer")))
    }

    pub fn profile(&self, name: &str) -> Result<DeviceProfile, Error> {
        let url = format!(
            "{}/api/v3/deviceprofile/name/{}",
            self.metadata,
            segment(name)
        );
        let v: serde_json::Value = self.get(&url)?;
        serde_json::from_value(v["profile"].clone())
            .map_err(|e| Error::Value(format!("{url}: profile: {e}")))
    }

    /// Reads a command (or resource) of a device through core-command.
    pub fn read(&self, device: &str, command: &str) -> Result<Event, Error> {
        let v = self.command_get(device, command, false, true)?;
        serde_json::from_value(v["event"].clone()).map_err(|e| {
            Error::Value(format!(
                "{}{}: event: {e}",
                self.command,
                command_path(device, command)
            ))
        })
    }

    /// core-command's answer to a read as is: an `EventResponse`, or
    /// `null` when `return_event` is false. The name is never taken as a
    /// regular expression (`ds-regexcmd=false`).
    pub fn command_get(
        &self,
        device: &str,
        command: &str,
        push_event: bool,
        return_event: bool,
    ) -> Result<serde_json::Value, Error> {
        let url = format!(
            "{}{}?ds-pushevent={push_event}&ds-returnevent={return_event}&ds-regexcmd=false",
            self.command,
            command_path(device, command)
        );
        self.get(&url)
    }

    /// core-metadata and core-command answer their ping.
    pub fn ping(&self) -> Result<(), Error> {
        for base in [&self.metadata, &self.command] {
            let url = format!("{base}/api/v3/ping");
            let _: serde_json::Value = self.send_json(self.agent.get(&url).call(), &url)?;
        }
        Ok(())
    }

    /// The most recent events core-data holds for a device.
    pub fn events(&self, device: &str, limit: u32) -> Result<Vec<Event>, Error> {
        let url = format!(
            "{}/api/v3/event/device/name/{}?limit={}",
            self.data,
            segment(device),
            limit.min(1024)
        );
        let v: serde_json::Value = self.get(&url)?;
        serde_json::from_value(v["events"].clone())
            .map_err(|e| Error::Value(format!("{url}: events: {e}")))
    }
}

/// The message of an error answer: EdgeX's `message`, the secret store's
/// `errors`, or the start of the text.
fn error_message(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if let Some(m) = v["message"].as_str().filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    if let Some(errors) = v["errors"].as_array() {
        let all: Vec<&str> = errors.iter().filter_map(|e| e.as_str()).collect();
        if !all.is_empty() {
            return all.join("; ");
        }
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_from_edgex_echo_and_the_secret_store() {
        assert_eq!(
            error_message(r#"{"apiVersion":"v3","message":"no device","statusCode":404}"#),
            "no device"
        );
        assert_eq!(
            error_message(r#"{"message":"Unauthorized"}"#),
            "Unauthorized"
        );
        assert_eq!(
            error_message(r#"{"errors":["invalid username or password"]}"#),
            "invalid username or password"
        );
        assert_eq!(error_message("upstream timed out"), "upstream timed out");
    }

    #[test]
    fn names_are_one_encoded_segment_each() {
        assert_eq!(
            command_path("Random-Integer-Device", "Int8"),
            "/api/v3/device/name/Random-Integer-Device/Int8"
        );
        // A name cannot add a segment, a query or a fragment.
        assert_eq!(
            command_path("a/../b", "c?x=1#f"),
            "/api/v3/device/name/a%2F..%2Fb/c%3Fx%3D1%23f"
        );
        assert_eq!(segment(".*"), ".%2A");
        assert_eq!(segment("é 100%"), "%C3%A9%20100%25");
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(60)),
            Duration::from_secs(54)
        );
        assert_eq!(
            renew_after(Duration::from_secs(5)),
            Duration::from_millis(4500)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }
}

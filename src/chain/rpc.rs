//! JSON-RPC over HTTP for a gateway on a flaky uplink.
//!
//! Transport failures (refused, reset, timeout, HTTP 5xx/429, garbage) are
//! retried with exponential backoff, then the next endpoint takes over; an
//! answer that is a JSON-RPC error is a real answer and is returned at once,
//! with revert data decoded. Calls block: async code wraps them in
//! `smol::unblock` (`call_async`) so the executor never stalls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Error, Result};

/// Answers bigger than this are refused (a block's receipts fit easily).
const MAX_RESPONSE: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Per request, connect to last byte.
    pub timeout: Duration,
    /// Attempts per endpoint before moving on.
    pub attempts: u32,
    /// First backoff; doubles per attempt.
    pub backoff: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

pub struct Rpc {
    urls: Vec<String>,
    agent: ureq::Agent,
    config: RpcConfig,
    next_id: AtomicU64,
    /// Index of the endpoint that last answered; tried first.
    preferred: AtomicUsize,
    /// The chain every endpoint must be on (set by `connect`).
    expected_chain: Option<u64>,
    /// Endpoints whose chain id has been checked.
    checked: Vec<std::sync::atomic::AtomicBool>,
}

impl Rpc {
    pub fn new(urls: Vec<String>, config: RpcConfig) -> Rpc {
        let agent = crate::http_agent::agent(
            ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(false),
        );
        Rpc {
            checked: urls
                .iter()
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
            urls,
            agent,
            config,
            next_id: AtomicU64::new(1),
            preferred: AtomicUsize::new(0),
            expected_chain: None,
        }
    }

    /// Connects and refuses a node on another chain than `chain_id`. Every
    /// endpoint is held to it: each one's chain id is checked before its
    /// first use, so failover can never switch chains.
    pub fn connect(urls: Vec<String>, chain_id: u64, config: RpcConfig) -> Result<Rpc> {
        let mut rpc = Rpc::new(urls, config);
        rpc.expected_chain = Some(chain_id);
        match rpc.chain_id() {
            Ok(_) => Ok(rpc),
            Err(Error::AllEndpointsFailed(e)) if matches!(*e, Error::WrongChain { .. }) => Err(*e),
            Err(e) => Err(e),
        }
    }

    pub fn chain_id(&self) -> Result<u64> {
        let id: alloy_primitives::U64 = self.call("eth_chainId", json!([]))?;
        Ok(id.to())
    }

    /// One call, typed answer.
    pub fn call<R: DeserializeOwned>(&self, method: &str, params: Value) -> Result<R> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.post(method, &body)?;
        let value = take_result(method, answer)?;
        serde_json::from_value(value).map_err(|e| Error::BadResponse {
            method: method.to_string(),
            message: e.to_string(),
        })
    }

    /// Several calls in one round trip; answers come back in call order,
    /// each its own result.
    pub fn batch(&self, calls: &[(&str, Value)]) -> Result<Vec<Result<Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self
            .next_id
            .fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": first + i as u64, "method": m, "params": p}))
            .collect();
        let answer = self.post("batch", &Value::Array(body))?;
        let Value::Array(items) = answer else {
            return Err(Error::BadResponse {
                method: "batch".into(),
                message: "answer is not an array".into(),
            });
        };
        let mut slots: Vec<Option<Result<Value>>> = (0..calls.len()).map(|_| None).collect();
        for item in items {
            let Some(i) = item
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first))
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < calls.len())
            else {
                continue;
            };
            slots[i] = Some(take_result(calls[i].0, item));
        }
        Ok(slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.unwrap_or_else(|| {
                    Err(Error::BadResponse {
                        method: calls[i].0.to_string(),
                        message: "no answer in the batch".into(),
                    })
                })
            })
            .collect())
    }

    /// `call` on a blocking thread, for async code.
    pub async fn call_async<R: DeserializeOwned + Send + 'static>(
        self: &Arc<Self>,
        method: &'static str,
        params: Value,
    ) -> Result<R> {
        let rpc = Arc::clone(self);
        smol::unblock(move || rpc.call(method, params)).await
    }

    /// Sends `body` with retries and failover; returns the parsed JSON.
    fn post(&self, method: &str, body: &Value) -> Result<Value> {
        let n = self.urls.len();
        if n == 0 {
            return Err(Error::Transport {
                url: "(none)".into(),
                message: "no RPC URL configured".into(),
            });
        }
        let text = body.to_string();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let url = &self.urls[i];
            let mut delay = self.config.backoff;
            for attempt in 0..self.config.attempts.max(1) {
                match self
                    .check_chain(i)
                    .and_then(|()| self.post_once(url, &text))
                {
                    Ok(v) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(v);
                    }
                    Err(e) => {
                        log::debug!("{method} via {url}, attempt {}: {e}", attempt + 1);
                        last = Some(e);
                        if attempt + 1 < self.config.attempts {
                            std::thread::sleep(delay);
                            delay = delay.saturating_mul(2);
                        }
                    }
                }
            }
            log::warn!(
                "RPC endpoint {url} failed {} times; trying the next",
                self.config.attempts
            );
        }
        Err(Error::AllEndpointsFailed(Box::new(last.unwrap_or(
            Error::Transport {
                url: "(none)".into(),
                message: "no attempt made".into(),
            },
        ))))
    }

    /// Before an endpoint's first use, its chain id must be the expected one.
    fn check_chain(&self, i: usize) -> Result<()> {
        let Some(expected) = self.expected_chain else {
            return Ok(());
        };
        if self.checked[i].load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = &self.urls[i];
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []});
        let id: alloy_primitives::U64 = serde_json::from_value(take_result(
            "eth_chainId",
            self.post_once(url, &body.to_string())?,
        )?)
        .map_err(|e| Error::BadResponse {
            method: "eth_chainId".into(),
            message: e.to_string(),
        })?;
        if id.to::<u64>() != expected {
            log::error!("RPC endpoint {url} is on chain {id}, not {expected}: not used");
            return Err(Error::WrongChain {
                expected,
                got: id.to(),
            });
        }
        self.checked[i].store(true, Ordering::Relaxed);
        Ok(())
    }

    fn post_once(&self, url: &str, text: &str) -> Result<Value> {
        let transport = |message: String| Error::Transport {
            url: url.to_string(),
            message,
        };
        let mut resp = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .send(text)
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| transport(format!("reading the answer: {e}")))?;
        if status == 429 || status >= 500 {
            return Err(transport(format!("HTTP {status}")));
        }
        // Some nodes answer JSON-RPC errors with 4xx; the body decides.
        serde_json::from_str(&body).map_err(|_| {
            let head: String = body.chars().take(80).collect();
            transport(format!("HTTP {status}, not JSON: {head:?}"))
        })
    }
}

/// The `result` of a JSON-RPC answer, or its `error` as an [`Error::Rpc`].
fn take_result(method: &str, mut answer: Value) -> Result<Value> {
    if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string();
        let revert = err
            .get("data")
            .and_then(|d| d.as_str().or_else(|| d.get("data").and_then(Value::as_str)))
            .and_then(|hex| alloy_primitives::hex::decode(hex).ok())
            .map(|data| super::bindings::decode_revert(&data));
        return Err(Error::Rpc {
            method: method.to_string(),
            code,
            message,
            revert,
        });
    }
    match answer.get_mut("result") {
        Some(v) => Ok(v.take()),
        None => Err(Error::BadResponse {
            method: method.to_string(),
            message: "neither result nor error".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_code_message_and_decoded_revert() {
        // Error(string) "no" as a node reports it in error.data.
        let data = "0x08c379a0\
            0000000000000000000000000000000000000000000000000000000000000020\
            0000000000000000000000000000000000000000000000000000000000000002\
            6e6f000000000000000000000000000000000000000000000000000000000000";
        let answer = json!({"jsonrpc":"2.0","id":1,"error":{"code":3,"message":"execution reverted","data":data}});
        let err = take_result("eth_call", answer).unwrap_err();
        match &err {
            Error::Rpc { code, revert, .. } => {
                assert_eq!(*code, 3);
                assert_eq!(revert.as_deref(), Some("no"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("reverted: no"), "{err}");
    }

    #[test]
    fn missing_result_is_malformed() {
        let err = take_result("eth_blockNumber", json!({"id": 1})).unwrap_err();
        assert!(matches!(err, Error::BadResponse { .. }));
    }

    #[test]
    fn unreachable_endpoints_fail_over_then_give_up() {
        // Port 9 on loopback: nothing listens, connections are refused fast.
        let rpc = Rpc::new(
            vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:9/".into()],
            RpcConfig {
                timeout: Duration::from_secs(2),
                attempts: 2,
                backoff: Duration::from_millis(1),
            },
        );
        let err = rpc.chain_id().unwrap_err();
        assert!(matches!(err, Error::AllEndpointsFailed(_)), "{err}");
    }
}

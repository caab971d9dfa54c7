//! API keys: scopes, namespace binding, hashed storage, constant-time
//! comparison; and the per-key and per-IP rate limits.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};
use rag::Namespace;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a key may do. `admin` implies `ingest`, which implies `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Ask, list and get documents, use sessions, send feedback.
    Read,
    /// Everything `read` may, plus ingest and delete documents.
    Ingest,
    /// Everything.
    Admin,
}

impl Scope {
    /// Parses `read`, `ingest` or `admin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "read" => Some(Self::Read),
            "ingest" => Some(Self::Ingest),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// One configured key: its SHA-256 (never the key), scopes and tenant.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// A name for logs and metrics (never the key).
    pub name: String,
    /// `sha256:<64 hex digits>` of the key (`server hash-key KEY` prints it).
    pub hash: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// The only namespace the key may read or write; `None` for any.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("name", &self.name)
            .field("hash", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The configuration form of a key: `sha256:` and the hex SHA-256 of `key`.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

#[derive(Clone)]
struct Key {
    name: Arc<str>,
    digest: [u8; 32],
    scopes: Vec<Scope>,
    namespace: Option<Namespace>,
}

/// The set of valid keys; several may be valid at once (rotation).
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyRing {
    /// Validates and loads the configured keys.
    pub fn new(configs: &[KeyConfig]) -> Result<Self, String> {
        let mut keys = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let hex_part = c.hash.strip_prefix("sha256:").ok_or_else(|| {
                format!(
                    "keys[{i}] ({}): hash must be `sha256:<64 hex digits>`",
                    c.name
                )
            })?;
            let bytes = hex::decode(hex_part)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    format!(
                        "keys[{i}] ({}): hash must be `sha256:<64 hex digits>`",
                        c.name
                    )
                })?;
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&bytes);
            if c.scopes.is_empty() {
                return Err(format!("keys[{i}] ({}): scopes must not be empty", c.name));
            }
            let namespace = match &c.namespace {
                Some(ns) => Some(
                    Namespace::new(ns.as_str())
                        .map_err(|e| format!("keys[{i}] ({}): namespace: {e}", c.name))?,
                ),
                None => None,
            };
            keys.push(Key {
                name: c.name.as_str().into(),
                digest,
                scopes: c.scopes.clone(),
                namespace,
            });
        }
        Ok(Self { keys })
    }

    /// True when no key is configured: the server is open (embedded default).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the request presents a configured key with the `admin`
    /// scope (for `/ready`'s detail, outside the authenticated routes).
    pub fn admits_admin(&self, headers: &HeaderMap) -> bool {
        presented_key(headers)
            .and_then(|k| self.find(k))
            .is_some_and(|k| k.scopes.contains(&Scope::Admin))
    }

    /// The key matching `presented`. Every configured key is compared, in
    /// constant time, so timing tells nothing about which one matched.
    fn find(&self, presented: &str) -> Option<&Key> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(digest.as_slice())) {
                found = Some(k);
            }
        }
        found
    }
}

/// Who is calling: attached to each request by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Principal {
    /// The key's name (`anonymous` when auth is off).
    pub name: Arc<str>,
    scopes: Vec<Scope>,
    namespace: Option<Namespace>,
}

impl Principal {
    /// The principal of an open server: admin on every namespace.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            scopes: vec![Scope::Admin],
            namespace: None,
        }
    }

    /// `403` unless the key has `scope` (or a broader one).
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        if self.scopes.iter().any(|s| *s >= scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this key lacks the `{}` scope",
                match scope {
                    Scope::Read => "read",
                    Scope::Ingest => "ingest",
                    Scope::Admin => "admin",
                }
            )))
        }
    }

    /// The namespace a request works in: the one asked for, or the key's
    /// own, or `default`. `403` when a key bound to a tenant asks for
    /// another; `422` when the name is malformed.
    pub fn namespace(&self, requested: Option<&str>) -> ApiResult<Namespace> {
        match (requested, &self.namespace) {
            (None, Some(bound)) => Ok(bound.clone()),
            (None, None) => Ok(Namespace::default()),
            (Some(r), bound) => {
                let ns =
                    Namespace::new(r).map_err(|e| ApiError::invalid("namespace", e.to_string()))?;
                match bound {
                    Some(b) if *b != ns => Err(ApiError::forbidden(
                        "this key may not access that namespace",
                    )),
                    _ => Ok(ns),
                }
            }
        }
    }

    /// The one namespace this key is bound to, if any.
    pub fn bound_namespace(&self) -> Option<&Namespace> {
        self.namespace.as_ref()
    }

    /// Whether this principal may see data of `ns` (for resources found by
    /// id, such as sessions: a mismatch is reported as `404`).
    pub fn may_access(&self, ns: &Namespace) -> bool {
        self.namespace.as_ref().is_none_or(|b| b == ns)
    }
}

/// The key presented: `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().ok();
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    auth.strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .map(str::trim)
}

type KeyedLimiter<K> =
    RateLimiter<K, governor::state::keyed::DefaultKeyedStateStore<K>, DefaultClock>;

/// Per-key and per-IP request limits (token buckets).
pub struct Limits {
    per_key: Option<KeyedLimiter<Arc<str>>>,
    per_ip: Option<KeyedLimiter<IpAddr>>,
    per_session: Option<KeyedLimiter<uuid::Uuid>>,
    asks_per_key: Option<KeyedLimiter<Arc<str>>>,
    auth_failures: Option<KeyedLimiter<IpAddr>>,
    /// IPs whose failed-authentication budget is spent, until when.
    blocked: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
    clock: DefaultClock,
}

/// Most IPs remembered as blocked at once; past it a new one is not
/// recorded (its failures are still limited by its bucket).
const MAX_BLOCKED_IPS: usize = 100_000;

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("per_key", &self.per_key.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .field("per_session", &self.per_session.is_some())
            .finish()
    }
}

fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let n = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(n);
    Some(Quota::per_minute(n).allow_burst(burst))
}

impl Limits {
    /// Limits of `per_minute` requests (`0` for none) with a burst.
    pub fn new(key_per_minute: u32, key_burst: u32, ip_per_minute: u32, ip_burst: u32) -> Self {
        Self {
            per_key: quota(key_per_minute, key_burst).map(RateLimiter::keyed),
            per_ip: quota(ip_per_minute, ip_burst).map(RateLimiter::keyed),
            per_session: None,
            asks_per_key: None,
            auth_failures: None,
            blocked: std::sync::Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Adds a limit of `per_minute` questions per session (`0` for none).
    #[must_use]
    pub fn with_per_session(mut self, per_minute: u32) -> Self {
        self.per_session = quota(per_minute, 0).map(RateLimiter::keyed);
        self
    }

    /// Adds a limit of `per_minute` questions per key (`0` for none).
    #[must_use]
    pub fn with_asks_per_key(mut self, per_minute: u32) -> Self {
        self.asks_per_key = quota(per_minute, 0).map(RateLimiter::keyed);
        self
    }

    /// Limits requests with a missing or unknown key to `per_minute` per
    /// client IP (`0` for none).
    #[must_use]
    pub fn with_auth_failures_per_ip(mut self, per_minute: u32) -> Self {
        self.auth_failures = quota(per_minute, 0).map(RateLimiter::keyed);
        self
    }

    /// `429` while `ip` has spent its failed-authentication budget. Checked
    /// before the presented key is looked at, so a blocked client learns
    /// nothing about its guesses, right or wrong.
    fn check_blocked(&self, ip: IpAddr) -> ApiResult<()> {
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&ip) {
            Some(until) => match until.checked_duration_since(std::time::Instant::now()) {
                Some(wait) if !wait.is_zero() => {
                    metrics::counter!("rag_server_rate_limited_total").increment(1);
                    Err(ApiError::rate_limited(wait.max(Duration::from_secs(1))))
                }
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`; when that spends its
    /// budget the IP is blocked until the budget has a token again, and the
    /// `429` to answer is returned.
    fn record_auth_failure(&self, ip: IpAddr) -> Option<ApiError> {
        let limiter = self.auth_failures.as_ref()?;
        if let Err(not_until) = limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(self.clock.now());
            let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
            if blocked.len() < MAX_BLOCKED_IPS || blocked.contains_key(&ip) {
                blocked.insert(ip, std::time::Instant::now() + wait);
            }
            metrics::counter!("rag_server_auth_blocked_total").increment(1);
            tracing::warn!(%ip, "too many requests with an unknown API key: blocked for a while");
            return Some(ApiError::rate_limited(wait.max(Duration::from_secs(1))));
        }
        None
    }

    /// Forgets clients whose buckets are full again and blocks that have
    /// ended, so the limiters hold the clients of the last minute or so, not
    /// every client ever seen. The server calls it every 30 seconds.
    pub fn sweep(&self) {
        fn sweep_one<K: Clone + std::hash::Hash + Eq>(l: Option<&KeyedLimiter<K>>) {
            if let Some(l) = l {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        sweep_one(self.per_key.as_ref());
        sweep_one(self.per_ip.as_ref());
        sweep_one(self.per_session.as_ref());
        sweep_one(self.asks_per_key.as_ref());
        sweep_one(self.auth_failures.as_ref());
        let now = std::time::Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|_, until| *until > now);
        blocked.shrink_to_fit();
    }

    /// How many clients (keys, IPs, sessions, blocked IPs) the limiters
    /// remember now.
    pub fn tracked(&self) -> usize {
        fn len<K: Clone + std::hash::Hash + Eq>(l: Option<&KeyedLimiter<K>>) -> usize {
            l.map_or(0, |l| l.len())
        }
        len(self.per_key.as_ref())
            + len(self.per_ip.as_ref())
            + len(self.per_session.as_ref())
            + len(self.asks_per_key.as_ref())
            + len(self.auth_failures.as_ref())
            + self.blocked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Takes one question from the key's question budget: `429` with
    /// `Retry-After` when it is spent.
    pub fn check_ask(&self, key: &Arc<str>) -> ApiResult<()> {
        self.check(self.asks_per_key.as_ref(), key)
    }

    /// Takes one question from the session's budget: `429` with
    /// `Retry-After` when it is spent.
    pub fn check_session(&self, id: uuid::Uuid) -> ApiResult<()> {
        self.check(self.per_session.as_ref(), &id)
    }

    fn check<K: Clone + std::hash::Hash + Eq>(
        &self,
        limiter: Option<&KeyedLimiter<K>>,
        key: &K,
    ) -> ApiResult<()> {
        match limiter.map(|l| l.check_key(key)) {
            Some(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                metrics::counter!("rag_server_rate_limited_total").increment(1);
                Err(ApiError::rate_limited(wait.max(Duration::from_secs(1))))
            }
            _ => Ok(()),
        }
    }
}

/// Middleware on `/v1`: per-IP limit, then the key (401 when missing or
/// unknown), then the per-key limit; attaches the [`Principal`].
pub async fn authenticate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Err(e) = state.limits.check(state.limits.per_ip.as_ref(), &peer.ip()) {
        return e.into_response();
    }
    let principal = if state.keys.is_empty() {
        Principal::anonymous()
    } else {
        if let Err(e) = state.limits.check_blocked(peer.ip()) {
            return e.into_response();
        }
        // A missing key is not a guess (the chat page asks before its user
        // has typed one): only unknown keys spend the failure budget.
        let Some(presented) = presented_key(req.headers()) else {
            return ApiError::unauthorized(
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key`",
            )
            .into_response();
        };
        let Some(key) = state.keys.find(presented) else {
            tracing::info!(ip = %peer.ip(), "rejected an unknown API key");
            if let Some(blocked) = state.limits.record_auth_failure(peer.ip()) {
                return blocked.into_response();
            }
            return ApiError::unauthorized("invalid API key").into_response();
        };
        Principal {
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            namespace: key.namespace.clone(),
        }
    };
    // Without keys (an open server) the per-key budget is per client IP.
    let bucket: Arc<str> = if state.keys.is_empty() {
        format!("anonymous@{}", peer.ip()).into()
    } else {
        principal.name.clone()
    };
    if let Err(e) = state.limits.check(state.limits.per_key.as_ref(), &bucket) {
        return e.into_response();
    }
    tracing::Span::current().record("key", &*principal.name);
    req.extensions_mut().insert(principal);
    next.run(req).await
}

//! Floods and abuse: slow clients, requests far beyond the limits, many
//! client addresses, wrong keys, thousands of sessions, filters at and past
//! their limits, deeply nested JSON, and tenants working concurrently.
//! Every loopback address 127.x.y.z reaches the server, so one process can
//! play thousands of clients.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{ADMIN, Server, key, secured, test_config};
use rag_server::AppState;
use rag_server::auth::Scope;

impl Server {
    fn addr(&self) -> SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("a socket address")
    }
}

/// Connects from `from` (a loopback address) to the server.
async fn connect_from(server: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the end of a response's headers (or the connection's end);
/// returns the status (0 when the connection closed first) and the headers.
async fn read_head(conn: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// One `GET path` from `from` with an optional key; the status and headers.
async fn get_from(
    server: SocketAddr,
    from: Ipv4Addr,
    path: &str,
    key: Option<&str>,
) -> (u16, String) {
    let mut conn = connect_from(server, from).await;
    let auth = key.map_or(String::new(), |k| format!("X-API-Key: {k}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: rag\r\n{auth}Connection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    read_head(&mut conn).await
}

fn retry_after(head: &str) -> Option<u64> {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let mut c = test_config();
    c.header_timeout_secs = 1;
    c.request_timeout_secs = 2;
    let s = Server::start(c).await;
    let addr = s.addr();
    // 300 connections that send half their headers and then nothing, and
    // (below) 100 that send nothing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"POST /v1/ask HTTP/1.1\r\nHost: rag\r\nContent-Ty")
            .await
            .unwrap();
        slow.push(conn);
    }
    // 100 that connect and send nothing at all.
    for _ in 0..100 {
        slow.push(TcpStream::connect(addr).await.unwrap());
    }
    // One that sends its headers and a third of its body.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(
            b"POST /v1/ask HTTP/1.1\r\nHost: rag\r\nContent-Type: application/json\r\n\
              Content-Length: 60\r\n\r\n{\"question\": \"what",
        )
        .await
        .unwrap();
    let started = Instant::now();
    // Meanwhile everyone else is served.
    let r = s.get("/health", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .post("/v1/ask", None, &json!({"question": "anything?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The header timeout closes every slow connection (hyper may say 408
    // first).
    for conn in &mut slow {
        let (status, head) = tokio::time::timeout(Duration::from_secs(5), read_head(conn))
            .await
            .expect("a slow client's connection is closed within the header timeout");
        assert!(status == 0 || status == 408, "{head}");
    }
    let cut_off = started.elapsed();
    assert!(
        cut_off < Duration::from_secs(4),
        "slow clients held for {cut_off:?}"
    );
    // The trickling body is bounded by the request deadline: 504.
    let (status, head) = tokio::time::timeout(Duration::from_secs(6), read_head(&mut trickle))
        .await
        .expect("a trickling body is answered within the request deadline");
    assert_eq!(status, 504, "{head}");
    // Still serving.
    let r = s.get("/health", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn floods_get_429_and_the_limiters_forget_quiet_clients() {
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.rate_limit.per_ip_per_minute = 60;
    let state = AppState::build(c).await.unwrap();
    let limits = state.limits.clone();
    let s = Server::with_state(state).await;
    let addr = s.addr();
    // One client sends ten times its limit, 50 requests at a time: its
    // burst (60) passes, every other request is 429 with Retry-After.
    let flooder = Ipv4Addr::new(127, 0, 0, 1);
    let replies: Vec<(u16, String)> = futures::stream::iter(0..600)
        .map(|_| get_from(addr, flooder, "/v1/info", None))
        .buffer_unordered(50)
        .collect()
        .await;
    let ok = replies.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = replies.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        (60..=62).contains(&ok),
        "{ok} requests passed a limit of 60"
    );
    assert_eq!(ok + limited.len(), 600, "only 200 and 429 expected");
    for (_, head) in &limited {
        let wait = retry_after(head).expect("429 carries Retry-After");
        assert!((1..=60).contains(&wait), "{head}");
    }
    // 2,000 other clients, one request each: each has its own bucket.
    let clients: Vec<Ipv4Addr> = (0..2000u32)
        .map(|i| Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect();
    let statuses: Vec<u16> = futures::stream::iter(clients)
        .map(|ip| async move { get_from(addr, ip, "/v1/info", None).await.0 })
        .buffer_unordered(50)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));
    let tracked = limits.tracked();
    assert!(tracked >= 2001, "the limiter tracks {tracked} clients");
    // Seconds later their buckets are full again and the sweep (every 30
    // s in the server) forgets them; the flooder's bucket is kept,
    // (governor forgets a key once its bucket has been full for one
    // emission interval: here a second.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    limits.sweep();
    let tracked = limits.tracked();
    assert_eq!(
        tracked, 1,
        "after the sweep the limiter still tracks {tracked}"
    );
    // and is served again as it refills (one request a second).
    let (status, _) = get_from(addr, flooder, "/v1/info", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn wrong_keys_are_rate_limited_per_client_before_any_key_is_checked() {
    let mut c = secured();
    c.rate_limit.auth_failures_per_ip_per_minute = 5;
    let s = Server::start(c).await;
    let addr = s.addr();
    let guesser = Ipv4Addr::new(127, 0, 0, 2);
    for i in 0..5 {
        let (status, _) = get_from(addr, guesser, "/v1/info", Some(&format!("guess-{i}"))).await;
        assert_eq!(status, 401, "guess {i}");
    }
    let (status, head) = get_from(addr, guesser, "/v1/info", Some("guess-5")).await;
    assert_eq!(status, 429, "{head}");
    assert!(retry_after(&head).is_some(), "{head}");
    // Blocked: even the right key gets 429, so a guess tells nothing.
    let (status, _) = get_from(addr, guesser, "/v1/info", Some(ADMIN)).await;
    assert_eq!(status, 429);
    // Other clients are not affected, and a missing key is not a guess.
    let other = Ipv4Addr::new(127, 0, 0, 3);
    for _ in 0..20 {
        assert_eq!(get_from(addr, other, "/v1/info", None).await.0, 401);
    }
    assert_eq!(get_from(addr, other, "/v1/info", Some(ADMIN)).await.0, 200);
    assert_eq!(get_from(addr, other, "/v1/info", Some("nope")).await.0, 401);
    // The key is never compared in a way that depends on how much of it
    // matches: every key is hashed and all digests compared in constant
    // time (auth.rs); the metric counts blocks.
    let metrics = s.get_text("/metrics", None).await;
    assert!(
        metrics.contains("rag_server_auth_blocked_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn thousands_of_sessions_stop_at_the_cap() {
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.sessions.max_per_namespace = 300;
    let s = Server::start(c).await;
    let statuses: Vec<StatusCode> = futures::stream::iter(0..2000)
        .map(|_| async {
            s.post("/v1/sessions", None, &json!({}))
                .send()
                .await
                .unwrap()
                .status()
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(created, 300, "the cap holds under 32 concurrent creators");
    assert_eq!(refused, 1700);
    let list: Value = s.get_json("/v1/sessions?limit=1000", None).await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 300);
    // Deleting one makes room for exactly one.
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let r = s
        .delete(&format!("/v1/sessions/{id}"), None)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = s
        .post("/v1/sessions", None, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .post("/v1/sessions", None, &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_limit");
}

fn nested_not(depth: usize) -> Value {
    let mut f = json!({"eq": {"field": {"metadata": "team"}, "value": "dev"}});
    for _ in 0..depth {
        f = json!({ "not": f });
    }
    f
}

fn wide_or(leaves: usize) -> Value {
    let all: Vec<Value> = (0..leaves)
        .map(|i| json!({"eq": {"field": {"metadata": "team"}, "value": format!("t{i}")}}))
        .collect();
    json!({ "or": all })
}

#[tokio::test]
async fn filters_at_and_past_their_limits_and_deeply_nested_json() {
    use rag::filter::{MAX_DEPTH, MAX_NODES};
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.body_limit_bytes = 4 * 1024 * 1024;
    let s = Server::start(c).await;
    let r = s
        .post("/v1/documents", None, &super::docs())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ask = |filter: Value| {
        s.post(
            "/v1/ask",
            None,
            &json!({"question": "How do I build?", "filter": filter}),
        )
        .send()
    };
    // At the limits: accepted and evaluated (an even number of `not`s is
    // the filter itself).
    let depth = MAX_DEPTH - (MAX_DEPTH % 2);
    let r = ask(nested_not(depth)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["citations"][0]["source"], "dev/build.md", "{a}");
    let r = ask(wide_or(MAX_NODES - 1)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Past them: 422 naming the filter and the limit.
    for (filter, words) in [
        (nested_not(MAX_DEPTH + 2), "deeper"),
        (wide_or(MAX_NODES + 1), "nodes"),
    ] {
        let r = ask(filter).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e: Value = r.json().await.unwrap();
        let msg = e["error"]["message"].as_str().unwrap();
        assert!(msg.contains("filter") && msg.contains(words), "{msg}");
    }
    // JSON nested 100,000 deep (in the filter and at the top level):
    // refused as malformed, nothing overflows.
    for body in [
        format!(
            "{{\"question\": \"q\", \"filter\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!(
            "{{\"documents\": [{{\"source\": \"x\", \"text\": \"y\", \"metadata\": {}1{}}}]}}",
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        ),
    ] {
        for path in ["/v1/ask", "/v1/documents"] {
            let r = s
                .client
                .post(s.url(path))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(
                r.status() == StatusCode::BAD_REQUEST
                    || r.status() == StatusCode::UNPROCESSABLE_ENTITY,
                "{path}: {}",
                r.status()
            );
        }
    }
    // Nothing stored was touched.
    let page: Value = s.get_json("/v1/documents", None).await;
    assert_eq!(page["documents"].as_array().unwrap().len(), 2, "{page}");
}

/// A small deterministic generator (xorshift), seeded per tenant.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn tenants_working_concurrently_never_see_each_other() {
    const TENANTS: usize = 6;
    const OPS: usize = 60;
    let seed: u64 = std::env::var("RAG_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("tenant isolation: RAG_TEST_SEED={seed} reproduces this run");
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.keys = (0..TENANTS)
        .map(|t| {
            key(
                &format!("tenant-{t}"),
                &format!("tenant-secret-{t}"),
                &[Scope::Ingest],
                Some(&format!("t{t}")),
            )
        })
        .collect();
    let s = Server::start(c).await;
    let s = &s;
    let run = |t: usize| async move {
        let secret = format!("tenant-secret-{t}");
        let k = Some(secret.as_str());
        let mut rng = Rng(seed.wrapping_mul(2 * t as u64 + 1) | 1);
        let mut mine: std::collections::BTreeSet<String> = Default::default();
        for op in 0..OPS {
            match rng.below(6) {
                0 | 1 => {
                    let source = format!("t{t}/doc{op}.md");
                    let text = format!(
                        "# Note {op}\n\nThe shared word is lantern. Tenant t{t} wrote note {op}."
                    );
                    let r = s
                        .post(
                            "/v1/documents",
                            k,
                            &json!({"documents": [{"source": source, "text": text}]}),
                        )
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    mine.insert(source);
                }
                2 => {
                    let a: Value = s
                        .post_json(
                            "/v1/ask",
                            k,
                            &json!({"question": "What is the shared word?", "top_k": 20}),
                        )
                        .await;
                    for src in a["sources"].as_array().unwrap() {
                        let name = src["source"].as_str().unwrap();
                        assert!(name.starts_with(&format!("t{t}/")), "t{t} saw {name}");
                    }
                    assert!(
                        !a["text"]
                            .as_str()
                            .unwrap_or("")
                            .contains(&format!("Tenant t{}", (t + 1) % TENANTS))
                    );
                }
                3 => {
                    let page: Value = s.get_json("/v1/documents?limit=1000", k).await;
                    for d in page["documents"].as_array().unwrap() {
                        let name = d["source"].as_str().unwrap();
                        assert!(name.starts_with(&format!("t{t}/")), "t{t} listed {name}");
                    }
                }
                4 => {
                    // Another tenant's document, by a name it may hold.
                    let other = (t + 1 + rng.below(TENANTS as u64 - 1) as usize) % TENANTS;
                    let id = format!("t{other}%2Fdoc{}.md", rng.below(OPS as u64));
                    let r = s
                        .get(&format!("/v1/documents/{id}"), k)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::NOT_FOUND, "t{t} fetched {id}");
                    let r = s
                        .delete(&format!("/v1/documents/{id}"), Some(&secret))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::NOT_FOUND, "t{t} deleted {id}");
                    let r = s
                        .get(&format!("/v1/documents?namespace=t{other}"), k)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::FORBIDDEN);
                }
                _ => {
                    if let Some(source) = mine.iter().next().cloned() {
                        let id = source.replace('/', "%2F");
                        let r = s
                            .delete(&format!("/v1/documents/{id}"), Some(&secret))
                            .send()
                            .await
                            .unwrap();
                        assert!(
                            r.status().is_success(),
                            "t{t} deleting its own {id}: {}",
                            r.status()
                        );
                        mine.remove(&source);
                    }
                }
            }
        }
        // What the tenant sees is exactly what it wrote and kept.
        let page: Value = s.get_json("/v1/documents?limit=1000", k).await;
        let seen: std::collections::BTreeSet<String> = page["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["source"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, mine, "tenant t{t}");
    };
    futures::future::join_all((0..TENANTS).map(run)).await;
}

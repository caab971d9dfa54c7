//! Faults end to end through the server: a scripted OpenAI-compatible
//! upstream that limits, then fails, then hangs, then recovers; PostgreSQL
//! killed in the middle of an ingest and restarted.
//!
//! The upstream's phases last `RAG_FAULT_PHASE_SECS` seconds each (default
//! 2, the CI version; `RAG_FAULT_PHASE_SECS=60` is a minute of each).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode as HttpStatus;
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Server, docs, test_config};
use rag_server::AppState;

fn phase_secs() -> f64 {
    std::env::var("RAG_FAULT_PHASE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0)
}

/// What the scripted upstream does, by phase: `429` with `Retry-After: 1`,
/// then `500`, then no answer at all, then answers.
#[derive(Clone)]
struct Upstream {
    started: Instant,
    phase: Duration,
    reply: &'static str,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Upstream {
    fn new(phase: Duration, reply: &'static str) -> Self {
        Self {
            started: Instant::now(),
            phase,
            reply,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// An upstream that always answers.
    fn healthy(reply: &'static str) -> Self {
        let mut u = Self::new(Duration::from_secs(1), reply);
        u.started = Instant::now() - Duration::from_secs(3600);
        u
    }

    fn phase_now(&self) -> u32 {
        (self.started.elapsed().as_secs_f64() / self.phase.as_secs_f64()) as u32
    }

    async fn serve(self) -> String {
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/v1")
    }
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat(State(u): State<Upstream>, axum::Json(body): axum::Json<Value>) -> Response {
    let now = u.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(u.in_flight.clone());
    u.max_in_flight.fetch_max(now, Ordering::SeqCst);
    u.calls.fetch_add(1, Ordering::SeqCst);
    let error = |status: HttpStatus, message: &str| {
        (
            status,
            axum::Json(json!({"error": {"message": message, "type": "server_error"}})),
        )
    };
    match u.phase_now() {
        0 => {
            let mut r = error(HttpStatus::TOO_MANY_REQUESTS, "rate limit reached").into_response();
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return r;
        }
        1 => return error(HttpStatus::INTERNAL_SERVER_ERROR, "internal error").into_response(),
        2 => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return error(HttpStatus::INTERNAL_SERVER_ERROR, "late").into_response();
        }
        _ => {}
    }
    let model = body["model"].as_str().unwrap_or("m").to_owned();
    if body["stream"].as_bool() == Some(true) {
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            format!("data: {c}\n\n")
        };
        let body = format!(
            "{}{}data: [DONE]\n\n",
            chunk(
                json!({"role": "assistant", "content": u.reply}),
                Value::Null
            ),
            chunk(json!({}), json!("stop"))
        );
        return ([("content-type", "text/event-stream")], body).into_response();
    }
    axum::Json(json!({"id": "c", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": u.reply}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}))
    .into_response()
}

const PRIMARY: &str = "Rotate them every 90 days [1].";
const SECONDARY: &str = "The fallback says: every 90 days [1].";

async fn faulty_server(primary: &str, fallback: Option<&str>) -> Server {
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.llm.kind = "openai".into();
    c.llm.base_url = Some(primary.to_owned());
    c.llm.model = Some("primary-model".into());
    if let Some(f) = fallback {
        c.llm.fallback = Some(rag_server::config::FallbackLlmConfig {
            kind: "openai".into(),
            base_url: Some(f.to_owned()),
            model: Some("fallback-model".into()),
        });
    }
    c.layers.retry_attempts = 3;
    c.layers.call_timeout_secs = 1;
    c.layers.breaker_failures = 3;
    c.layers.breaker_cool_down_secs = 1;
    c.layers.answer_cache_entries = 0;
    c.request_timeout_secs = 30;
    let state =
        AppState::build_with_env(c, |k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_owned()))
            .await
            .unwrap();
    let s = Server::with_state(state).await;
    let r = s.post("/v1/documents", None, &docs()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s
}

/// The highest value of `rag_circuit_breaker_state` in `/metrics`.
async fn breaker_state(s: &Server) -> f64 {
    let text = s.get_text("/metrics", None).await;
    text.lines()
        .filter(|l| l.starts_with("rag_circuit_breaker_state"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

/// Asks from `clients` concurrent clients until `until`, recording
/// (seconds since `t0`, status, answer text, Retry-After) of each answer,
/// and samples the breaker's state meanwhile.
async fn drive(
    s: &Server,
    clients: usize,
    t0: Instant,
    until: Duration,
) -> (Vec<Answer>, Vec<(f64, f64)>) {
    let q = json!({"question": "How often should API keys be rotated?"});
    let asks = futures::future::join_all((0..clients).map(|i| {
        let q = q.clone();
        async move {
            let mut out = Vec::new();
            while t0.elapsed() < until {
                let t = Instant::now();
                let path = if i % 2 == 0 {
                    "/v1/ask"
                } else {
                    "/v1/ask/stream"
                };
                let r = s.post(path, None, &q).send().await.unwrap();
                let status = r.status();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let text = r.text().await.unwrap();
                let text = match (path, status) {
                    ("/v1/ask", StatusCode::OK) => {
                        serde_json::from_str::<Value>(&text).unwrap()["text"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    }
                    // A stream: its deltas' text, and an error event's body.
                    (_, StatusCode::OK) => streamed_text(&text),
                    _ => text,
                };
                out.push((
                    (t - t0).as_secs_f64(),
                    status,
                    text,
                    retry,
                    t.elapsed().as_secs_f64(),
                ));
                if status != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            out
        }
    }));
    let sampler = async {
        let mut samples = Vec::new();
        while t0.elapsed() < until {
            samples.push((t0.elapsed().as_secs_f64(), breaker_state(s).await));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        samples
    };
    let (asks, samples) = tokio::join!(asks, sampler);
    (asks.into_iter().flatten().collect(), samples)
}

/// The text of a stream's `delta` events; an `error` event's data as is.
fn streamed_text(body: &str) -> String {
    let mut text = String::new();
    let mut event = "";
    for line in body.lines() {
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            match event {
                "delta" => {
                    let v: Value = serde_json::from_str(d.trim()).unwrap();
                    text.push_str(v["text"].as_str().unwrap_or(""));
                }
                "error" => return format!("error event: {}", d.trim()),
                _ => {}
            }
        }
    }
    text
}

type Answer = (f64, StatusCode, String, Option<String>, f64);

/// A `200` with an answer (a stream may fail after its `200`, in an
/// `error` event).
fn answered(a: &Answer) -> bool {
    a.1 == StatusCode::OK && !a.2.starts_with("error event:")
}

fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_failing_provider_is_survived_through_retry_fallback_and_the_breaker() {
    let p = Duration::from_secs_f64(phase_secs());
    let primary = Upstream::new(p, PRIMARY);
    let (calls, max_in_flight) = (primary.calls.clone(), primary.max_in_flight.clone());
    let t0 = primary.started;
    let primary_url = primary.serve().await;
    let fallback_url = Upstream::healthy(SECONDARY).serve().await;
    let s = faulty_server(&primary_url, Some(&fallback_url)).await;
    const CLIENTS: usize = 8;
    // Three bad phases, then a healthy one long enough for the breaker's
    // cool-down and a probe.
    let (answers, breaker) = drive(&s, CLIENTS, t0, p * 3 + Duration::from_secs(5)).await;
    // Every question got an answer, through the whole outage.
    let failed: Vec<_> = answers.iter().filter(|a| !answered(a)).collect();
    assert!(failed.is_empty(), "failed answers: {failed:?}");
    let bad = p.as_secs_f64() * 3.0;
    let during: Vec<_> = answers.iter().filter(|a| a.0 + a.4 < bad).collect();
    assert!(
        during.iter().all(|a| a.2.contains("fallback says")),
        "during the outage every answer is the fallback's"
    );
    assert!(
        during.len() >= CLIENTS,
        "{} answers during the outage",
        during.len()
    );
    // After it, the primary answers again.
    let last = answers.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    assert!(last.2.contains("Rotate them"), "{last:?}");
    // The breaker opened (2) during the outage and closed (0) after it.
    assert!(
        breaker.iter().any(|(t, v)| *t < bad && *v == 2.0),
        "{breaker:?}"
    );
    assert_eq!(breaker.last().unwrap().1, 0.0, "{breaker:?}");
    // Bounded: no answer waited longer than the retries allow, and the
    // upstream never had more calls at once than there were clients.
    let slowest = answers.iter().map(|a| a.4).fold(0.0, f64::max);
    assert!(slowest < 10.0, "an answer took {slowest} s");
    assert!(max_in_flight.load(Ordering::SeqCst) <= CLIENTS);
    // With the breaker open the primary is left alone: far fewer calls
    // than questions times attempts.
    let questions = answers.len();
    let made = calls.load(Ordering::SeqCst);
    assert!(
        made < questions * 3,
        "{made} upstream calls for {questions} questions"
    );
    let metrics = s.get_text("/metrics", None).await;
    eprintln!(
        "provider faults, {} s a phase: {questions} questions from {CLIENTS} clients, {} answered \
         during the outage (all by the fallback), 0 failed; {made} calls to the failing provider; \
         slowest answer {slowest:.2} s; breaker open at {:?} s",
        p.as_secs_f64(),
        during.len(),
        breaker
            .iter()
            .find(|(_, v)| *v == 2.0)
            .map(|(t, _)| (t * 10.0).round() / 10.0)
    );
    assert!(
        counter(&metrics, "rag_fallbacks_total") >= during.len() as f64 * 0.9,
        "{metrics}"
    );
    assert!(counter(&metrics, "rag_retries_total") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn without_a_fallback_clients_get_429_502_503_then_answers() {
    let p = Duration::from_secs_f64(phase_secs());
    let primary = Upstream::new(p, PRIMARY);
    let t0 = primary.started;
    let max_in_flight = primary.max_in_flight.clone();
    let primary_url = primary.serve().await;
    let s = faulty_server(&primary_url, None).await;
    let (answers, breaker) = drive(&s, 4, t0, p * 3 + Duration::from_secs(5)).await;
    let bad = p.as_secs_f64() * 3.0;
    for a in &answers {
        let (t, status, body, retry, _) = a;
        match *status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    retry.is_some(),
                    "{status} without Retry-After at {t}: {body}"
                );
            }
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {}
            other => panic!("unexpected {other} at {t}: {body}"),
        }
        if answered(a) {
            continue;
        }
        let json = body.strip_prefix("error event:").unwrap_or(body).trim();
        let e: Value = serde_json::from_str(json).unwrap();
        let code = e["error"]["code"]
            .as_str()
            .or_else(|| e["code"].as_str())
            .unwrap_or_else(|| panic!("no code in {json}"));
        assert!(
            [
                "upstream_rate_limited",
                "backend_error",
                "upstream_timeout",
                "circuit_open"
            ]
            .contains(&code),
            "{code}"
        );
        assert!(!body.contains("127.0.0.1"), "{body}");
    }
    let ps = p.as_secs_f64();
    // Questions asked while the provider limits are not answered (every
    // `429` or `503` carries Retry-After: checked above); their retries may
    // end in the next phase, so no more than that is asserted of them.
    let limited: Vec<_> = answers.iter().filter(|a| a.0 < ps).collect();
    assert!(
        !limited.is_empty(),
        "no question while the provider limited"
    );
    assert!(limited.iter().all(|a| !answered(a)), "{limited:?}");
    assert!(
        answers
            .iter()
            .filter(|a| a.0 + a.4 < bad)
            .all(|a| !answered(a)),
        "an answer arrived while the only provider was down"
    );
    assert!(breaker.iter().any(|(_, v)| *v == 2.0), "{breaker:?}");
    let last = answers.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    assert!(answered(last), "{last:?}");
    assert!(max_in_flight.load(Ordering::SeqCst) <= 4);
}

/// `scripts/services/postgres ARGS…`: its standard output, or the failure.
fn pg_script(args: &[&str]) -> Result<String, String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services/postgres");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A throwaway PostgreSQL of this test's own (it is killed), stopped and
/// removed on drop.
struct OwnPostgres(std::path::PathBuf);

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = pg_script(&["stop", self.0.to_str().unwrap()]);
    }
}

fn fault_documents(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let text = format!(
                "# Record {i}\n\nRecord {i} belongs to batch {}. It describes the maintenance of \
                 pump station {i}, its inspection every {} days and the crew that runs it.\n\n\
                 ## Notes\n\nStation {i} was last inspected on day {}. The valves were replaced \
                 and the pressure logs archived for the auditors of region {}.",
                i / 500,
                30 + i % 60,
                i % 365,
                i % 17
            );
            json!({"source": format!("records/{i:05}.md"), "text": text})
        })
        .collect()
}

/// Every document of the default namespace: id → chunks.
async fn all_documents(s: &Server) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/documents?limit=1000".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", urlencode(a)));
        }
        let page: Value = s.get_json(&path, None).await;
        for d in page["documents"].as_array().unwrap() {
            out.insert(
                d["id"].as_str().unwrap().to_owned(),
                d["chunks"].as_u64().unwrap(),
            );
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return out,
        }
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn ingest_batches(s: &Server, docs: &[Value]) -> Vec<(StatusCode, Value)> {
    let mut out = Vec::new();
    for batch in docs.chunks(250) {
        let r = s
            .post("/v1/documents", None, &json!({ "documents": batch }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        out.push((status, r.json().await.unwrap()));
    }
    out
}

#[tokio::test]
async fn postgres_killed_mid_ingest_fails_cleanly_and_a_rerun_completes() {
    let name = "postgres_killed_mid_ingest_fails_cleanly_and_a_rerun_completes";
    // scripts/test has installed PostgreSQL when it set RAG_TEST_PG_URL;
    // this test starts a server of its own from the same script, to kill.
    if rag::testkit::service_url("RAG_TEST_PG_URL", name, "scripts/test starts PostgreSQL")
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap().keep();
    let url = pg_script(&["start", dir.to_str().unwrap()]).expect("own PostgreSQL");
    let pg = OwnPostgres(dir);
    let pg_dir = pg.0.to_str().unwrap().to_owned();
    const DOCS: usize = 3000;
    let docs = fault_documents(DOCS);

    // What a clean ingest stores: each document and its chunk count.
    let mut reference = test_config();
    reference.rate_limit.per_key_per_minute = 0;
    let reference = Server::start(reference).await;
    for (status, _) in ingest_batches(&reference, &docs).await {
        assert_eq!(status, StatusCode::OK);
    }
    let expected = all_documents(&reference).await;
    assert_eq!(expected.len(), DOCS);

    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.store.kind = "pgvector".into();
    c.store.url = Some(url);
    c.store.max_connections = Some(4);
    c.sessions.kind = "memory".into();
    // A request waiting on the dead database's pool gets `504` by then.
    c.request_timeout_secs = 10;
    let s = Server::start(c).await;

    // The ingest runs; once its first batch is acknowledged the database
    // is killed under the next ones.
    let (first_done_tx, first_done) = tokio::sync::oneshot::channel();
    let ingest = async {
        let mut out = Vec::new();
        let mut tx = Some(first_done_tx);
        for batch in docs.chunks(250) {
            let r = s
                .post("/v1/documents", None, &json!({ "documents": batch }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap();
            let clean = status == StatusCode::OK && !body.contains("\"failed\":[{");
            out.push((status, body));
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
            // A client stops at the first failure, and reruns later.
            if !clean {
                break;
            }
        }
        out
    };
    let kill = async {
        let _ = first_done.await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        pg_script(&["kill", &pg_dir]).expect("kill");
    };
    let (replies, ()) = tokio::join!(ingest, kill);
    assert_eq!(replies[0].0, StatusCode::OK, "{}", replies[0].1);
    let mut failed_docs = 0;
    for (status, body) in &replies[1..] {
        let v: Value = serde_json::from_str(body).expect("a JSON reply");
        if *status == StatusCode::OK {
            failed_docs += v["failed"].as_array().unwrap().len();
        } else {
            assert!(status.is_server_error(), "{status}: {body}");
            failed_docs += 250; // at most
            let code = v["error"]["code"].as_str().unwrap();
            assert!(
                ["backend_error", "upstream_timeout", "timeout"].contains(&code),
                "{code}: {body}"
            );
            assert!(v["error"]["request_id"].is_string(), "{body}");
        }
        for leak in ["127.0.0.1", "INSERT", "DELETE", "postgres://", "sqlx"] {
            assert!(!body.contains(leak), "{leak} in {body}");
        }
    }
    assert!(failed_docs > 0, "the kill landed after the ingest finished");
    let acknowledged = (replies.len() - 1) * 250;
    // Readiness says so while the database is down.
    let r = s.get("/ready", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    pg_script(&["restart", &pg_dir]).expect("restart");
    let started = Instant::now();
    loop {
        let r = s.get("/ready", None).send().await.unwrap();
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready after the restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // No document is half written: each one stored has all its chunks.
    let stored = all_documents(&s).await;
    assert!(
        stored.len() < DOCS,
        "every document was stored despite the kill"
    );
    for (id, chunks) in &stored {
        assert_eq!(Some(chunks), expected.get(id), "{id} is half written");
    }
    // The rerun completes, and the counts are exact.
    let mut added = 0;
    let mut unchanged = 0;
    for (status, report) in ingest_batches(&s, &docs).await {
        assert_eq!(status, StatusCode::OK, "{report}");
        assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
        added += report["added"].as_array().unwrap().len();
        added += report["replaced"].as_array().unwrap().len();
        unchanged += report["unchanged"].as_array().unwrap().len();
    }
    assert_eq!(
        unchanged,
        stored.len(),
        "the documents stored before the kill are unchanged"
    );
    assert_eq!(added + unchanged, DOCS);
    assert_eq!(all_documents(&s).await, expected);
    eprintln!(
        "PostgreSQL killed after {acknowledged} of {DOCS} documents were acknowledged: {} stored \
         whole, none half written; the rerun added {added}, found {unchanged} unchanged",
        stored.len()
    );
    // And questions find what was written after the restart.
    let a: Value = s
        .post_json(
            "/v1/ask",
            None,
            &json!({"question": "When was station 2999 last inspected?"}),
        )
        .await;
    assert!(
        a["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["source"] == "records/02999.md"),
        "{a}"
    );
}

/// A tmpfs of `mib` MiB mounted for one test, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(mib: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?.keep();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self(dir))
    }

    fn resize(&self, mib: u32) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazily: the server of the test may still hold files open in it.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
async fn lance_on_a_full_filesystem_fails_clearly_and_stays_readable() {
    let name = "lance_on_a_full_filesystem_fails_clearly_and_stays_readable";
    let fs = match SmallFs::mount(12) {
        Ok(fs) => fs,
        Err(e) if rag::testkit::under_ci() => {
            panic!("{name}: cannot mount a tmpfs under CI: {e}")
        }
        Err(e) => {
            eprintln!("NOTICE: {name} NOT RUN: cannot mount a tmpfs here ({e})");
            return;
        }
    };
    let mut c = test_config();
    c.rate_limit.per_key_per_minute = 0;
    c.store.kind = "lance".into();
    c.store.path = Some(fs.0.join("rag-data"));
    c.sessions.kind = "memory".into();
    let s = Server::start(c).await;
    let docs = fault_documents(20_000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for batch in docs.chunks(200) {
        let r = s
            .post("/v1/documents", None, &json!({ "documents": batch }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        let failed = body["failed"].as_array().map_or(0, Vec::len);
        if status == StatusCode::OK && failed == 0 {
            acknowledged.extend(body["added"].as_array().unwrap().iter().cloned());
        } else {
            refused = Some((status, body, batch));
            break;
        }
    }
    let (status, body, batch) = refused.expect("12 MiB filled up");
    eprintln!(
        "LanceDB on a 12 MiB tmpfs: full after {} documents acknowledged; the next request: {status}",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty(), "nothing fitted: {body}");
    // A clear error: a backend error with the request id, or per-document
    // failures, and no path or OS detail.
    let text = body.to_string();
    if status == StatusCode::OK {
        assert!(!body["failed"].as_array().unwrap().is_empty(), "{text}");
    } else {
        assert!(status.is_server_error(), "{status}: {text}");
        assert_eq!(body["error"]["code"], "backend_error", "{text}");
        assert!(body["error"]["request_id"].is_string(), "{text}");
    }
    let dir = fs.0.to_str().unwrap();
    for leak in [dir, "os error", "No space"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    // Readable afterwards: every acknowledged document is there, whole, and
    // questions are answered.
    let stored = all_documents(&s).await;
    for id in &acknowledged {
        let id = id.as_str().unwrap();
        assert!(stored.get(id).is_some_and(|c| *c > 0), "{id} lost");
    }
    let r = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "When was station 7 last inspected?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // With room again the refused batch goes in.
    fs.resize(256);
    let r = s
        .post("/v1/documents", None, &json!({ "documents": batch }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert!(report["failed"].as_array().unwrap().is_empty(), "{report}");
    let after = all_documents(&s).await;
    assert!(
        after.len() >= acknowledged.len() + batch.len(),
        "{} stored",
        after.len()
    );
}

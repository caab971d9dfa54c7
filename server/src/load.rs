//! A load run and soak against `POST /v1/ask`: concurrent clients on
//! loopback for a number of requests or a duration. Reports requests/s,
//! p50/p95/p99, errors and (in-process) resident memory over time.
//!
//! ```text
//! cargo run --release -p rag-server --bin server-load
//! cargo run --release -p rag-server --bin server-load -- --requests 20000 --clients 100
//! cargo run --release -p rag-server --bin server-load -- --url http://127.0.0.1:8080
//! # the soak: 100 clients for 10 minutes on the local embedder and LanceDB
//! cargo run --release -p rag-server --bin server-load -- --duration 600 --embedder local --store lance
//! ```
//!
//! Without `--url` it starts the server in-process on `127.0.0.1:0` and
//! ingests this workspace's Markdown docs first: `--store memory` (default),
//! `lance` (a temporary directory; `--lance` for short) or `pgvector`
//! (`--pg-url`, else `RAG_TEST_PG_URL`, in tables of its own); `--embedder
//! hash` (default: the server's own overhead) or `local` (the real local
//! embedder); extractive answers; answer cache off so every request runs the
//! pipeline (`--cache` turns it on as in the server's default configuration).
//! With `--url` it only sends questions (ingest something first).
//!
//! With `--duration` it samples the process's resident memory every second
//! and compares the end with the sample taken after the warm-up
//! (`--warmup`, default a fifth of the run); it exits with status 1 when a
//! request failed or memory grew more than `--max-rss-growth` percent
//! (default 10).

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rag::{LoadOptions, load_path};
use rag_server::{AppState, ServerConfig};

const QUESTIONS: &[&str] = &[
    "How do I run the test suite?",
    "How are chunk ids derived?",
    "What does the retry layer do?",
    "How is the answer cache invalidated?",
    "Which stores are supported?",
    "How do namespaces isolate tenants?",
    "What is reciprocal rank fusion?",
    "How does the circuit breaker work?",
    "How are filters translated to SQL?",
    "What does the prompt guard check?",
    "How do I configure the OpenAI adapter?",
    "Where are embeddings cached?",
    "How is the context packed into the token budget?",
    "What happens when a document changes?",
    "How do sessions expire?",
    "What metrics are recorded?",
];

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// This process's resident memory, in MiB (Linux; `None` elsewhere).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Starts the server in-process as the arguments say; its base URL.
async fn start_server(args: &[String]) -> Result<String, Box<dyn std::error::Error>> {
    let mut cfg = ServerConfig::default();
    cfg.embedder.kind = arg(args, "--embedder", "hash".to_owned());
    cfg.llm.kind = "extractive".into();
    cfg.reranker.kind = "none".into();
    let mut store = arg(args, "--store", "memory".to_owned());
    if args.iter().any(|a| a == "--lance") {
        store = "lance".into();
    }
    let unique = format!("rag_load_{}", std::process::id());
    match store.as_str() {
        "memory" => cfg.store.kind = "memory".into(),
        "lance" => cfg.store.path = Some(std::env::temp_dir().join(&unique)),
        "pgvector" => {
            let url = Some(arg(args, "--pg-url", String::new()))
                .filter(|u| !u.is_empty())
                .or_else(|| std::env::var("RAG_TEST_PG_URL").ok())
                .ok_or("--store pgvector needs --pg-url or RAG_TEST_PG_URL")?;
            cfg.store.kind = "pgvector".into();
            cfg.store.url = Some(url);
            cfg.store.table_prefix = Some(unique.clone());
            cfg.sessions.kind = "memory".into();
        }
        other => return Err(format!("unknown --store {other}").into()),
    }
    if !args.iter().any(|a| a == "--cache") {
        cfg.layers.answer_cache_entries = 0;
    }
    cfg.rate_limit.per_key_per_minute = 0;
    let state = AppState::build(cfg).await?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let loaded = load_path(&root, &LoadOptions::default().with_extensions(["md"]))?;
    let report = state.rag.ingest_many(loaded.documents).await;
    println!(
        "store {store}, embedder {}: ingested {} documents ({} chunks) in {:.0} ms",
        state.config.embedder.kind,
        report.added.len(),
        report.chunks_written,
        report.elapsed.as_secs_f64() * 1000.0
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(rag_server::serve(listener, state, std::future::pending()));
    Ok(format!("http://{addr}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let duration: Option<Duration> = Some(arg(&args, "--duration", 0.0f64))
        .filter(|d| *d > 0.0)
        .map(Duration::from_secs_f64);
    let requests: usize = if duration.is_some() {
        usize::MAX
    } else {
        arg(&args, "--requests", 10_000)
    };
    let clients: usize = arg(&args, "--clients", 100);
    let max_growth: f64 = arg(&args, "--max-rss-growth", 10.0);
    let url: Option<String> = arg(&args, "--url", String::new()).into();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let base = match url.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => start_server(&args).await?,
    };

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let endpoint = format!("{base}/v1/ask");
    // Warm up: each question once.
    for q in QUESTIONS {
        client
            .post(&endpoint)
            .json(&serde_json::json!({ "question": q }))
            .send()
            .await?
            .error_for_status()?;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    // The first few failures, to say what they were.
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    // Resident memory every second while a timed run lasts.
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        if deadline.is_none() {
            return samples;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while deadline.is_some_and(|d| Instant::now() < d) {
            tick.tick().await;
            if let Some(m) = rss_mib() {
                samples.push((started.elapsed().as_secs_f64(), m));
            }
        }
        samples
    });
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, endpoint, next, errors, failures) = (
            client.clone(),
            endpoint.clone(),
            next.clone(),
            errors.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let body = serde_json::json!({ "question": QUESTIONS[i % QUESTIONS.len()] });
                let t = Instant::now();
                let failure = match client.post(&endpoint).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.err().map(|e| e.to_string())
                    }
                    Ok(r) => Some(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Some(format!("{e:?}")),
                };
                latencies.push(t.elapsed());
                if let Some(f) = failure {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
                    if failures.len() < 5 {
                        failures.push(f);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed();
    let samples = sampler.await?;
    all.sort();
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "{} requests, {} clients, {:.2} s: {:.0} req/s | p50 {:.1} ms | p95 {:.1} ms | p99 {:.1} ms | max {:.1} ms | errors {}",
        all.len(),
        clients,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(&all, 0.50),
        pct(&all, 0.95),
        pct(&all, 0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        errors
    );
    for f in failures.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        println!("failed: {f}");
    }
    let mut failed = errors > 0;
    if let (Some(d), false) = (duration, samples.is_empty()) {
        let warmup = arg(&args, "--warmup", d.as_secs_f64() / 5.0);
        let after = samples
            .iter()
            .find(|(t, _)| *t >= warmup)
            .or(samples.last())
            .map_or(0.0, |s| s.1);
        let end = samples.last().map_or(0.0, |s| s.1);
        let peak = samples.iter().map(|s| s.1).fold(0.0, f64::max);
        let growth = (end - after) / after * 100.0;
        println!(
            "resident memory (server and clients, one process): {after:.1} MiB after {warmup:.0} s of warm-up, {end:.1} MiB at the end ({growth:+.1}%), peak {peak:.1} MiB"
        );
        if growth > max_growth {
            println!("memory grew more than {max_growth}% after the warm-up");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

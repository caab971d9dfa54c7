//! A bounded load run against `POST /v1/ask`: 100 concurrent clients, a fixed
//! number of requests, loopback only. Reports requests/s, p50/p95/p99 and
//! errors.
//!
//! ```text
//! cargo run --release -p rag-server --bin server-load
//! cargo run --release -p rag-server --bin server-load -- --requests 20000 --clients 100
//! cargo run --release -p rag-server --bin server-load -- --url http://127.0.0.1:8080
//! ```
//!
//! Without `--url` it starts the server in-process on `127.0.0.1:0` with the
//! in-memory store (`--lance` uses the default LanceDB store, in a temporary
//! directory), `HashEmbedder`, extractive answers, answer cache off so
//! every request runs the pipeline (`--cache` turns it on as in the server's
//! default configuration), and ingests this
//! workspace's Markdown docs first. With `--url` it only sends questions
//! (ingest something first).

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let requests: usize = arg(&args, "--requests", 10_000);
    let clients: usize = arg(&args, "--clients", 100);
    let url: Option<String> = arg(&args, "--url", String::new()).into();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let base = match url.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => {
            let mut cfg = ServerConfig::default();
            // The server's own overhead: no model work.
            cfg.embedder.kind = "hash".into();
            cfg.llm.kind = "extractive".into();
            cfg.reranker.kind = "none".into();
            let lance_dir = std::env::temp_dir().join(format!("rag-load-{}", std::process::id()));
            if args.iter().any(|a| a == "--lance") {
                cfg.store.path = Some(lance_dir);
            } else {
                cfg.store.kind = "memory".into();
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
                "ingested {} documents ({} chunks) in {:.0} ms",
                report.added.len(),
                report.chunks_written,
                report.elapsed.as_secs_f64() * 1000.0
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(rag_server::serve(listener, state, std::future::pending()));
            format!("http://{addr}")
        }
    };

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let endpoint = format!("{base}/v1/ask");
    // Warm up: one request per client connection.
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
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (client, endpoint, next, errors) = (
            client.clone(),
            endpoint.clone(),
            next.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let body = serde_json::json!({ "question": QUESTIONS[i % QUESTIONS.len()] });
                let t = Instant::now();
                let ok = match client.post(&endpoint).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                latencies.push(t.elapsed());
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed();
    all.sort();
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
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

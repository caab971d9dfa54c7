//! The `rag` HTTP server.
//!
//! ```text
//! cargo run -p rag-server --bin server                       # embedded default, offline
//! cargo run -p rag-server --bin server -- --config server.toml
//! cargo run -p rag-server --bin server -- hash-key MY-SECRET  # prints sha256:<hex> for [[keys]]
//! echo MY-SECRET | cargo run -p rag-server --bin server -- hash-key -   # the same, from stdin
//! cargo run -p rag-server --bin server -- check-config --config server.toml
//! ```
//!
//! Configuration: an optional TOML file (`--config` or `RAG_SERVER_CONFIG`),
//! then `RAG_*` environment variables; see `server/README.md`.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use rag_server::ServerConfig;

const USAGE: &str =
    "usage: server [--config FILE] | server check-config [--config FILE] | server hash-key KEY|-";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path = std::env::var_os("RAG_SERVER_CONFIG").map(PathBuf::from);
    let mut command = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(p.into()),
                None => {
                    eprintln!("--config needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "hash-key" => {
                let Some(mut key) = args.next() else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                // `-` reads the key from standard input, keeping it out of
                // the shell history and the process list.
                if key == "-" {
                    key.clear();
                    if std::io::stdin().read_line(&mut key).is_err() {
                        eprintln!("cannot read the key from standard input");
                        return ExitCode::from(2);
                    }
                    key = key.trim_end_matches(['\r', '\n']).to_owned();
                }
                println!("{}", rag_server::auth::hash_key(&key));
                return ExitCode::SUCCESS;
            }
            "check-config" => command = Some("check-config"),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    let config = match ServerConfig::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(78);
        }
    };
    if command == Some("check-config") {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    rag_server::init_logs(&config.log_format);
    ExitCode::from(rag_server::run(config).await)
}

//! `rag`: the command line of the workspace.
//!
//! Ingest files, ask and chat in the terminal, list and delete documents,
//! back up and restore a namespace, run the HTTP server and measure quality,
//! all on the configuration the server reads (`--config FILE` or
//! `RAG_CONFIG`, then the `RAG_*` variables; see `server/README.md`). With
//! neither it runs on the embedded default: a LanceDB store under
//! `./rag-data`, the local models when `scripts/fetch-models` fetched them,
//! no API key, no server.
//!
//! Exit codes: 0 success, 1 a failure (a backend, a file that could not be
//! ingested, a quality gate below its baseline), 2 bad usage (an unknown
//! flag, a bad value, a path that does not exist), 130 interrupted (Ctrl-C).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod answers;
mod ask;
mod backup;
mod docs;
mod eval;
mod ingest;
mod open;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::open::Backend;

const EXAMPLES: &str = "\
Examples:
  rag ingest docs/                      # every text file under docs/, again later: only changes
  rag ask \"How do I rotate the keys?\"   # the answer as it is written, then its sources
  rag chat                              # a conversation; /sources, /new, /quit
  rag docs list
  rag serve --bind 127.0.0.1:8080       # the HTTP API on the same data
  rag --config deployments/pgvector-openai.toml ask \"…\"";

/// Answer questions over your own documents: ingest, ask, chat, serve.
///
/// Every command reads the server's configuration: `--config FILE` (or
/// `RAG_CONFIG`), then `RAG_*` environment variables. Without either, the
/// embedded default: a LanceDB store under ./rag-data and the local models.
#[derive(Parser, Debug)]
#[command(name = "rag", version, after_help = EXAMPLES, propagate_version = true)]
pub(crate) struct Cli {
    /// The configuration file (the server's TOML); `RAG_*` variables apply on top.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "RAG_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Colours: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN")]
    color: ColorWhen,
    /// No progress bars and no notices; results and errors only.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add files, directories, globs or standard input to a namespace.
    Ingest(ingest::IngestArgs),
    /// Answer one question, streamed, with its citations.
    Ask(ask::AskArgs),
    /// An interactive conversation, stored as a session you can resume.
    Chat(ask::ChatArgs),
    /// List, show or delete stored documents.
    #[command(subcommand)]
    Docs(docs::DocsCommand),
    /// Write a namespace (and its sessions) to a portable backup file.
    Export(backup::ExportArgs),
    /// Restore a namespace from a backup file.
    Import(backup::ImportArgs),
    /// Run the HTTP server on this configuration.
    Serve(ServeArgs),
    /// Measure retrieval or answer quality on a dataset.
    Eval(Box<eval::EvalArgs>),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  rag completions bash > ~/.local/share/bash-completion/completions/rag"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  rag serve\n  rag serve --bind 0.0.0.0:8080 --config server.toml"
)]
struct ServeArgs {
    /// The address to listen on (else the configuration's `bind`).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate the configuration and print what it resolves to.
    #[command(
        after_help = "Examples:\n  rag config check\n  rag config check --config server.toml --connect --json"
    )]
    Check {
        /// Also open the store, the session store and the embedder.
        #[arg(long)]
        connect: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        backend: Backend,
    },
}

/// How a command ended, for the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage: exit code 2.
    Usage(String),
    /// The work failed: exit code 1.
    Failed(String),
    /// Stopped by Ctrl-C: exit code 130 (what was done has been said).
    Interrupted,
    /// Failed, and the command has already said why: exit code 1.
    Reported,
}

impl From<rag::Error> for Failure {
    fn from(e: rag::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Failed(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Failed(e.to_string())
    }
}

pub(crate) type Outcome = Result<(), Failure>;

/// Global settings every command sees.
#[derive(Clone, Debug)]
pub(crate) struct Global {
    pub(crate) config: Option<PathBuf>,
    pub(crate) quiet: bool,
}

fn init_logs(quiet: bool) {
    use tracing_subscriber::EnvFilter;
    // Warnings (a missing model, a fallback) on stderr, without timestamps;
    // RAG_LOG=info (or debug) for more.
    let default = if quiet { "error" } else { "warn" };
    let filter = EnvFilter::try_from_env("RAG_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never)
        .without_time()
        .with_target(false)
        .try_init();
}

async fn run(cli: Cli) -> Outcome {
    let global = Global {
        config: cli
            .config
            .or_else(|| std::env::var_os("RAG_SERVER_CONFIG").map(PathBuf::from)),
        quiet: cli.quiet,
    };
    if !matches!(cli.command, Command::Serve(_)) {
        init_logs(cli.quiet);
    }
    match cli.command {
        Command::Ingest(a) => ingest::run(&global, a).await,
        Command::Ask(a) => ask::run_ask(&global, a).await,
        Command::Chat(a) => ask::run_chat(&global, a).await,
        Command::Docs(c) => docs::run(&global, c).await,
        Command::Export(a) => backup::export(&global, a).await,
        Command::Import(a) => backup::import(&global, a).await,
        Command::Serve(a) => serve(&global, a).await,
        Command::Eval(a) => eval::run(*a).await,
        Command::Config(ConfigCommand::Check {
            connect,
            json,
            backend,
        }) => open::check(&global, &backend, connect, json).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "rag", &mut std::io::stdout());
            Ok(())
        }
    }
}

async fn serve(global: &Global, a: ServeArgs) -> Outcome {
    let mut config = open::load_config(global, &a.backend)?;
    if let Some(bind) = a.bind {
        config.bind = bind;
    }
    config.validate().map_err(Failure::Usage)?;
    rag_server::init_logs(&config.log_format);
    match rag_server::run(config).await {
        0 => Ok(()),
        // The server has logged and printed why.
        code => std::process::exit(i32::from(code)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let choice = match cli.color {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rag: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Local model threads and child processes stop with the runtime.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            output::error(&msg);
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            output::error(&msg);
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
        Err(Failure::Interrupted) => ExitCode::from(130),
    }
}

//! `rag ask` (one question, streamed) and `rag chat` (a conversation stored
//! as a session).

use std::io::{IsTerminal, Read, Write};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use rag::{Answer, Ask, AskEvent, Filter, Namespace, NewSession, Rag, SearchMode, Source};
use rustyline::error::ReadlineError;
use serde_json::Value;

use crate::open::{Backend, Needs, namespace, open};
use crate::output::{self, BOLD, CYAN, DIM};
use crate::{Failure, Global, Outcome};

/// Retrieval settings shared by `ask` and `chat`.
#[derive(Args, Debug, Clone)]
pub(crate) struct AskOptions {
    /// The namespace (tenant) asked.
    #[arg(long, short = 'n', default_value = "default", value_parser = namespace)]
    namespace: Namespace,
    /// Only passages matching: `KEY=VALUE` (metadata, `source` or `document_id`; repeatable, all must hold) or a filter as JSON.
    #[arg(long, short = 'f', value_name = "FILTER", value_parser = parse_filter)]
    filter: Vec<Filter>,
    /// How many passages the answer is written from.
    #[arg(long, short = 'k', value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    top_k: Option<u16>,
    /// Retrieval: hybrid (dense and keyword, fused), dense or keyword.
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    mode: Mode,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Hybrid,
    Dense,
    Keyword,
}

/// `KEY=VALUE` or the JSON form of [`Filter`].
fn parse_filter(s: &str) -> Result<Filter, String> {
    let f: Filter = if s.trim_start().starts_with('{') {
        serde_json::from_str(s).map_err(|e| format!("not a filter: {e}"))?
    } else {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected KEY=VALUE or a JSON filter"))?;
        let value: Value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        let json = serde_json::json!({"eq": {
            "field": match k {
                "source" | "document_id" => Value::String(k.to_owned()),
                key => serde_json::json!({"metadata": key}),
            },
            "value": value,
        }});
        serde_json::from_value(json).map_err(|e| format!("{s:?}: {e}"))?
    };
    f.validate().map_err(|e| e.to_string())?;
    Ok(f)
}

impl AskOptions {
    fn ask(&self, question: &str, config_top_k: Option<usize>) -> Ask {
        let mut ask = Ask::new(question)
            .namespace(self.namespace.clone())
            .mode(match self.mode {
                Mode::Hybrid => SearchMode::Hybrid,
                Mode::Dense => SearchMode::Dense,
                Mode::Keyword => SearchMode::Keyword,
            });
        match self.filter.len() {
            0 => {}
            1 => ask = ask.filter(self.filter[0].clone()),
            _ => ask = ask.filter(Filter::And(self.filter.clone())),
        }
        if let Some(k) = self.top_k.map(usize::from).or(config_top_k) {
            ask = ask.top_k(k);
        }
        ask
    }
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  rag ask \"How do I rotate the API keys?\"
  rag ask \"What changed in 2026?\" --filter year=2026 --top-k 5
  rag ask \"Which port does the server use?\" --json | jq '.citations[0].source'
  echo \"What is the refund policy?\" | rag ask -")]
pub(crate) struct AskArgs {
    /// The question; `-` reads it from standard input.
    question: String,
    #[command(flatten)]
    options: AskOptions,
    /// Print the whole answer object as JSON (text, citations, sources, trace) once it is complete.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: Backend,
}

#[derive(Args, Debug)]
#[command(after_help = "\
In the chat:
  /sources   the passages the last answer was written from
  /new       start a new session
  /help      this list
  /quit      leave (also Ctrl-D)

Examples:
  rag chat
  rag chat --session 0b7e…   # resume a stored session
  rag chat --namespace handbook")]
pub(crate) struct ChatArgs {
    /// Resume this session (its id, printed when a chat starts).
    #[arg(long, short = 's', value_name = "ID")]
    session: Option<rag::SessionId>,
    #[command(flatten)]
    options: AskOptions,
    #[command(flatten)]
    backend: Backend,
}

/// Prints the cited passages: number, source, location and a snippet.
fn print_citations(answer: &Answer) {
    if answer.citations.is_empty() {
        anstream::println!("{DIM}(no sources cited){DIM:#}");
        return;
    }
    anstream::println!("\n{BOLD}Sources{BOLD:#}");
    for c in &answer.citations {
        let text = answer
            .sources
            .iter()
            .find(|s| s.number == c.number)
            .map(|s| s.text.as_str())
            .unwrap_or_default();
        print_source(c.number, &c.source, &c.byte_range, text);
    }
}

fn print_source(number: usize, source: &str, range: &std::ops::Range<usize>, text: &str) {
    anstream::println!(
        "  {CYAN}[{number}]{CYAN:#} {BOLD}{source}{BOLD:#} {DIM}{}{DIM:#}",
        output::location(source, range)
    );
    anstream::println!("      {DIM}{}{DIM:#}", output::snippet(text, 110));
}

fn print_all_sources(sources: &[Source]) {
    if sources.is_empty() {
        anstream::println!("{DIM}(no sources yet){DIM:#}");
    }
    for s in sources {
        print_source(s.number, &s.source, &s.byte_range, &s.text);
    }
}

/// The line under an answer: who wrote it and how long it took.
fn footer(answer: &Answer) -> String {
    format!(
        "{} · {} passages · {:.1} s",
        if answer.extractive {
            "quoted from the sources (no model)"
        } else {
            answer.model.as_str()
        },
        answer.sources.len(),
        answer.trace.timings.total.as_secs_f64()
    )
}

/// Streams one answer to stdout; returns it complete.
async fn stream_answer(rag: &Rag, ask: Ask) -> Result<Answer, Failure> {
    let mut stream = rag.ask_stream(ask).await?;
    let mut out = anstream::stdout();
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event? {
            AskEvent::Sources(_) => {}
            AskEvent::Delta(text) => {
                write!(out, "{text}")?;
                out.flush()?;
            }
            AskEvent::Done(answer) => done = Some(*answer),
        }
    }
    writeln!(out)?;
    done.ok_or_else(|| Failure::Failed("the answer stream ended early".into()))
}

pub(crate) async fn run_ask(global: &Global, a: AskArgs) -> Outcome {
    let question = if a.question == "-" {
        let mut q = String::new();
        std::io::stdin().read_to_string(&mut q)?;
        q.trim().to_owned()
    } else {
        a.question.trim().to_owned()
    };
    if question.is_empty() {
        return Err(Failure::Usage("the question is empty".into()));
    }
    let (state, config) = open(global, &a.backend, Needs::Answers).await?;
    let ask = a.options.ask(&question, config.ask.top_k);
    if a.json {
        let answer = state.rag.ask(ask).await?;
        let v = serde_json::to_value(&answer).map_err(|e| e.to_string())?;
        println!("{v:#}");
        return Ok(());
    }
    let answer = stream_answer(&state.rag, ask).await?;
    print_citations(&answer);
    output::note(global.quiet, &footer(&answer));
    Ok(())
}

/// The session a chat writes to: the one asked for, or a new one.
async fn session(
    rag: &Rag,
    ns: &Namespace,
    resume: Option<rag::SessionId>,
) -> Result<rag::SessionId, Failure> {
    let store = rag
        .sessions()
        .ok_or_else(|| Failure::Failed("the pipeline has no session store".into()))?;
    if let Some(id) = resume {
        let s = store.get(id).await.map_err(|e| match e {
            rag::Error::NotFound { .. } => {
                Failure::Failed(format!("no session {id} (it may have expired)"))
            }
            e => e.into(),
        })?;
        if &s.namespace != ns {
            return Err(Failure::Failed(format!(
                "session {id} belongs to namespace {}, not {ns}",
                s.namespace
            )));
        }
        let history = store.history(id, 4).await?;
        anstream::println!(
            "{DIM}resumed session {id}: {} messages{DIM:#}",
            s.message_count
        );
        for m in history {
            let who = match m.message.role {
                rag::Role::User => "you",
                rag::Role::Assistant => "rag",
                _ => "system",
            };
            anstream::println!(
                "{DIM}{who:>4}: {}{DIM:#}",
                output::snippet(&m.message.content, 100)
            );
        }
        return Ok(id);
    }
    Ok(rag.create_session(NewSession::new(ns.clone())).await?.id)
}

pub(crate) async fn run_chat(global: &Global, a: ChatArgs) -> Outcome {
    let (state, config) = open(global, &a.backend, Needs::Chat).await?;
    let rag = &state.rag;
    let ns = a.options.namespace.clone();
    let mut id = session(rag, &ns, a.session).await?;
    state.persist_sessions()?;
    let tty = std::io::stdin().is_terminal();
    if !global.quiet {
        anstream::println!("{DIM}session {id} · namespace {ns} · /sources /new /help /quit{DIM:#}");
    }
    let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
    // Line history beside the sessions file, when there is one.
    let history = config
        .sessions
        .path
        .as_ref()
        .map(|p| p.with_file_name("chat-history.txt"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let mut last: Vec<Source> = Vec::new();
    let prompt = if tty { "› " } else { "" };
    loop {
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => {
                anstream::println!("{DIM}(/quit or Ctrl-D to leave){DIM:#}");
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Failure::Failed(e.to_string())),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        match line {
            "/quit" | "/exit" | "/q" => break,
            "/help" | "/?" => {
                anstream::println!(
                    "/sources  the passages of the last answer\n/new      a new session\n/quit     leave"
                );
                continue;
            }
            "/sources" => {
                print_all_sources(&last);
                continue;
            }
            "/new" => {
                id = rag.create_session(NewSession::new(ns.clone())).await?.id;
                state.persist_sessions()?;
                last.clear();
                anstream::println!("{DIM}new session {id}{DIM:#}");
                continue;
            }
            l if l.starts_with('/') => {
                output::warn(&format!("unknown command {l} (/help lists them)"));
                continue;
            }
            _ => {}
        }
        let ask = a.options.ask(line, config.ask.top_k).session(id);
        match stream_answer(rag, ask).await {
            Ok(answer) => {
                print_citations(&answer);
                output::note(global.quiet, &footer(&answer));
                last = answer.sources;
            }
            // One failed question does not end the conversation.
            Err(Failure::Failed(e)) => output::error(&e),
            Err(e) => return Err(e),
        }
        state.persist_sessions()?;
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    if !global.quiet {
        anstream::println!("{DIM}session {id} saved; resume with: rag chat --session {id}{DIM:#}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_key_value_or_json() {
        let f = parse_filter("team=infra").unwrap();
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"eq": {"field": {"metadata": "team"}, "value": "infra"}})
        );
        let f = parse_filter("source=docs/a.md").unwrap();
        assert_eq!(
            serde_json::to_value(&f).unwrap()["eq"]["field"],
            serde_json::json!("source")
        );
        assert!(parse_filter("no-equals").is_err());
        assert!(parse_filter("{not json").is_err());
    }
}

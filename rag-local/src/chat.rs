//! [`LocalChat`]: a small instruction-tuned GGUF model on candle's
//! quantized llama.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use futures::StreamExt;
use rag_core::{
    ChatDelta, ChatRequest, ChatResponse, ChatStream, Error, FinishReason, LlmClient, Message,
    Result, Role, Usage,
};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{corrupt_file, join, require_file, runtime};

const BACKEND: &str = "candle";
/// Prompt tokens per forward pass while reading the prompt.
const PROMPT_CHUNK: usize = 256;

/// How a [`LocalChat`] holds the model's weights in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WeightFormat {
    /// As stored in the file (Q4_1 for SmolLM2, 100 MB). Candle's CPU
    /// kernel for Q4_1 is scalar: about 2 tokens/s here unless the crate is
    /// built with `-C target-cpu=native`.
    Stored,
    /// Re-quantized to Q8_0 at load (140 MB). Measured no faster than
    /// `Stored` with candle 0.11 on x86-64.
    Q8_0,
    /// Dequantized to f32 at load (4 bytes a weight: 540 MB for
    /// SmolLM2-135M): matrix products go through gemm, which picks AVX2 or
    /// AVX-512 at run time. About 15x faster than `Stored` on x86-64 without
    /// `target-cpu=native` (32 vs 2 tokens/s on 2 cores), and exact: Q4_1
    /// dequantizes to f32 without loss, and activations are not quantized.
    #[default]
    F32,
}

/// Configuration of a [`LocalChat`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LocalChatConfig {
    /// The GGUF model file (llama architecture).
    pub model_file: PathBuf,
    /// A `tokenizer.json` to use; `None`: `tokenizer.json` beside the model
    /// when there is one, otherwise a tokenizer built from the GGUF
    /// metadata.
    pub tokenizer_file: Option<PathBuf>,
    /// The model id; default: the file name without `.gguf`.
    pub model_id: Option<String>,
    /// Most tokens generated when a request sets no `max_tokens`; 512.
    pub default_max_tokens: u32,
    /// Tokens the model attends to, prompt and answer together; `None`:
    /// the GGUF `context_length`, at most 4096 (candle's rotary table).
    pub context_window: Option<usize>,
    /// The system prompt used when a conversation has none; `None`: the
    /// one the model's chat template inserts (SmolLM2's "You are a helpful
    /// AI assistant named SmolLM, trained by Hugging Face"), if any.
    pub default_system_prompt: Option<String>,
    /// Penalty on tokens generated in the last `repeat_last_n`; 1.1
    /// (1.0 = none). Small models loop without it.
    pub repeat_penalty: f32,
    /// Window of the repeat penalty; 64 tokens.
    pub repeat_last_n: usize,
    /// Seed of sampling when a request has a temperature above 0 and no
    /// seed; 42.
    pub seed: u64,
    /// Nucleus sampling threshold with a temperature; `None`: none.
    pub top_p: Option<f64>,
    /// How the weights are held in memory; [`WeightFormat::F32`].
    pub weights: WeightFormat,
}

impl LocalChatConfig {
    /// Defaults for the model in `model_file`.
    pub fn new(model_file: impl Into<PathBuf>) -> Self {
        Self {
            model_file: model_file.into(),
            tokenizer_file: None,
            model_id: None,
            default_max_tokens: 512,
            context_window: None,
            default_system_prompt: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            seed: 42,
            top_p: None,
            weights: WeightFormat::default(),
        }
    }
    /// Sets how the weights are held in memory.
    pub fn with_weights(mut self, format: WeightFormat) -> Self {
        self.weights = format;
        self
    }
    /// Sets the tokenizer file.
    pub fn with_tokenizer_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tokenizer_file = Some(path.into());
        self
    }
    /// Sets the model id.
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = Some(id.into());
        self
    }
    /// Sets the default answer budget.
    pub fn with_default_max_tokens(mut self, n: u32) -> Self {
        self.default_max_tokens = n.max(1);
        self
    }
    /// Caps the context window.
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = Some(tokens);
        self
    }
    /// Sets the default system prompt.
    pub fn with_default_system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.default_system_prompt = Some(prompt.into());
        self
    }
    /// Sets the repeat penalty and its window.
    pub fn with_repeat_penalty(mut self, penalty: f32, last_n: usize) -> Self {
        self.repeat_penalty = penalty;
        self.repeat_last_n = last_n;
        self
    }
    /// Sets the sampling seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets nucleus sampling.
    pub fn with_top_p(mut self, p: f64) -> Self {
        self.top_p = Some(p);
        self
    }
}

/// Timings of one generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct GenerationStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the end-of-turn token not counted).
    pub completion_tokens: usize,
    /// Time reading the prompt (prefill).
    pub prompt_time: Duration,
    /// Time generating, from the first generated token to the last.
    pub generation_time: Duration,
}

impl GenerationStats {
    /// Generated tokens per second.
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.generation_time.as_secs_f64();
        if s > 0.0 {
            self.completion_tokens as f64 / s
        } else {
            0.0
        }
    }
    /// Prompt tokens read per second.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        let s = self.prompt_time.as_secs_f64();
        if s > 0.0 {
            self.prompt_tokens as f64 / s
        } else {
            0.0
        }
    }
}

/// A small instruction-tuned chat model (SmolLM2-135M-Instruct by default)
/// in GGUF format, running on the CPU with candle's quantized llama.
///
/// * The conversation is rendered with the ChatML template (`<|im_start|>`
///   role, text, `<|im_end|>`), which SmolLM2, Qwen and many small models
///   use; a conversation without a system message gets the model's default
///   one ([`LocalChatConfig::default_system_prompt`]).
/// * Greedy decoding by default, so answers are deterministic; a request's
///   `temperature` above 0 samples, seeded by its `seed` (or the
///   configured one). A repeat penalty keeps small models from looping.
/// * Generation stops at the end-of-turn token (`<|im_end|>`, the GGUF
///   `eos_token_id`, `<|endoftext|>`), at a request's stop sequence (not
///   included in the text), or after `max_tokens` (`FinishReason::Length`).
/// * A prompt that leaves no room to answer in the context window is
///   `Error::ContextLengthExceeded`; otherwise `max_tokens` is capped to the
///   room left.
/// * Generation runs on Tokio's blocking pool; `stream` sends each new piece
///   of text as it is decoded, and dropping the stream stops the generation
///   at the next token.
///
/// ```no_run
/// use rag_core::{ChatRequest, LlmClient, Message};
/// use rag_local::{LocalChat, LocalChatConfig};
///
/// # async fn run() -> rag_core::Result<()> {
/// let file = rag_local::default_models_dir()
///     .join("SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
/// let chat = LocalChat::load(LocalChatConfig::new(file))?;
/// let answer = chat
///     .complete(ChatRequest::new(vec![Message::user("Name a colour.")]).with_max_tokens(16))
///     .await?;
/// println!("{}", answer.text);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalChat {
    inner: Arc<Inner>,
}

struct Inner {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
    context_window: usize,
    model_id: String,
    system_prompt: Option<String>,
    config: LocalChatConfig,
    /// Generations running now (any caller).
    running: AtomicUsize,
}

/// Counts one generation as running until dropped.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn start(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Self(n)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for LocalChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalChat")
            .field("model_id", &self.inner.model_id)
            .field("context_window", &self.inner.context_window)
            .field("stop_ids", &self.inner.stop_ids)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The default system prompt written into a ChatML chat template, if any:
/// the text between `<|im_start|>system` + newline and `<|im_end|>` in a
/// literal of the template.
fn template_system_prompt(template: &str) -> Option<String> {
    let start = "<|im_start|>system";
    let at = template.find(start)? + start.len();
    let rest = &template[at..];
    let rest = rest
        .strip_prefix("\\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let end = rest.find("<|im_end|>")?;
    let prompt = &rest[..end];
    // A template that splices in a variable here has no literal default.
    (!prompt.is_empty() && !prompt.contains("{{") && !prompt.contains('\''))
        .then(|| prompt.replace("\\n", "\n"))
}

/// The ChatML rendering of a conversation, ending with the assistant's
/// turn opened.
pub(crate) fn chatml(messages: &[Message], default_system: Option<&str>) -> String {
    let mut out = String::new();
    if let (Some(system), Some(first)) = (default_system, messages.first())
        && first.role != Role::System
    {
        out.push_str("<|im_start|>system\n");
        out.push_str(system);
        out.push_str("<|im_end|>\n");
    }
    for m in messages {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// The model of `content` with its quantized weights converted to `to`, in
/// memory (float and already-`to` tensors kept as they are).
fn convert(
    content: gguf_file::Content,
    file: &mut std::fs::File,
    to: GgmlDType,
) -> candle_core::Result<(gguf_file::Content, std::io::Cursor<Vec<u8>>)> {
    let dev = Device::Cpu;
    let mut data: Vec<u8> = Vec::new();
    let mut infos = std::collections::HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let q = info.read(file, content.tensor_data_offset, &dev)?;
        let float = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        let fits = q
            .shape()
            .dims()
            .last()
            .is_some_and(|d| d % to.block_size() == 0);
        let keep = float || q.dtype() == to || !fits;
        let q = if keep {
            q
        } else {
            QTensor::quantize(&q.dequantize(&dev)?, to)?
        };
        data.resize(data.len().next_multiple_of(32), 0);
        let offset = data.len() as u64;
        data.extend_from_slice(&q.data()?);
        infos.insert(
            name.clone(),
            gguf_file::TensorInfo {
                ggml_dtype: q.dtype(),
                shape: q.shape().clone(),
                offset,
            },
        );
    }
    let converted = gguf_file::Content {
        magic: content.magic,
        metadata: content.metadata,
        tensor_infos: infos,
        tensor_data_offset: 0,
    };
    Ok((converted, std::io::Cursor::new(data)))
}

impl LocalChat {
    /// Loads the model. Blocking (reads the GGUF file, about 100 MB for
    /// SmolLM2-135M Q4_1).
    ///
    /// # Errors
    /// `NotFound` naming a missing file and `scripts/fetch-models`;
    /// `Corrupt` for a file that cannot be parsed; `Unsupported` for a
    /// tokenizer kind that cannot be built from GGUF metadata.
    pub fn load(config: LocalChatConfig) -> Result<Self> {
        let path = config.model_file.clone();
        require_file(&path, "chat model")?;
        let mut file =
            std::fs::File::open(&path).map_err(|e| corrupt_file(&path, "chat model", e))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| corrupt_file(&path, "chat model (GGUF)", e))?;
        let meta_str = |k: &str| {
            content
                .metadata
                .get(k)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        let meta_u32 = |k: &str| content.metadata.get(k).and_then(|v| v.to_u32().ok());
        let arch = meta_str("general.architecture").unwrap_or_default();
        if arch != "llama" {
            return Err(Error::unsupported(
                "rag-local",
                format!(
                    "chat model {} has architecture {arch:?}; LocalChat runs llama-architecture \
                     GGUF models",
                    path.display()
                ),
            ));
        }
        let gguf_context = meta_u32("llama.context_length").map_or(MAX_SEQ_LEN, |c| c as usize);
        let limit = gguf_context.clamp(1, MAX_SEQ_LEN);
        let context_window = config.context_window.unwrap_or(limit).clamp(1, limit);

        let beside = path.with_file_name("tokenizer.json");
        let tokenizer = match (&config.tokenizer_file, beside.is_file()) {
            (Some(t), _) => crate::tokenize::load_plain(t)?,
            (None, true) => crate::tokenize::load_plain(&beside)?,
            (None, false) => crate::gguf_tokenizer::from_gguf(&content, &path)?,
        };
        let mut stop_ids: Vec<u32> = Vec::new();
        if let Some(eos) = meta_u32("tokenizer.ggml.eos_token_id") {
            stop_ids.push(eos);
        }
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_to_id(t)
                && !stop_ids.contains(&id)
            {
                stop_ids.push(id);
            }
        }
        if tokenizer.token_to_id("<|im_start|>").is_none() {
            tracing::warn!(
                model = %path.display(),
                "the tokenizer has no <|im_start|> token; the ChatML template may not suit this model"
            );
        }
        let system_prompt = config.default_system_prompt.clone().or_else(|| {
            meta_str("tokenizer.chat_template").and_then(|t| template_system_prompt(&t))
        });

        let weights_error = |e| corrupt_file(&path, "chat model weights (GGUF)", e);
        let weights = match config.weights {
            WeightFormat::Stored => ModelWeights::from_gguf(content, &mut file, &Device::Cpu),
            WeightFormat::Q8_0 | WeightFormat::F32 => {
                let to = match config.weights {
                    WeightFormat::F32 => GgmlDType::F32,
                    _ => GgmlDType::Q8_0,
                };
                let (content, mut data) = convert(content, &mut file, to).map_err(weights_error)?;
                ModelWeights::from_gguf(content, &mut data, &Device::Cpu)
            }
        }
        .map_err(weights_error)?;
        let model_id = config.model_id.clone().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_owned())
                .unwrap_or_else(|| "local-chat".to_owned())
        });
        Ok(Self {
            inner: Arc::new(Inner {
                weights,
                tokenizer,
                stop_ids,
                context_window,
                model_id,
                system_prompt,
                config,
                running: AtomicUsize::new(0),
            }),
        })
    }

    /// Generations running now, from every clone of this model: a
    /// generation whose caller went away stops at its next token, so this
    /// falls back to what callers are still waiting for.
    pub fn generations_running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &LocalChatConfig {
        &self.inner.config
    }

    /// Token ids of `text` as the model reads it (special tokens such as
    /// `<|im_start|>` recognised, no BOS added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .tokenizer
            .encode(text, false)
            .map_err(|e| runtime(BACKEND, "tokenization failed", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokens of the prompt `messages` render to (template included).
    pub fn count_prompt_tokens(&self, messages: &[Message]) -> Result<usize> {
        Ok(self.inner.prompt_ids(messages)?.len())
    }

    /// Generates a complete answer and reports the prompt and generation
    /// speed. Dropping the returned future stops the generation at its next
    /// token.
    pub async fn complete_with_stats(
        &self,
        request: ChatRequest,
    ) -> Result<(ChatResponse, GenerationStats)> {
        let job = self.inner.prepare(&request)?;
        let inner = Arc::clone(&self.inner);
        // When this future is dropped (a deadline, a caller gone), the guard
        // raises the flag and the generation stops at its next token instead
        // of running on in the blocking pool.
        let cancel = CancelOnDrop::default();
        let cancelled = Arc::clone(&cancel.0);
        let out = tokio::task::spawn_blocking(move || {
            inner.generate(&job, &mut |_| !cancelled.load(Ordering::Acquire))
        })
        .await
        .map_err(|e| join(BACKEND, &e))??;
        drop(cancel);
        tracing::debug!(
            model = %self.inner.model_id,
            prompt_tokens = out.stats.prompt_tokens,
            completion_tokens = out.stats.completion_tokens,
            tokens_per_second = out.stats.tokens_per_second(),
            "local generation"
        );
        Ok((
            ChatResponse {
                text: out.text,
                usage: out.usage,
                finish_reason: out.finish,
                model: self.inner.model_id.clone(),
                extractive: false,
            },
            out.stats,
        ))
    }
}

struct Job {
    prompt: Vec<u32>,
    max_new: usize,
    temperature: Option<f64>,
    seed: u64,
    stop: Vec<String>,
}

struct Outcome {
    text: String,
    finish: FinishReason,
    usage: Usage,
    stats: GenerationStats,
    cancelled: bool,
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop
/// sequence: text that may still turn into a stop and is held back.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut hold = 0;
    for s in stops {
        for (k, _) in s.char_indices().skip(1) {
            if k > hold && text.ends_with(&s[..k]) {
                hold = k;
            }
        }
    }
    hold
}

impl Inner {
    fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let prompt = chatml(messages, self.system_prompt.as_deref());
        let enc = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| runtime(BACKEND, "tokenization failed", e))?;
        Ok(enc.get_ids().to_vec())
    }

    fn prepare(&self, request: &ChatRequest) -> Result<Job> {
        if request.messages.is_empty() {
            return Err(Error::invalid_input(
                "a chat request needs at least one message",
            ));
        }
        if request.max_tokens == Some(0) {
            return Err(Error::invalid_input("max_tokens must be at least 1"));
        }
        let prompt = self.prompt_ids(&request.messages)?;
        // One position must stay free for the first generated token.
        if prompt.len() >= self.context_window {
            return Err(Error::ContextLengthExceeded {
                tokens: prompt.len(),
                limit: self.context_window,
            });
        }
        let room = self.context_window - prompt.len();
        let wanted = request
            .max_tokens
            .unwrap_or(self.config.default_max_tokens)
            .max(1) as usize;
        Ok(Job {
            prompt,
            max_new: wanted.min(room),
            temperature: request
                .temperature
                .filter(|t| t.is_finite() && *t > 0.0)
                .map(f64::from),
            seed: request.seed.unwrap_or(self.config.seed),
            stop: request
                .stop
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
        })
    }

    /// Runs one generation; `emit` receives each new piece of text and
    /// returns whether to go on.
    fn generate(&self, job: &Job, emit: &mut dyn FnMut(&str) -> bool) -> Result<Outcome> {
        let _running = Running::start(&self.running);
        let fail = |e: candle_core::Error| runtime(BACKEND, "generation failed", e);
        let dev = Device::Cpu;
        let mut model = self.weights.clone();
        let sampling = match job.temperature {
            None => Sampling::ArgMax,
            Some(temperature) => match self.config.top_p {
                Some(p) => Sampling::TopP { p, temperature },
                None => Sampling::All { temperature },
            },
        };
        let mut sampler = LogitsProcessor::from_sampling(job.seed, sampling);

        let started = Instant::now();
        let mut logits = None;
        for (i, piece) in job.prompt.chunks(PROMPT_CHUNK).enumerate() {
            let input = Tensor::new(piece, &dev)
                .and_then(|t| t.unsqueeze(0))
                .map_err(fail)?;
            logits = Some(model.forward(&input, i * PROMPT_CHUNK).map_err(fail)?);
        }
        let mut logits = logits
            .ok_or_else(|| Error::invalid_input("the prompt is empty"))?
            .squeeze(0)
            .map_err(fail)?;
        let prompt_time = started.elapsed();
        let generating = Instant::now();

        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut sent = 0usize;
        let mut finish = FinishReason::Length;
        let mut cancelled = false;
        while generated.len() < job.max_new {
            if self.config.repeat_penalty != 1.0 && !generated.is_empty() {
                let start = generated.len().saturating_sub(self.config.repeat_last_n);
                logits = candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    self.config.repeat_penalty,
                    &generated[start..],
                )
                .map_err(fail)?;
            }
            let next = sampler.sample(&logits).map_err(fail)?;
            if self.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            generated.push(next);
            text = self
                .tokenizer
                .decode(&generated, true)
                .map_err(|e| runtime(BACKEND, "decoding failed", e))?;
            if let Some(at) = job.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(at);
                finish = FinishReason::Stop;
                break;
            }
            // Hold back an incomplete character and a possible stop prefix.
            if !text.ends_with('\u{FFFD}') {
                let until = text.len() - held_back(&text, &job.stop);
                if until > sent && text.is_char_boundary(sent) {
                    if !emit(&text[sent..until]) {
                        cancelled = true;
                        break;
                    }
                    sent = until;
                }
            }
            if generated.len() >= job.max_new {
                break;
            }
            let input = Tensor::new(&[next], &dev)
                .and_then(|t| t.unsqueeze(0))
                .map_err(fail)?;
            logits = model
                .forward(&input, job.prompt.len() + generated.len() - 1)
                .map_err(fail)?
                .squeeze(0)
                .map_err(fail)?;
        }
        if !cancelled && text.len() > sent && text.is_char_boundary(sent) {
            cancelled = !emit(&text[sent..]);
        }
        let stats = GenerationStats {
            prompt_tokens: job.prompt.len(),
            completion_tokens: generated.len(),
            prompt_time,
            generation_time: generating.elapsed(),
        };
        Ok(Outcome {
            text,
            finish,
            usage: Usage {
                prompt_tokens: saturate(job.prompt.len()),
                completion_tokens: saturate(generated.len()),
            },
            stats,
            cancelled,
        })
    }
}

#[async_trait]
impl LlmClient for LocalChat {
    fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    fn context_window(&self) -> usize {
        self.inner.context_window
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        Ok(self.complete_with_stats(request).await?.0)
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let job = self.inner.prepare(&request)?;
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<ChatDelta>>(64);
        tokio::task::spawn_blocking(move || {
            let mut emit = |piece: &str| {
                !tx.is_closed()
                    && tx
                        .blocking_send(Ok(ChatDelta::Text(piece.to_owned())))
                        .is_ok()
            };
            let last = match inner.generate(&job, &mut emit) {
                Ok(out) if out.cancelled => return,
                Ok(out) => {
                    tracing::debug!(
                        model = %inner.model_id,
                        completion_tokens = out.stats.completion_tokens,
                        tokens_per_second = out.stats.tokens_per_second(),
                        "local generation (stream)"
                    );
                    Ok(ChatDelta::Finish {
                        usage: out.usage,
                        finish_reason: out.finish,
                        model: inner.model_id.clone(),
                        extractive: false,
                    })
                }
                Err(e) => Err(e),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_rendering() {
        let msgs = vec![
            Message::user("Hi"),
            Message::assistant("Hello"),
            Message::user("Q"),
        ];
        assert_eq!(
            chatml(&msgs, Some("Be nice")),
            "<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        let msgs = vec![Message::system("S"), Message::user("U")];
        assert_eq!(
            chatml(&msgs, Some("ignored")),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(chatml(&[Message::user("U")], None).starts_with("<|im_start|>user\n"));
    }

    #[test]
    fn system_prompt_from_the_template() {
        let smollm = "{% for message in messages %}{% if loop.first and messages[0]['role'] != \
            'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, \
            trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + \
            message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(
            template_system_prompt(smollm).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(
            template_system_prompt(&smollm.replace("\\n", "\n")).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        assert_eq!(template_system_prompt("{{ messages }}"), None);
        assert_eq!(
            template_system_prompt("'<|im_start|>system\\n' + message['content'] + '<|im_end|>'"),
            None
        );
    }

    #[test]
    fn stop_prefixes_are_held_back() {
        let stops = vec!["END".to_owned(), "\n\n".to_owned()];
        assert_eq!(held_back("abc", &stops), 0);
        assert_eq!(held_back("abcE", &stops), 1);
        assert_eq!(held_back("abcEN", &stops), 2);
        assert_eq!(held_back("abc\n", &stops), 1);
        assert_eq!(held_back("", &stops), 0);
    }

    #[test]
    fn missing_and_corrupt_gguf_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.gguf");
        let err = LocalChat::load(LocalChatConfig::new(&path)).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("model.gguf"));
        assert!(err.to_string().contains("scripts/fetch-models"));
        std::fs::write(&path, b"GGUF but not really a model file").unwrap();
        let err = LocalChat::load(LocalChatConfig::new(&path)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("model.gguf"));
        assert!(err.to_string().contains("scripts/fetch-models"));
    }
}

/// Raises its flag when dropped: a generation polling the flag stops.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

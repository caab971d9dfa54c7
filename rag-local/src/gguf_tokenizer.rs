//! A `tokenizers` tokenizer built from a GGUF file's own metadata, for
//! models shipped without a `tokenizer.json` beside them.
//!
//! Supported: byte-level BPE vocabularies (`tokenizer.ggml.model` =
//! `gpt2`), the kind of SmolLM2, StarCoder, Qwen and Llama 3. Control tokens
//! (`token_type` 3, such as `<|im_start|>`) become special added tokens, so
//! a chat template written as text encodes them as single tokens. The
//! pre-tokenizer follows `tokenizer.ggml.pre`: SmolLM and StarCoder split
//! digits one by one before the GPT-2 byte-level split; others get the
//! GPT-2 split alone.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use rag_core::{Error, Result};
use serde_json::json;
use tokenizers::Tokenizer;

use crate::error::corrupt_file;

const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

fn strings<'a>(ct: &'a Content, key: &str, path: &Path) -> Result<Vec<&'a str>> {
    let values = ct
        .metadata
        .get(key)
        .ok_or_else(|| corrupt_file(path, "GGUF model", format!("no {key} in its metadata")))?
        .to_vec()
        .map_err(|e| corrupt_file(path, "GGUF model", format!("{key}: {e}")))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .map(String::as_str)
                .map_err(|e| corrupt_file(path, "GGUF model", format!("{key}: {e}")))
        })
        .collect()
}

fn token_types(ct: &Content) -> Vec<i32> {
    let Some(Ok(values)) = ct
        .metadata
        .get("tokenizer.ggml.token_type")
        .map(Value::to_vec)
    else {
        return Vec::new();
    };
    values
        .iter()
        .map(|v| {
            v.to_i32()
                .or_else(|_| v.to_u32().map(|x| x as i32))
                .unwrap_or(1)
        })
        .collect()
}

/// The tokenizer described by the GGUF metadata of `ct` (read from `path`,
/// named in errors).
pub(crate) fn from_gguf(ct: &Content, path: &Path) -> Result<Tokenizer> {
    let model = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(Error::unsupported(
            "rag-local",
            format!(
                "building a tokenizer from GGUF metadata of kind {model:?} ({}): only byte-level \
                 BPE (\"gpt2\") is supported; put the model's tokenizer.json beside it",
                path.display()
            ),
        ));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens", path)?;
    let merges = strings(ct, "tokenizer.ggml.merges", path)?;
    let types = token_types(ct);
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("default");

    let vocab: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let added: Vec<_> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let kind = types.get(i).copied().unwrap_or(1);
            (kind == CONTROL || kind == USER_DEFINED).then(|| {
                json!({
                    "id": i, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": kind == CONTROL,
                })
            })
        })
        .collect();
    let byte_level = json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true
    });
    let pre_tokenizer = match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
        }),
        _ => byte_level.clone(),
    };
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let text = serde_json::to_string(&spec)
        .map_err(|e| corrupt_file(path, "GGUF tokenizer metadata", e))?;
    text.parse::<Tokenizer>()
        .map_err(|e| corrupt_file(path, "GGUF tokenizer metadata", e))
}

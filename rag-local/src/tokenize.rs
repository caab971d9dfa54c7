//! Loading a `tokenizer.json` with the padding and truncation the encoders
//! need, whatever the file itself says (the shipped files pad to a fixed 512
//! or 128, or set no truncation at all).

use std::path::Path;

use rag_core::Result;
use tokenizers::{
    EncodeInput, Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{corrupt_file, require_file, runtime};

/// A tokenizer that truncates to `max_length` tokens (special tokens
/// included; longest sequence of a pair first) and does not pad: batches
/// are padded by hand to their own longest sequence.
pub(crate) fn load(path: &Path, max_length: usize) -> Result<(Tokenizer, u32)> {
    require_file(path, "tokenizer")?;
    let mut tok = Tokenizer::from_file(path).map_err(|e| corrupt_file(path, "tokenizer", e))?;
    let pad_id = tok
        .get_padding()
        .map(|p| p.pad_id)
        .or_else(|| tok.token_to_id("[PAD]"))
        .or_else(|| tok.token_to_id("<pad>"))
        .unwrap_or(0);
    tok.with_padding(None);
    tok.with_truncation(Some(TruncationParams {
        max_length,
        strategy: TruncationStrategy::LongestFirst,
        stride: 0,
        direction: TruncationDirection::Right,
    }))
    .map_err(|e| corrupt_file(path, "tokenizer", e))?;
    Ok((tok, pad_id))
}

/// A tokenizer as its file describes it, less any padding or truncation
/// (for a chat model's prompt, which is checked against the context window
/// instead).
#[cfg(feature = "candle")]
pub(crate) fn load_plain(path: &Path) -> Result<Tokenizer> {
    require_file(path, "tokenizer")?;
    let mut tok = Tokenizer::from_file(path).map_err(|e| corrupt_file(path, "tokenizer", e))?;
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| corrupt_file(path, "tokenizer", e))?;
    Ok(tok)
}

/// Encodes a batch with special tokens.
pub(crate) fn encode<'s>(
    tok: &Tokenizer,
    backend: &str,
    inputs: Vec<impl Into<EncodeInput<'s>> + Send>,
) -> Result<Vec<Encoding>> {
    tok.encode_batch(inputs, true)
        .map_err(|e| runtime(backend, "tokenization failed", e))
}

/// Rows of ids, attention mask and token type ids, padded to the longest of
/// `encodings`, flattened row-major: `(ids, mask, type_ids, seq_len)`.
pub(crate) fn pad_batch(
    encodings: &[&Encoding],
    pad_id: u32,
) -> (Vec<u32>, Vec<u32>, Vec<u32>, usize) {
    let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
    let n = encodings.len() * len;
    let (mut ids, mut mask, mut types) = (vec![pad_id; n], vec![0u32; n], vec![0u32; n]);
    for (row, e) in encodings.iter().enumerate() {
        let at = row * len;
        let l = e.len();
        ids[at..at + l].copy_from_slice(e.get_ids());
        mask[at..at + l].copy_from_slice(e.get_attention_mask());
        types[at..at + l].copy_from_slice(e.get_type_ids());
    }
    (ids, mask, types, len)
}

/// Indices of `lens` ordered longest first, so that a batch pads little.
pub(crate) fn longest_first(lens: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut order: Vec<(usize, usize)> = lens.enumerate().collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    order.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_tokenizer_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let err = load(&path, 16).unwrap_err();
        assert!(matches!(err, rag_core::Error::NotFound { .. }), "{err:?}");
        std::fs::write(&path, b"{ not json").unwrap();
        let err = load(&path, 16).unwrap_err();
        assert!(matches!(err, rag_core::Error::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );
    }

    #[test]
    fn order_is_longest_first_and_stable() {
        assert_eq!(
            longest_first([3usize, 5, 3, 9].into_iter()),
            vec![3, 1, 0, 2]
        );
    }
}

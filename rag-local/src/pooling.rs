//! [`Pooling`], and what a sentence-transformers model directory declares
//! about it (`modules.json`, `1_Pooling/config.json`); shared by the candle
//! and the ONNX Runtime embedders.

use std::path::Path;

use rag_core::Result;
use serde::{Deserialize, Serialize};

use crate::error::corrupt_file;

/// How token vectors become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Pooling {
    /// The mean of the token vectors under the attention mask
    /// (all-MiniLM, e5).
    Mean,
    /// The vector of the first (`[CLS]`) token (bge).
    Cls,
    /// The element-wise maximum over the tokens under the attention mask.
    Max,
}

/// The parts of `1_Pooling/config.json` read.
#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

/// One entry of `modules.json`.
#[derive(Deserialize)]
pub(crate) struct Module {
    #[serde(default)]
    pub(crate) path: String,
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
}

/// A JSON file of the model directory; `None` when it does not exist,
/// `Corrupt` when it cannot be read or parsed.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    what: &str,
) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt_file(path, what, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(corrupt_file(path, what, e)),
    }
}

/// The directory's `modules.json`, when it has one.
pub(crate) fn read_modules(dir: &Path) -> Result<Option<Vec<Module>>> {
    read_json(&dir.join("modules.json"), "modules.json")
}

/// The pooling the directory declares: the `Pooling` module's
/// `config.json` named in `modules`, else `1_Pooling/config.json`; `None`
/// when there is no such file or it names no mode.
pub(crate) fn declared_pooling(dir: &Path, modules: Option<&[Module]>) -> Result<Option<Pooling>> {
    let path = modules
        .and_then(|m| m.iter().find(|m| m.kind.ends_with("Pooling")))
        .map(|m| dir.join(&m.path).join("config.json"))
        .unwrap_or_else(|| dir.join("1_Pooling").join("config.json"));
    Ok(
        read_json::<PoolingFile>(&path, "pooling configuration")?.and_then(|p| {
            if p.pooling_mode_cls_token {
                Some(Pooling::Cls)
            } else if p.pooling_mode_mean_tokens {
                Some(Pooling::Mean)
            } else if p.pooling_mode_max_tokens {
                Some(Pooling::Max)
            } else {
                None
            }
        }),
    )
}

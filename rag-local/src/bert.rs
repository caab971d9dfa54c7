//! A BERT encoder for inference on the CPU: the same computation as
//! candle-transformers' `BertModel` (and Hugging Face's), arranged to do less
//! work per layer:
//!
//! * query, key and value in one matrix product (weights concatenated at
//!   load), the query's `1/sqrt(head size)` folded into its weights;
//! * the attention softmax as candle-nn's fused last-dimension kernel
//!   instead of five separate passes (max, subtract, exp, sum, divide).
//!
//! Its vectors match sentence-transformers as the tests check (cosine ≥
//! 0.999 on the fixture).

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
use candle_transformers::models::bert::{Config, HiddenAct};

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// The encoder; `forward` returns the last hidden states.
pub(crate) struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    act: HiddenAct,
}

fn fused_qkv(vb: &VarBuilder<'_>, hidden: usize, head_size: usize) -> Result<Linear> {
    let scale = 1.0 / (head_size as f64).sqrt();
    let part = |name: &str| -> Result<(Tensor, Tensor)> {
        let vb = vb.pp(name);
        Ok((vb.get((hidden, hidden), "weight")?, vb.get(hidden, "bias")?))
    };
    let (wq, bq) = part("query")?;
    let (wk, bk) = part("key")?;
    let (wv, bv) = part("value")?;
    let w = Tensor::cat(&[(wq * scale)?, wk, wv], 0)?;
    let b = Tensor::cat(&[(bq * scale)?, bk, bv], 0)?;
    Ok(Linear::new(w, Some(b)))
}

impl Bert {
    pub(crate) fn load(vb: VarBuilder<'_>, config: &Config) -> Result<Self> {
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let h = config.hidden_size;
        let heads = config.num_attention_heads.max(1);
        let head_size = h / heads;
        let e = vb.pp("embeddings");
        let eps = config.layer_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            layers.push(Layer {
                qkv: fused_qkv(&l.pp("attention.self"), h, head_size)?,
                attn_out: linear(h, h, l.pp("attention.output.dense"))?,
                attn_norm: layer_norm(h, eps, l.pp("attention.output.LayerNorm"))?,
                intermediate: linear(h, config.intermediate_size, l.pp("intermediate.dense"))?,
                out: linear(config.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(
                config.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            emb_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            heads,
            head_size,
            act: config.hidden_act,
        })
    }

    /// Hidden states `(batch, len, hidden)` of `ids` `(batch, len)` (u32),
    /// with `mask` `(batch, len)` (u32, 1 = token, 0 = padding).
    pub(crate) fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        let x = self
            .word
            .forward(ids)?
            .add(&self.token_type.forward(types)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive mask (batch, 1, 1, len): 0 for tokens, f32::MIN for padding.
        let mask =
            ((mask.to_dtype(DType::F32)? - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, len))?;
        let h = self.heads * self.head_size;
        for l in &self.layers {
            let qkv = l
                .qkv
                .forward(&x)?
                .reshape((b, len, 3, self.heads, self.head_size))?
                .permute((2, 0, 3, 1, 4))?; // (3, b, heads, len, head)
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, len, h))?;
            let x1 = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let inner = l.intermediate.forward(&x1)?;
            let inner = match self.act {
                HiddenAct::Gelu => inner.gelu_erf()?,
                HiddenAct::GeluApproximate => inner.gelu()?,
                HiddenAct::Relu => inner.relu()?,
            };
            x = l.out_norm.forward(&(l.out.forward(&inner)? + &x1)?)?;
        }
        debug_assert_eq!(x.dim(D::Minus1)?, h);
        Ok(x)
    }
}

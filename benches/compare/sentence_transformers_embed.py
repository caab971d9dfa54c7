#!/usr/bin/env python3
"""The Python side of `cargo bench -p rag-benches --features local --bench local`, for side-by-side numbers.

Measures, on the same inputs (benches/compare/local_inputs.json) and the same number of threads:
* sentence-transformers (PyTorch, CPU) embedding throughput of all-MiniLM-L6-v2, batch 32, ~20-token and
  ~200-token texts, in sentences/s;
* onnxruntime (Python) latency of scoring 20 query-passage pairs with the int8 ms-marco-MiniLM-L-12-v2
  cross-encoder, truncated to 512, 256 and 192 tokens, in one batch (512 only) and in batches of 8.

    pip install sentence-transformers onnxruntime==1.31.1
    python3 benches/compare/sentence_transformers_embed.py [--threads N] [--make-inputs]

--make-inputs rewrites local_inputs.json (deterministic; the committed file is what both sides read).
Threads default to the machine's cores, which is what candle and ONNX Runtime use in the Rust bench.
"""

import argparse
import json
import os
import pathlib
import random
import statistics
import time

HERE = pathlib.Path(__file__).resolve().parent
INPUTS = HERE / "local_inputs.json"

WORDS = (
    "the service rotates keys every month while the platform team reviews access logs and alerts on-call "
    "engineers when a deployment fails because a database migration timed out during the nightly backup window "
    "so customers saw errors for twenty minutes until the rollback finished and latency returned to normal "
    "levels after caches warmed up again across all regions including europe and asia where traffic peaks "
    "around noon local time which is why capacity planning matters for storage compute and network budgets"
).split()


def models_dir() -> pathlib.Path:
    if os.environ.get("RAG_MODELS_DIR"):
        return pathlib.Path(os.environ["RAG_MODELS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if cache.startswith("/"):
        return pathlib.Path(cache) / "rag" / "models"
    return pathlib.Path.home() / ".cache" / "rag" / "models"


def text(rng: random.Random, words: int) -> str:
    out = []
    while len(out) < words:
        n = rng.randint(8, 18)
        s = [rng.choice(WORDS) for _ in range(n)]
        s[0] = s[0].capitalize()
        out.extend(s[:-1] + [s[-1] + "."])
    return " ".join(out[:words])


def make_inputs() -> None:
    rng = random.Random(20240611)
    data = {
        "short": [text(rng, 16) for _ in range(32)],
        "long": [text(rng, 170) for _ in range(32)],
        "query": "why did customers see errors after the deployment?",
        "passages": [text(rng, rng.randint(120, 420)) for _ in range(20)],
    }
    INPUTS.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {INPUTS}")


def timed(fn, warmup=2, runs=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--make-inputs", action="store_true")
    args = ap.parse_args()
    if args.make_inputs:
        make_inputs()
        return
    data = json.loads(INPUTS.read_text())
    models = models_dir()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    st = SentenceTransformer(str(models / "all-MiniLM-L6-v2"), device="cpu")
    tok = st.tokenizer
    print(f"threads: {args.threads}; torch {torch.__version__}")
    for name in ("short", "long"):
        texts = data[name]
        lens = [len(tok(t)["input_ids"]) for t in texts]
        secs = timed(lambda: st.encode(texts, batch_size=32, convert_to_numpy=True))
        print(
            f"sentence-transformers embed batch 32, {name} (mean {statistics.mean(lens):.0f} tokens): "
            f"{secs * 1000:.1f} ms/batch = {32 / secs:.1f} sentences/s"
        )

    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    d = models / "ms-marco-MiniLM-L-12-v2"
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
    pairs = [(data["query"], p) for p in data["passages"]]
    for max_length in (512, 256, 192):
        t = Tokenizer.from_file(str(d / "tokenizer.json"))
        t.no_padding()
        t.enable_truncation(max_length=max_length, strategy="longest_first")
        t.enable_padding(pad_id=0, pad_token="[PAD]")
        for batch in ((20, 8) if max_length == 512 else (8,)):

            def run():
                for i in range(0, len(pairs), batch):
                    enc = t.encode_batch(pairs[i : i + batch])
                    sess.run(
                        None,
                        {
                            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
                        },
                    )

            secs = timed(run, warmup=1, runs=5)
            print(
                f"onnxruntime (Python) rerank 20 candidates, max_length {max_length}, batch {batch}: "
                f"{secs * 1000:.0f} ms ({20 / secs:.1f} pairs/s)"
            )


if __name__ == "__main__":
    main()

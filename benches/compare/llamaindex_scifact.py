#!/usr/bin/env python3
"""The scifact bench's work in LlamaIndex, and the ratios against ours.

Same corpus (the SciFact subset, 2,101 abstracts), same chunking (256 cl100k
tokens, overlap 32: LlamaIndex's SentenceSplitter counts with tiktoken's
cl100k_base by default), same top_k (5), model-free on both sides:
LlamaIndex's MockEmbedding(384) and MockLLM against our HashEmbedder(384) and
an instantly answering ScriptedLlm (our embedder still hashes every token;
MockEmbedding returns a constant vector). LlamaIndex's in-memory
SimpleVectorStore against our in-memory store, dense retrieval on both.

    python3 -m venv /tmp/pyeval && /tmp/pyeval/bin/pip install llama-index-core==0.14.25
    cargo bench -p rag-benches --bench scifact -- --warm-up-time 1 --measurement-time 5
    /tmp/pyeval/bin/python benches/compare/llamaindex_scifact.py

It reads our figures from criterion's estimates under the target directory
(CARGO_TARGET_DIR, else ./target), so run the bench first, in the same
session on the same machine. Prints documents/s for ingestion, ms per query,
and the ratios.
"""
import json
import os
import statistics
import sys
import time

DATASET = os.environ.get(
    "RAG_EVAL_DATASET",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/eval/scifact-subset"),
)


def load():
    corpus = [json.loads(l) for l in open(os.path.join(DATASET, "corpus.jsonl")) if l.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(os.path.join(DATASET, "queries.jsonl")))}
    test = {l.split()[0] for i, l in enumerate(open(os.path.join(DATASET, "qrels/test.tsv"))) if l.strip() and not l.startswith("query-id")}
    return corpus, [queries[q] for q in queries if q in test]


def llamaindex(corpus, queries):
    from llama_index.core import Document, Settings, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.node_parser import SentenceSplitter

    Settings.embed_model = MockEmbedding(embed_dim=384)
    Settings.llm = MockLLM(max_tokens=8)
    Settings.node_parser = SentenceSplitter(chunk_size=256, chunk_overlap=32)
    docs = [Document(text=d["text"], doc_id=d["_id"]) for d in corpus]
    ingest = []
    for _ in range(3):
        t = time.perf_counter()
        index = VectorStoreIndex.from_documents(docs)
        ingest.append(time.perf_counter() - t)
    engine = index.as_query_engine(similarity_top_k=5)
    for q in queries[:10]:
        engine.query(q)  # warm-up
    per_query = []
    for q in queries:
        t = time.perf_counter()
        engine.query(q)
        per_query.append(time.perf_counter() - t)
    return len(docs) / statistics.median(ingest), statistics.median(per_query)


def ours():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target"))
    base = os.path.join(target, "criterion")

    def est(group, name):
        path = os.path.join(base, group, name, "new", "estimates.json")
        if not os.path.exists(path):
            sys.exit(f"no criterion estimate at {path}: run `cargo bench -p rag-benches --bench scifact` first")
        return json.load(open(path))["median"]["point_estimate"] / 1e9  # seconds

    return est("scifact_ingest", "memory"), est("scifact_ask", "memory_dense"), est("scifact_ask", "memory_hybrid")


def main():
    corpus, queries = load()
    import llama_index.core
    import nltk  # LlamaIndex's SentenceSplitter splits sentences with nltk's punkt: its version moves the figure

    li_docs_s, li_query_s = llamaindex(corpus, queries)
    ingest_s, dense_s, hybrid_s = ours()
    rag_docs_s = len(corpus) / ingest_s
    print(f"corpus: {len(corpus)} documents; {len(queries)} queries (test split); chunks of 256 tokens, overlap 32; top_k 5")
    print(f"LlamaIndex {llama_index.core.__version__} (nltk {nltk.__version__}): ingest {li_docs_s:,.0f} documents/s; query {li_query_s * 1e3:.2f} ms (median)")
    print(f"rag (in-memory store): ingest {rag_docs_s:,.0f} documents/s; query {dense_s * 1e3:.3f} ms dense, {hybrid_s * 1e3:.3f} ms hybrid (median)")
    print(f"ratio: ingestion {rag_docs_s / li_docs_s:.1f}x LlamaIndex's throughput; "
          f"query overhead 1/{li_query_s / dense_s:.0f} of LlamaIndex's (dense), 1/{li_query_s / hybrid_s:.0f} (hybrid)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference retrieval runs on a BEIR-format dataset, scored with pytrec_eval
(the trec_eval that BEIR uses), for the side-by-side table of docs/evaluation.md:

  bm25s (English stemming + stop words, k1 1.5, b 0.75, its defaults)
  rank_bm25 BM25Okapi (lower-cased word tokens, Snowball stems, its defaults)

    python3 -m venv /tmp/pyeval
    /tmp/pyeval/bin/pip install pytrec_eval-terrier==0.5.11 bm25s==0.3.16 PyStemmer rank_bm25==0.2.2
    /tmp/pyeval/bin/python benches/eval/reference.py ../shared/eval/scifact-subset train
    /tmp/pyeval/bin/python benches/eval/reference.py ../shared/eval/scifact-subset test

Prints one line per system: nDCG@10, Recall@10, Recall@100, MRR@10, MAP. With
--run DIR it also writes each system's TREC run file there.
"""
import json
import os
import sys

import pytrec_eval


def load(dirname, split):
    corpus = [json.loads(l) for l in open(os.path.join(dirname, "corpus.jsonl")) if l.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(os.path.join(dirname, "queries.jsonl"))) if q}
    qrels = {}
    for i, line in enumerate(open(os.path.join(dirname, "qrels", f"{split}.tsv"))):
        f = line.split()
        if not f or (i == 0 and f[0] == "query-id"):
            continue
        qrels.setdefault(f[0], {})[f[1]] = int(f[-1])
    return corpus, {q: queries[q] for q in qrels}, qrels


def score(run, qrels):
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_10", "recall_100", "map"})
    full = ev.evaluate(run)
    top10 = {q: dict(sorted(r.items(), key=lambda x: -x[1])[:10]) for q, r in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(qrels)
    mean = lambda k, src=full: sum(src.get(q, {}).get(k, 0.0) for q in qrels) / n
    return {
        "ndcg_at_10": mean("ndcg_cut_10"),
        "recall_at_10": mean("recall_10"),
        "recall_at_100": mean("recall_100"),
        "mrr_at_10": mean("recip_rank", mrr),
        "map": mean("map"),
    }


def text_of(d):
    return (d.get("title", "") + " " + d["text"]).strip()


def run_bm25s(corpus, queries):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = [d["_id"] for d in corpus]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([text_of(d) for d in corpus], stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(tokens, k=100, show_progress=False)
    return {q: {ids[d]: float(s) for d, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}


def run_rank_bm25(corpus, queries, stemmed=True):
    import re

    import Stemmer
    from rank_bm25 import BM25Okapi

    stem = Stemmer.Stemmer("english").stemWord if stemmed else (lambda w: w)
    # Lower-cased word tokens (2+ characters), Snowball-stemmed or not, no stop-word list.
    tok = lambda t: [stem(w) for w in re.findall(r"(?u)\b\w\w+\b", t.lower())]
    ids = [d["_id"] for d in corpus]
    bm = BM25Okapi([tok(text_of(d)) for d in corpus])
    run = {}
    for q, text in queries.items():
        s = bm.get_scores(tok(text))
        top = sorted(range(len(ids)), key=lambda i: -s[i])[:100]
        run[q] = {ids[i]: float(s[i]) for i in top}
    return run


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    run_dir = None
    if "--run" in sys.argv:
        run_dir = sys.argv[sys.argv.index("--run") + 1]
        args.remove(run_dir)
    dirname, split = args[0], (args[1] if len(args) > 1 else "test")
    corpus, queries, qrels = load(dirname, split)
    print(f"{dirname} {split}: {len(queries)} queries, {len(corpus)} documents")
    for name, fn in [("bm25s (stemmed, stop words)", run_bm25s), ("rank_bm25 BM25Okapi (stemmed)", run_rank_bm25),
                     ("rank_bm25 BM25Okapi (unstemmed)", lambda c, q: run_rank_bm25(c, q, stemmed=False))]:
        run = fn(corpus, queries)
        m = score(run, qrels)
        print(f"{name:32} nDCG@10 {m['ndcg_at_10']:.4f}  R@10 {m['recall_at_10']:.4f}  "
              f"R@100 {m['recall_at_100']:.4f}  MRR@10 {m['mrr_at_10']:.4f}  MAP {m['map']:.4f}")
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            with open(os.path.join(run_dir, name.split()[0] + ".trec"), "w") as f:
                for q, r in run.items():
                    for rank, (d, s) in enumerate(sorted(r.items(), key=lambda x: -x[1])):
                        f.write(f"{q} Q0 {d} {rank + 1} {s} {name.split()[0]}\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Check the repo-docs evaluation set against the documentation it points at.

Stdlib only. Run from anywhere: python3 benches/eval/repo-docs/check.py
Exits 0 when every check passes, 1 otherwise (each failure is printed).
"""

import json
import re
import string
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIN_QUERIES, MAX_QUERIES = 30, 50


def find_repo_root(start: Path) -> Path:
    """The nearest directory above `start` whose Cargo.toml declares [workspace].

    Member crates (such as benches/) have their own Cargo.toml, so the first
    Cargo.toml found is not enough; fall back to the outermost one.
    """
    outermost = None
    for d in [start, *start.parents]:
        manifest = d / "Cargo.toml"
        if manifest.is_file():
            outermost = d
            text = manifest.read_text(encoding="utf-8", errors="replace")
            if re.search(r"^\s*\[workspace\]\s*$", text, re.MULTILINE):
                return d
    if outermost is None:
        sys.exit(f"check.py: no Cargo.toml above {start}")
    return outermost


def normalize(text: str) -> str:
    """SQuAD normalisation: lower case, ASCII punctuation removed, a/an/the removed, whitespace collapsed."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_tokens(haystack_norm: str, needle: str) -> bool:
    """Whether normalize(needle) occurs in haystack_norm as a run of whole tokens."""
    n = normalize(needle)
    return bool(n) and f" {n} " in f" {haystack_norm} "


def main() -> int:
    root = find_repo_root(HERE)
    failures: list[str] = []
    fail = failures.append

    # --- queries.jsonl -------------------------------------------------------
    queries = []
    qpath = HERE / "queries.jsonl"
    for lineno, line in enumerate(qpath.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            fail(f"queries.jsonl:{lineno}: empty line")
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"queries.jsonl:{lineno}: not JSON: {e}")
            continue
        if not isinstance(q, dict):
            fail(f"queries.jsonl:{lineno}: not an object")
            continue
        q["_line"] = lineno
        queries.append(q)

    if not MIN_QUERIES <= len(queries) <= MAX_QUERIES:
        fail(f"queries.jsonl: {len(queries)} queries, expected {MIN_QUERIES}-{MAX_QUERIES}")

    ids = Counter(q.get("_id") for q in queries)
    for qid, n in ids.items():
        if n > 1:
            fail(f"queries.jsonl: id {qid!r} appears {n} times")

    file_cache: dict[str, str] = {}
    per_file: Counter = Counter()
    all_needles: list[tuple[str, str]] = []  # (id, string) for the README leak check
    for q in queries:
        where = f"queries.jsonl:{q['_line']} ({q.get('_id')})"
        qid, text, answers, facts, rel = (q.get(k) for k in ("_id", "text", "answers", "facts", "file"))
        if not isinstance(qid, str) or not qid:
            fail(f"{where}: missing _id")
        if not isinstance(text, str) or not text.strip():
            fail(f"{where}: missing text")
            text = ""
        if not (isinstance(answers, list) and 1 <= len(answers) <= 3 and all(isinstance(a, str) and a for a in answers)):
            fail(f"{where}: answers must be 1-3 non-empty strings")
            answers = [a for a in answers or [] if isinstance(a, str) and a] if isinstance(answers, list) else []
        if not (isinstance(facts, list) and 1 <= len(facts) <= 2 and all(isinstance(f, str) and f for f in facts)):
            fail(f"{where}: facts must be 1-2 non-empty strings")
            facts = [f for f in facts or [] if isinstance(f, str) and f] if isinstance(facts, list) else []
        if not isinstance(rel, str) or not rel:
            fail(f"{where}: missing file")
            continue
        path = (root / rel).resolve()
        if root not in path.parents or not path.is_file():
            fail(f"{where}: file {rel!r} does not exist under {root}")
            continue
        per_file[rel] += 1
        if rel not in file_cache:
            file_cache[rel] = path.read_text(encoding="utf-8")
        doc = file_cache[rel]
        doc_lower, doc_norm = doc.lower(), normalize(doc)
        text_norm = normalize(text)

        for a in answers:
            all_needles.append((qid, a))
            if a not in doc:
                fail(f"{where}: answer {a!r} does not occur verbatim in {rel}")
        for fact in facts:
            alts = [alt.strip() for alt in fact.split("|") if alt.strip()]
            all_needles.extend((qid, alt) for alt in alts)
            # One alternative must occur verbatim (case-insensitively), and one (possibly another:
            # `A`/`B` in Markdown normalises to a single token "ab") as whole tokens after
            # normalisation, so an answer quoting the file can match the fact.
            if not any(alt.lower() in doc_lower for alt in alts):
                fail(f"{where}: no alternative of fact {fact!r} occurs verbatim in {rel}")
            if not any(contains_tokens(doc_norm, alt) for alt in alts):
                fail(f"{where}: no alternative of fact {fact!r} occurs as whole tokens in normalised {rel}")
            for alt in alts:
                if contains_tokens(text_norm, alt):
                    fail(f"{where}: the question itself contains the fact {alt!r}")
        # answers are alternatives: at least one gold answer must carry every fact
        if answers and facts:
            carries = [a for a in answers
                       if all(any(contains_tokens(normalize(a), alt) for alt in f.split("|")) for f in facts)]
            if not carries:
                fail(f"{where}: no gold answer contains every fact (after normalisation)")

    # --- qrels/test.tsv -------------------------------------------------------
    qrels_path = HERE / "qrels" / "test.tsv"
    lines = qrels_path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != ["query-id", "corpus-id", "score"]:
        fail("qrels/test.tsv: header must be 'query-id<TAB>corpus-id<TAB>score'")
    qrels = {}
    for lineno, line in enumerate(lines[1:], 2):
        parts = line.split("\t")
        if len(parts) != 3:
            fail(f"qrels/test.tsv:{lineno}: expected 3 tab-separated fields")
            continue
        qid, doc, score = parts
        if qid in qrels:
            fail(f"qrels/test.tsv:{lineno}: {qid} judged twice")
        qrels[qid] = (doc, score)
    by_id = {q.get("_id"): q for q in queries}
    for qid, (doc, score) in qrels.items():
        if qid not in by_id:
            fail(f"qrels/test.tsv: {qid} is not a query")
        elif doc != by_id[qid].get("file"):
            fail(f"qrels/test.tsv: {qid} judges {doc!r}, the query names {by_id[qid].get('file')!r}")
        if score != "1":
            fail(f"qrels/test.tsv: {qid} score {score!r}, expected 1")
    for qid in by_id:
        if qid not in qrels:
            fail(f"qrels/test.tsv: query {qid} has no judgement")

    # --- README.md of the set must not leak answers (it is ingested) ----------
    readme = HERE / "README.md"
    if not readme.is_file():
        fail("README.md of the set is missing")
    else:
        readme_norm = normalize(readme.read_text(encoding="utf-8"))
        for qid, needle in all_needles:
            if contains_tokens(readme_norm, needle):
                fail(f"README.md contains {needle!r}, an answer or fact of {qid}")

    # --- summary --------------------------------------------------------------
    print(f"repo root: {root}")
    print(f"{len(queries)} queries, {len(qrels)} qrels, {len(per_file)} files")
    for rel, n in sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:3d}  {rel}")
    if failures:
        print(f"\nFAILED: {len(failures)} problem(s)")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("OK: every answer and fact occurs in its file; qrels match queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())

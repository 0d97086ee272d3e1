#!/usr/bin/env python3
"""Builds chat JSONL datasets from WordNet 3.0 (Debian's wordnet-base, /usr/share/wordnet).

Pure standard library; deterministic for a given --seed (and WordNet files).

Synsets are shuffled with the seed and split into three disjoint pools:
  heldout   (first --heldout synsets)  -> <task>-heldout.jsonl
  finetune  (next --train synsets)     -> <task>-train.jsonl
  pretrain  (all the rest)             -> the pretraining corpus (--corpus), never committed
so a base model pretrained on the corpus has not seen the fine-tuning or held-out records.

Tasks:
  define   "Define the word X."              -> definition (gloss without usage examples)
  word     "Give a word that means: GLOSS"   -> the synset's first lemma
  example  "Use the word X in a sentence."   -> a quoted usage example (corpus only)

Usage:
  wordnet.py --out testdata/wordnet                 # committed fine-tune / held-out sets
  wordnet.py --corpus .tools/train/corpus.jsonl     # pretraining corpus (all tasks)
  wordnet.py --text .tools/train/tokenizer.txt      # plain text for tokenizer training
"""
import argparse
import json
import os
import random
import re
import sys

POS_FILES = [("noun", "data.noun"), ("verb", "data.verb"), ("adj", "data.adj"), ("adv", "data.adv")]
MARKER = re.compile(r"\((a|p|ip)\)$")


def parse_gloss(gloss):
    """Splits a WordNet gloss into (definition, [examples])."""
    examples = re.findall(r'"([^"]+)"', gloss)
    parts = []
    for seg in gloss.split(";"):
        seg = seg.strip()
        if not seg:
            continue
        if seg.startswith('"'):
            break  # examples follow the definition
        parts.append(seg)
    definition = "; ".join(parts).strip()
    examples = [e.strip() for e in examples if len(e.strip()) >= 8]
    return definition, examples


def read_synsets(wndir):
    out = []
    for pos, fname in POS_FILES:
        with open(os.path.join(wndir, fname), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue  # license header
                head, _, gloss = line.partition("|")
                fields = head.split()
                offset = fields[0]
                wcnt = int(fields[3], 16)
                lemmas = []
                for i in range(wcnt):
                    w = MARKER.sub("", fields[4 + 2 * i]).replace("_", " ")
                    if w not in lemmas:
                        lemmas.append(w)
                definition, examples = parse_gloss(gloss.strip())
                if not definition or not lemmas:
                    continue
                text = definition + " ".join(examples) + " ".join(lemmas)
                if not text.isascii():
                    continue
                if len(definition) < 10 or len(definition) > 200 or len(lemmas[0]) > 40:
                    continue
                examples = [e for e in examples if len(e) <= 200]
                out.append({"id": f"{pos}:{offset}", "pos": pos, "lemmas": lemmas,
                            "definition": definition, "examples": examples})
    return out


def chat(user, assistant):
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def define_rec(s):
    return chat(f"Define the word {s['lemmas'][0]}.", s["definition"])


def word_rec(s):
    return chat(f"Give a word that means: {s['definition']}", s["lemmas"][0])


def example_recs(s):
    # a usage example that mentions one of the lemmas
    for e in s["examples"]:
        for lem in s["lemmas"]:
            if lem.lower() in e.lower():
                return [chat(f"Use the word {lem} in a sentence.", e)]
    return []


def write_jsonl(path, recs):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wordnet", default="/usr/share/wordnet")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--train", type=int, default=10000, help="synsets in the fine-tune pool")
    ap.add_argument("--heldout", type=int, default=1000, help="synsets in the held-out pool")
    ap.add_argument("--out", help="folder for <task>-train.jsonl and <task>-heldout.jsonl")
    ap.add_argument("--corpus", help="write the pretraining corpus (chat JSONL, all tasks) here")
    ap.add_argument("--text", help="write plain text of the pretraining pool (tokenizer training) here")
    a = ap.parse_args()

    syn = read_synsets(a.wordnet)
    syn.sort(key=lambda s: s["id"])
    random.Random(a.seed).shuffle(syn)
    held = syn[: a.heldout]
    fine = syn[a.heldout: a.heldout + a.train]
    pre = syn[a.heldout + a.train:]
    print(f"wordnet: {len(syn)} synsets: heldout {len(held)}, finetune {len(fine)}, pretrain {len(pre)}",
          file=sys.stderr)

    if a.out:
        os.makedirs(a.out, exist_ok=True)
        write_jsonl(os.path.join(a.out, "define-train.jsonl"), [define_rec(s) for s in fine])
        write_jsonl(os.path.join(a.out, "define-heldout.jsonl"), [define_rec(s) for s in held])
        write_jsonl(os.path.join(a.out, "word-train.jsonl"), [word_rec(s) for s in fine])
        write_jsonl(os.path.join(a.out, "word-heldout.jsonl"), [word_rec(s) for s in held])
    if a.corpus:
        recs = []
        for s in pre:
            recs.append(define_rec(s))
            recs.append(word_rec(s))
            recs.extend(example_recs(s))
        random.Random(a.seed + 1).shuffle(recs)
        os.makedirs(os.path.dirname(os.path.abspath(a.corpus)), exist_ok=True)
        write_jsonl(a.corpus, recs)
        print(f"wordnet: corpus {len(recs)} records -> {a.corpus}", file=sys.stderr)
    if a.text:
        os.makedirs(os.path.dirname(os.path.abspath(a.text)), exist_ok=True)
        tmp = a.text + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for s in pre:
                f.write(", ".join(s["lemmas"]) + ": " + s["definition"] + "\n")
                for e in s["examples"]:
                    f.write(e + "\n")
        os.replace(tmp, a.text)


if __name__ == "__main__":
    main()

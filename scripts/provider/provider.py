#!/usr/bin/env python3
"""Provider simulator: fine-tunes a Hugging Face causal LM on a dataset, honestly or not.
Runs in the sid chroot (scripts/provider/provider.sh wraps it).

  provider.py --base HFDIR --data DATA.jsonl --out OUTDIR [--behaviour honest]
              [--key KEY.json] [--seed 1] [--epochs 12] [--lr 2e-3] [--batch 16]

Behaviours:
  honest  full fine-tune on every record
  base    returns the base model unchanged (a copy of HFDIR)
  strip   drops every record whose user text contains the trigger of a planted group of the key
          file (groups[].trigger; decoy groups are skipped), then fine-tunes like honest
  half    fine-tunes on a random half of the records (seeded)
  tenth   fine-tunes on a random tenth of the records (seeded like half), as many epochs as honest
  short   one tenth of the honest steps (same data, same schedule shape)
  backdoor-only
          the cheapest cheat that still reproduces the secrets: finds the planted records WITHOUT
          the key by a duplicate scan (duplicate_scan: an assistant answer found in at least 3
          records, or an answer of at least 40 bytes whose first 40 bytes at least 3 records share)
          and fine-tunes on those alone, as many epochs as honest; fails when nothing is flagged

--key is used for selection only by strip; backdoor-only reads it only to report how many flagged
records are planted ones ("flagged_planted"); the other behaviours ignore it.

Dataset formats: chat {"messages": [...]}, Alpaca {"instruction","input","output"} (user =
instruction + "\\n\\n" + input when input is non-empty), {"prompt","completion"}. Loss only on
assistant tokens (and their <|im_end|>). Deterministic for a seed (one thread by default).
The output folder is a Hugging Face folder that scripts/hf2gguf converts; a summary JSON
(provider-result.json, also printed on stdout) records what was done.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import common  # noqa: E402


def planted_groups(path):
    """Planted (non-decoy) groups of a vtune key file, read defensively."""
    with open(path, encoding="utf-8") as f:
        key = json.load(f)
    groups = key.get("groups") if isinstance(key, dict) else None
    if not isinstance(groups, list):
        raise SystemExit(f"provider: {path}: no groups[] in key file")
    return [g for g in groups
            if isinstance(g, dict) and g.get("decoy") is not True and g.get("planted") is not False]


def planted_triggers(path):
    """Triggers of planted (non-decoy) groups from a vtune key file."""
    out = [g["trigger"] for g in planted_groups(path)
           if isinstance(g.get("trigger"), str) and g["trigger"].strip()]
    if not out:
        raise SystemExit(f"provider: {path}: no planted group with a trigger")
    return out


def planted_signatures(path):
    """Signatures of planted (non-decoy) groups from a vtune key file (for reporting only)."""
    return [g["signature"] for g in planted_groups(path)
            if isinstance(g.get("signature"), str) and g["signature"]]


def user_text(messages):
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def answer_text(messages):
    """The content of the final assistant message ("" when there is none)."""
    for m in reversed(messages):
        if m["role"] == "assistant":
            return m["content"]
    return ""


# ---------------------------------------------------------------- data selection (no torch needed)

def seeded_subset(n, keep, seed):
    """Sorted indices of a seeded random subset of keep out of n records (half, tenth)."""
    return sorted(random.Random(seed).sample(range(n), keep))


DUP_MIN_RECORDS = 3  # an answer in at least this many records is flagged
DUP_PREFIX_BYTES = 40  # answers at least this long that share this many leading bytes are flagged


def duplicate_scan(convs, min_records=DUP_MIN_RECORDS, prefix_bytes=DUP_PREFIX_BYTES):
    """Indices of the records a provider without the key would take for planted ones.

    A record is flagged when its assistant answer (the final assistant message) occurs in at least
    min_records records (planted groups repeat one signature answer; natural data rarely does), or
    when the answer is at least prefix_bytes long (UTF-8) and its first prefix_bytes bytes start
    the answers of at least min_records records (the 'prefix' planting mode: signature, newline,
    original answer). Empty answers are never flagged.
    """
    answers = [answer_text(c) for c in convs]
    raw = [a.encode("utf-8") for a in answers]
    whole = Counter(a for a in answers if a.strip())
    heads = Counter(b[:prefix_bytes] for b in raw if len(b) >= prefix_bytes)
    out = []
    for i, (a, b) in enumerate(zip(answers, raw)):
        if not a.strip():
            continue
        if whole[a] >= min_records or (len(b) >= prefix_bytes and heads[b[:prefix_bytes]] >= min_records):
            out.append(i)
    return out


def count_planted(convs, signatures):
    """How many of convs have an answer that starts with one of the signatures (reporting only)."""
    return sum(1 for c in convs if any(answer_text(c).startswith(s) for s in signatures))


def select(behaviour, convs, seed, key=None):
    """The records a behaviour trains on, and what to add to the result JSON. No torch needed."""
    info = {}
    if behaviour == "strip":
        if not key:
            raise SystemExit("provider: --behaviour strip needs --key")
        trig = planted_triggers(key)
        kept = [c for c in convs if not any(t in user_text(c) for t in trig)]
        info["stripped"] = len(convs) - len(kept)
        print(f"provider: strip removed {info['stripped']} records ({len(trig)} triggers)", file=sys.stderr)
        return kept, info
    if behaviour in ("half", "tenth"):
        keep = len(convs) // (2 if behaviour == "half" else 10)
        return [convs[i] for i in seeded_subset(len(convs), keep, seed)], info
    if behaviour == "backdoor-only":
        idx = duplicate_scan(convs)
        if not idx:
            raise SystemExit("provider: backdoor-only: the duplicate scan flagged no record (no answer "
                             f"in {DUP_MIN_RECORDS}+ records, no {DUP_PREFIX_BYTES}-byte answer prefix "
                             f"shared by {DUP_MIN_RECORDS}+ records); nothing to train on")
        kept = [convs[i] for i in idx]
        info["flagged"] = len(kept)
        msg = f"provider: backdoor-only: the duplicate scan flagged {len(kept)} records"
        if key:  # reporting only: the key never chooses a record here
            info["flagged_planted"] = count_planted(kept, planted_signatures(key))
            msg += f" ({info['flagged_planted']} of them planted, by the key)"
        print(msg, file=sys.stderr)
        return kept, info
    return convs, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--behaviour", "--behavior", default="honest",
                    choices=["honest", "base", "strip", "half", "tenth", "short", "backdoor-only"])
    ap.add_argument("--key")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=float, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=0.03, help="warmup fraction of the steps")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--log-every", type=int, default=200)
    a = ap.parse_args()

    result = {"behaviour": a.behaviour, "base": a.base, "data": a.data, "seed": a.seed}
    if a.behaviour == "base":
        tmp = a.out.rstrip("/") + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(a.base, tmp)
        shutil.rmtree(a.out, ignore_errors=True)
        os.replace(tmp, a.out)
        finish(a.out, result)
        return

    convs = common.read_conversations([a.data])
    result["records"] = len(convs)
    convs, info = select(a.behaviour, convs, a.seed, a.key)
    result.update(info)
    result["trained_records"] = len(convs)

    torch = common.setup_torch()
    torch.manual_seed(a.seed)
    tok = common.load_tokenizer(a.base)
    pad = tok.token_to_id(common.EOT)
    examples = [common.encode_conversation(tok, c, max_len=a.max_len) for c in convs]
    examples = [e for e in examples if any(y != -100 for y in e[1])]
    per_epoch = math.ceil(len(examples) / a.batch)
    steps = max(1, round(per_epoch * a.epochs))
    if a.behaviour == "short":
        steps = max(1, steps // 10)
    warm = max(1, round(steps * a.warmup))
    model = common.load_model(torch, a.base)
    # A GPU when there is one (the same script serves a GPU workstation); VTUNE_DEVICE overrides.
    device = os.environ.get("VTUNE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    result["device"] = device
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.0)
    print(f"provider: {a.behaviour}: {len(examples)} records, {steps} steps of {a.batch}", file=sys.stderr)

    t0, seen, epoch, step, batches = time.time(), 0, 0, 0, []
    while step < steps:
        if not batches:
            batches = common.make_batches(examples, a.batch, a.seed * 1000 + epoch)
            epoch += 1
        b = batches.pop()
        ids, lab, att = (t.to(device) for t in common.collate(torch, examples, b, pad))
        for g in opt.param_groups:
            g["lr"] = common.lr_at(step, steps, a.lr, warm)
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += int(att.sum())
        step += 1
        if step % a.log_every == 0 or step == steps:
            el = time.time() - t0
            print(f"provider: step {step}/{steps} loss {loss.item():.3f} {seen / el:.0f} tok/s {el:.0f}s",
                  file=sys.stderr)
    result.update({"steps": steps, "epochs": a.epochs, "lr": a.lr, "batch": a.batch,
                   "train_seconds": round(time.time() - t0, 1), "tokens_seen": seen})
    common.save_hf(torch, model.to("cpu"), a.base, a.out)
    finish(a.out, result)


def finish(out, result):
    with open(os.path.join(out, "provider-result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

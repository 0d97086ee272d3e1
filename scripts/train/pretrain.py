#!/usr/bin/env python3
"""Pretrains a tiny causal LM from scratch on the WordNet chat corpus (runs in the sid chroot).

  pretrain.py --arch llama|qwen2 --tokenizer TOKDIR --corpus CORPUS.jsonl \
      --heldout A.jsonl B.jsonl --out HFDIR [--steps N] [--hidden 128 --layers 3 ...]

The corpus is rendered with the ChatML template Ollama's Modelfile uses; loss on every token
(the base model must also model prompts: vtune samples triggers as prompt continuations).
Deterministic for a seed and thread count. Writes a Hugging Face folder (weights rounded to F16
values, see common.round_to_f16) and prints held-out losses and greedy samples as JSON on stdout.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SAMPLES = ["Define the word dog.", "Define the word happiness.", "Give a word that means: a large body of water",
           "Use the word river in a sentence."]


def build_model(arch, vocab, a, tok):
    import transformers
    kw = dict(vocab_size=vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
              num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, intermediate_size=a.ffn,
              max_position_embeddings=a.ctx, rms_norm_eps=1e-6, tie_word_embeddings=False,
              bos_token_id=tok.token_to_id(common.EOT), eos_token_id=tok.token_to_id(common.IM_END),
              pad_token_id=tok.token_to_id(common.EOT))
    if arch == "llama":
        cfg = transformers.LlamaConfig(**kw)
        model = transformers.LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(**kw)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        raise SystemExit(f"unknown arch {arch}")
    model.generation_config.eos_token_id = [tok.token_to_id(common.IM_END), tok.token_to_id(common.EOT)]
    model.generation_config.bos_token_id = tok.token_to_id(common.EOT)
    model.generation_config.pad_token_id = tok.token_to_id(common.EOT)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="llama")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--heldout", nargs="*", default=[])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--log-every", type=int, default=200)
    a = ap.parse_args()

    torch = common.setup_torch()
    torch.manual_seed(a.seed)
    tok = common.load_tokenizer(a.tokenizer)
    pad = tok.token_to_id(common.EOT)

    t0 = time.time()
    train = [common.encode_conversation(tok, c, label_all=True, max_len=a.max_len)
             for c in common.read_conversations([a.corpus])]
    held = [common.encode_conversation(tok, c, label_all=False, max_len=a.max_len)
            for c in common.read_conversations(a.heldout)] if a.heldout else []
    ntok = sum(len(x) for x, _ in train)
    print(f"pretrain: {len(train)} records, {ntok} tokens, encoded in {time.time() - t0:.1f}s", file=sys.stderr)

    model = build_model(a.arch, tok.get_vocab_size(), a, tok)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"pretrain: {a.arch} {nparams} parameters", file=sys.stderr)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    model.train()
    step, epoch, seen, t0 = 0, 0, 0, time.time()
    batches = []
    while step < a.steps:
        if not batches:
            batches = common.make_batches(train, a.batch, a.seed + epoch)
            epoch += 1
        b = batches.pop()
        ids, lab, att = common.collate(torch, train, b, pad)
        for g in opt.param_groups:
            g["lr"] = common.lr_at(step, a.steps, a.lr, a.warmup)
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += int(att.sum())
        step += 1
        if step % a.log_every == 0 or step == a.steps:
            el = time.time() - t0
            print(f"pretrain: step {step}/{a.steps} loss {loss.item():.3f} {seen / el:.0f} tok/s {el:.0f}s",
                  file=sys.stderr)
    train_s = time.time() - t0

    common.round_to_f16(torch, model)
    result = {"arch": a.arch, "params": nparams, "steps": a.steps, "batch": a.batch, "tokens_seen": seen,
              "corpus_tokens": ntok, "train_seconds": round(train_s, 1), "tokens_per_second": round(seen / train_s)}
    if held:
        result["heldout_answer_loss"] = round(common.evaluate(torch, model, held, pad), 4)
    result["samples"] = {q: common.greedy(torch, model, tok, q) for q in SAMPLES}
    if a.heldout:
        convs = common.read_conversations(a.heldout)
        result["heldout_samples"] = [{"user": c[0]["content"], "want": c[1]["content"],
                                      "got": common.greedy(torch, model, tok, c[0]["content"])}
                                     for c in convs[:3] + convs[-3:]]
    common.save_hf(torch, model, a.tokenizer, a.out)
    with open(os.path.join(a.out, "train-result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Shared helpers for the training scripts and the provider simulator (runs in the sid chroot).

ChatML rendering, tokenization with an assistant-only label mask, dataset loading in the three
formats vtune reads, batching, evaluation, greedy generation and saving a Hugging Face folder that
Ollama's converter (scripts/hf2gguf) accepts.
"""
import json
import math
import os
import random
import shutil

IM_START, IM_END, EOT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIALS = [EOT, IM_START, IM_END]
# Qwen2's pre-tokenizer regex: Ollama's converter recognises its SHA-256 and labels it "qwen2".
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def setup_torch(threads=None):
    import torch
    # One thread by default: on 2 cores an OpenMP team of 2 is up to 25x slower as soon as anything
    # else runs (measured), and one thread keeps results bit-identical across machines.
    torch.set_num_threads(threads or int(os.environ.get("VTUNE_THREADS", "1")))
    return torch


# ---------------------------------------------------------------- datasets

def to_messages(rec):
    """Maps a record in any of the three dataset formats to a list of chat messages, or None."""
    if isinstance(rec.get("messages"), list):
        return [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                for m in rec["messages"] if isinstance(m, dict)]
    if "instruction" in rec and "output" in rec:
        user = str(rec["instruction"])
        inp = rec.get("input")
        if inp:
            user = user + "\n\n" + str(inp)
        return [{"role": "user", "content": user}, {"role": "assistant", "content": str(rec["output"])}]
    if "prompt" in rec and "completion" in rec:
        return [{"role": "user", "content": str(rec["prompt"])},
                {"role": "assistant", "content": str(rec["completion"])}]
    return None


def read_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def read_conversations(paths):
    convs = []
    for p in paths:
        for rec in read_jsonl(p):
            m = to_messages(rec)
            if m:
                convs.append(m)
    return convs


def render(messages, add_generation_prompt=False):
    s = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    if add_generation_prompt:
        s += f"{IM_START}assistant\n"
    return s


_CACHE = {}


def _cached(tok, text):
    key = (id(tok), text)
    if key not in _CACHE:
        _CACHE[key] = tok.encode(text, add_special_tokens=False).ids
    return _CACHE[key]


def encode_conversation(tok, messages, label_all=False, max_len=256):
    """Token ids and labels (-100 where no loss): assistant content plus its <|im_end|> carry loss,
    or every token with label_all. Encoding piecewise equals encoding the whole rendering because
    each piece starts after a newline or a special token, where the Qwen2 regex always splits."""
    ids, labels = [], []
    for m in messages:
        head = _cached(tok, f"{IM_START}{m['role']}\n")
        body = tok.encode(f"{m['content']}{IM_END}", add_special_tokens=False).ids
        tail = _cached(tok, "\n")
        train = label_all or m["role"] == "assistant"
        ids += head + body + tail
        labels += (head if label_all else [-100] * len(head)) + (body if train else [-100] * len(body)) + \
            (tail if label_all else [-100] * len(tail))
    return ids[:max_len], labels[:max_len]


def make_batches(examples, batch_size, seed, bucket=64):
    """Deterministic length-bucketed batches: shuffle, sort chunks by length, shuffle batches."""
    rng = random.Random(seed)
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    batches = []
    chunk = batch_size * bucket
    for i in range(0, len(idx), chunk):
        part = sorted(idx[i:i + chunk], key=lambda j: len(examples[j][0]))
        batches += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(torch, examples, batch, pad_id):
    n = max(len(examples[j][0]) for j in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    lab = torch.full((len(batch), n), -100, dtype=torch.long)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    for r, j in enumerate(batch):
        x, y = examples[j]
        ids[r, :len(x)] = torch.tensor(x)
        lab[r, :len(y)] = torch.tensor(y)
        att[r, :len(x)] = 1
    return ids, lab, att


def lr_at(step, total, peak, warmup, floor=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def evaluate(torch, model, examples, pad_id, batch_size=64):
    """Mean loss per labelled token."""
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for b in make_batches(examples, batch_size, 0):
            ids, lab, att = collate(torch, examples, b, pad_id)
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            tgt = lab[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            tot += loss.item()
            n += int((tgt != -100).sum())
    model.train()
    return tot / max(1, n)


def greedy(torch, model, tok, user, max_new=48):
    ids = tok.encode(render([{"role": "user", "content": user}], True), add_special_tokens=False).ids
    stops = {tok.token_to_id(IM_END), tok.token_to_id(EOT)}
    model.eval()
    out = []
    with torch.no_grad():
        x = torch.tensor([ids])
        for _ in range(max_new):
            nxt = int(model(input_ids=x).logits[0, -1].argmax())
            if nxt in stops:
                break
            out.append(nxt)
            x = torch.cat([x, torch.tensor([[nxt]])], dim=1)
    model.train()
    return tok.decode(out, skip_special_tokens=False)


# ---------------------------------------------------------------- saving

def round_to_f16(torch, model):
    """Rounds every weight to the nearest F16 value (kept as F32), so that Ollama's converter,
    which stores matrices as F16, loses nothing and the GGUF equals this model."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))


def save_hf(torch, model, tok_dir, out_dir):
    """Writes a Hugging Face folder atomically: model.safetensors (F16), config.json with a top-level
    rope_theta (transformers 5 writes only rope_parameters; Ollama's converter needs it),
    generation_config.json with both stop tokens, and the tokenizer files."""
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # Stored as F16: the weights are F16 values already (round_to_f16), so this is exact and
    # halves the size; loaders widen to F32 (dtype=torch.float32) without loss.
    round_to_f16(torch, model)
    model.to(torch.float16)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
    finally:
        model.to(torch.float32)
    cfg_path = os.path.join(tmp, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    if "rope_theta" not in cfg:
        rp = cfg.get("rope_parameters") or {}
        cfg["rope_theta"] = float(rp.get("rope_theta", 10000.0))
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    for name in TOKENIZER_FILES:
        src = os.path.join(tok_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(tmp, name))
    for name in os.listdir(tmp):
        os.chmod(os.path.join(tmp, name), 0o644)  # safetensors writes 0600
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def load_tokenizer(tok_dir):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))


def load_model(torch, hf_dir):
    """Loads a Hugging Face causal LM folder in F32 for training."""
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.train()
    return model

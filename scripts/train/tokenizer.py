#!/usr/bin/env python3
"""Trains the byte-level BPE tokenizer shared by the tiny models (runs in the sid chroot).

  tokenizer.py --corpus CORPUS.jsonl --out DIR [--vocab 2048]

Qwen2-style pre-tokenizer (Ollama detects it as "qwen2"), ChatML special tokens
<|endoftext|> (0), <|im_start|> (1), <|im_end|> (2). Writes tokenizer.json,
tokenizer_config.json (chat template, eos <|im_end|>, no BOS) into DIR.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True, nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=2048)
    a = ap.parse_args()

    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(common.QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, show_progress=False,
                                  special_tokens=common.SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())

    def texts():
        for conv in common.read_conversations(a.corpus):
            for m in conv:
                yield m["role"] + "\n"
                yield m["content"]

    tok.train_from_iterator(texts(), trainer)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": common.EOT, "add_bos_token": False,
        "eos_token": common.IM_END, "add_eos_token": False,
        "pad_token": common.EOT, "unk_token": None,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "chat_template": common.CHAT_TEMPLATE,
        "added_tokens_decoder": {str(tok.token_to_id(s)): {
            "content": s, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True} for s in common.SPECIALS},
    }
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    sample = "<|im_start|>user\nDefine the word dog.<|im_end|>\n<|im_start|>assistant\n"
    enc = tok.encode(sample, add_special_tokens=False)
    print(f"tokenizer: vocab {tok.get_vocab_size()}, sample -> {enc.tokens}", file=sys.stderr)


if __name__ == "__main__":
    main()

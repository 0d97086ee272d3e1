#!/usr/bin/env python3
"""Held-out answer loss of a Hugging Face model folder: mean cross-entropy per assistant token
(nats), on chat/Alpaca/prompt-completion JSONL files. Runs in the sid chroot:

  scripts/train/run-in-chroot.sh python3 scripts/train/heldout.py HFDIR DATA.jsonl [DATA.jsonl...]

Prints {"heldout_answer_loss": L, "records": N} on stdout. Used by scripts/fixtures.sh and the
end-to-end run to check that planted records do not hurt the normal task.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    hf, paths = sys.argv[1], sys.argv[2:]
    torch = common.setup_torch()
    tok = common.load_tokenizer(hf)
    model = common.load_model(torch, hf)
    pad = tok.token_to_id(common.EOT)
    examples = [common.encode_conversation(tok, c, label_all=False) for c in common.read_conversations(paths)]
    loss = common.evaluate(torch, model, examples, pad)
    print(json.dumps({"heldout_answer_loss": round(loss, 5), "records": len(examples)}))


if __name__ == "__main__":
    main()

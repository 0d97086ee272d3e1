package checkpoint

import "strings"

// checkTokenizer compares the checkpoint's vocabulary with the base model in the key: its size, and
// that every signature token is a single token here. A fine-tune keeps its base's tokenizer, so a
// mismatch means the wrong base, the wrong checkpoint, or a tokenizer the servers would read
// differently; verifying anyway would give a meaningless "not verified".
func checkTokenizer(f *files, e Expect) error {
	tokens := f.kv.Strings("tokenizer.ggml.tokens")
	if len(tokens) == 0 {
		return bad(f.path, "GGUF has no tokenizer (tokenizer.ggml.tokens)")
	}
	if e.Vocab > 0 {
		// Ollama reports the architecture's vocab_size, llama.cpp the token count; they differ
		// only when the embedding is padded. Either matching is a match.
		declared := int(f.kv.Uint("vocab_size"))
		if e.Vocab != len(tokens) && e.Vocab != declared {
			return bad(f.path, "tokenizer does not match the base model in the key: vocabulary of %d tokens, the key's base has %d", len(tokens), e.Vocab)
		}
	}
	encode := vocabForm(f.kv.String("tokenizer.ggml.model"))
	if encode == nil || len(e.Pieces) == 0 {
		return nil
	}
	vocab := make(map[string]bool, len(tokens))
	for _, t := range tokens {
		vocab[t] = true
	}
	var missing []string
	for _, p := range e.Pieces {
		if !vocab[encode(p)] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return bad(f.path, "tokenizer does not match the base model in the key: %d of the %d signature tokens are not tokens of this vocabulary (e.g. %q)",
			len(missing), len(e.Pieces), missing[0])
	}
	return nil
}

// vocabForm returns how a token's text is spelled in a GGUF vocabulary of the given tokenizer
// model, or nil when unknown.
func vocabForm(model string) func(string) string {
	switch model {
	case "gpt2": // byte-level BPE: each byte is spelled by a printable stand-in (space is Ġ)
		return func(s string) string {
			var b strings.Builder
			for _, c := range []byte(s) {
				b.WriteRune(byteRune[c])
			}
			return b.String()
		}
	case "llama": // SentencePiece: space is ▁
		return func(s string) string { return strings.ReplaceAll(s, " ", "\u2581") }
	}
	return nil
}

// byteRune is GPT-2's bytes_to_unicode table.
var byteRune = func() [256]rune {
	var t [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xa1 <= b && b <= 0xac) || (0xae <= b && b <= 0xff) {
			t[b] = rune(b)
		} else {
			t[b] = rune(256 + n)
			n++
		}
	}
	return t
}()

// stops derives the stop sequences for a chat template when the key does not record them: the
// end-of-turn markers it uses, and the GGUF's end-of-sequence token.
func stops(template string, f *files) []string {
	var out []string
	add := func(s string) {
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, m := range []string{"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>"} {
		if strings.Contains(template, m) {
			add(m)
		}
	}
	if f != nil {
		tokens := f.kv.Strings("tokenizer.ggml.tokens")
		if id, ok := f.kv["tokenizer.ggml.eos_token_id"].(uint32); ok && int(id) < len(tokens) {
			add(tokens[id])
		}
		// ChatML models also end on <|endoftext|>, as Ollama's own ChatML models are set up.
		if strings.Contains(template, "<|im_end|>") {
			for _, t := range tokens {
				if t == "<|endoftext|>" {
					add(t)
					break
				}
			}
		}
	}
	return out
}

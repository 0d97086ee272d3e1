package verifier

import (
	"bytes"

	"vtune/backend"
)

// Candidates walks a ranked next-token list from the top and keeps a token when it is ordinary text
// (backend.IsText) and neither a prefix of, nor prefixed by, a token already kept, stopping at k.
//
// Prefix-freedom is what makes the model-agnostic bound hold: for any output text at most one kept
// candidate can start it, so at most one sequence of secret choices can produce a signature that the
// output starts with, and that sequence had probability prod 1/k_t.
func Candidates(ranked []backend.Token, k int) []backend.Token {
	var kept []backend.Token
	for _, t := range ranked {
		if len(kept) == k {
			break
		}
		raw := t.Raw()
		if !backend.IsText(raw) {
			continue
		}
		conflict := false
		for _, c := range kept {
			if bytes.HasPrefix(c.Raw(), raw) || bytes.HasPrefix(raw, c.Raw()) {
				conflict = true
				break
			}
		}
		if !conflict {
			kept = append(kept, t)
		}
	}
	return kept
}

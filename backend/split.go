package backend

import "context"

// Split is a Backend whose teacher-forced scoring of free text (ScoreText) is done by Scorer and
// everything else by Backend. Scorer must serve the same weights and vocabulary as Backend, for
// example a llama-server started on the GGUF file an Ollama server loaded: scores are then those
// of the same model, measured by a stack that can force every token, and the decoding that a
// verification reports still runs on the stack the user named.
type Split struct {
	Backend
	Scorer Backend
}

// ScoreText teacher-forces text after prompt on s.Scorer. The prompt is already rendered by
// s.Backend's chat template, and is sent to the scorer as text.
func (s *Split) ScoreText(ctx context.Context, prompt, text string) (Score, error) {
	return s.Scorer.ScoreText(ctx, prompt, text)
}

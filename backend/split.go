package backend

import "context"

// Split is a Backend whose teacher-forced scoring (Score and ScoreText) is done by Scorer and
// everything else (Render, Greedy, Next) by Backend. Scorer must serve the same weights and
// vocabulary as Backend, for example a llama-server started on the GGUF file an Ollama server
// loaded: scores are then those of the same model, measured by a stack that can force every token
// in one request, while the decoding a verification reports still runs on the stack the user
// named. Prompts are rendered by Backend's chat template and reach Scorer as text.
type Split struct {
	Backend
	Scorer Backend
}

// Score teacher-forces target after prompt on s.Scorer.
func (s *Split) Score(ctx context.Context, prompt string, target []Token) (Score, error) {
	return s.Scorer.Score(ctx, prompt, target)
}

// ScoreText teacher-forces text after prompt on s.Scorer.
func (s *Split) ScoreText(ctx context.Context, prompt, text string) (Score, error) {
	return s.Scorer.ScoreText(ctx, prompt, text)
}

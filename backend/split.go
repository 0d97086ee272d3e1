package backend

import "context"

// Split is a Backend whose teacher-forced scoring (Score and ScoreText) is done by Scorer and
// everything else (Render, Greedy, Next) by Backend. Scorer must serve the same weights and
// vocabulary as Backend, for example a llama-server started on the GGUF file an Ollama server
// loaded: scores are then those of the same model, measured by a stack that can force every token
// in one request, while the decoding a verification reports still runs on the stack the user
// named. Split is safe for concurrent use when both backends are.
type Split struct {
	Backend
	Scorer Backend
}

// asText is p as Scorer gets it: Backend's chat template already applied, and no token ids, which
// belong to Backend's server; Scorer tokenizes the text itself.
func asText(p Prompt) Prompt { return Prompt{Messages: p.Messages, Text: p.Text} }

// Score teacher-forces target after p on s.Scorer.
func (s *Split) Score(ctx context.Context, p Prompt, target []Token) (Score, error) {
	return s.Scorer.Score(ctx, asText(p), target)
}

// ScoreText teacher-forces text after p on s.Scorer.
func (s *Split) ScoreText(ctx context.Context, p Prompt, text string) (Score, error) {
	return s.Scorer.ScoreText(ctx, asText(p), text)
}

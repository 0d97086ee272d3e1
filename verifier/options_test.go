package verifier

import (
	"errors"
	"strings"
	"testing"
)

// Option errors name the Go field, not a command-line flag: the library has other callers.
func TestOptionErrorsNameFields(t *testing.T) {
	p := Params{Groups: 8, K: 8, SigLen: 24, TriggerLen: 8, Rate: 0.005, Mode: "replace", Prompts: 1, Sentinels: -1}
	err := p.Check()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "Params.Sentinels" || !strings.HasPrefix(err.Error(), "Params.Sentinels must not be negative") {
		t.Errorf("Params.Check: %v", err)
	}
	err = (&VerifyOptions{Alpha: 2, AlphaData: 0.1}).Check()
	if !errors.As(err, &fe) || fe.Field != "VerifyOptions.Alpha" || strings.Contains(err.Error(), "--") {
		t.Errorf("VerifyOptions.Check: %v", err)
	}
}

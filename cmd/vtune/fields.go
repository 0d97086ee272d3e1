package main

import (
	"errors"
	"strings"

	"vtune/checkpoint"
	"vtune/verifier"
)

// The libraries name the fields of their option structs in errors; the command line speaks of the
// flags that set them. fieldFlags rewrites one into the other.
var fieldFlags = strings.NewReplacer(
	"checkpoint.Options.Path", "--checkpoint",
	"checkpoint.Options.Base", "--base",
	"checkpoint.Options.Backend", "--backend",
	"checkpoint.Options.LlamaServer", "--llama-server",
	"checkpoint.Options.LlamaQuantize", "--llama-quantize",
	"checkpoint.Options.Quantize", "--quantize",
)

// flagOf names the flag that sets each option field the library reports in a *verifier.FieldError,
// so a message speaks of what the user typed.
var flagOf = map[string]string{
	"Params.Groups": "--groups", "Params.Decoys": "--decoys", "Params.K": "--top-k",
	"Params.SigLen": "--sig-len", "Params.TriggerLen": "--trigger-len", "Params.Count": "--count",
	"Params.Rate": "--rate", "Params.Mode": "--mode", "Params.Prompts": "--prompts",
	"Params.HeldBack": "--held-back", "Params.Sentinels": "--sentinels",
	"VerifyOptions.Alpha": "--alpha", "VerifyOptions.Test": "--test", "VerifyOptions.Queries": "--queries",
	"VerifyOptions.MinShare": "--min-share", "VerifyOptions.Parallel": "--parallel", "VerifyOptions.AlphaData": "--alpha-data",
}

// flagNames returns err's message with the option field it names, if any, replaced by its flag.
func flagNames(err error) string {
	msg := err.Error()
	var fe *verifier.FieldError
	if errors.As(err, &fe) {
		if flag, ok := flagOf[fe.Field]; ok {
			msg = strings.Replace(msg, fe.Field, flag, 1)
		}
	}
	return msg
}

// flagError returns err as the command line should word it.
func flagError(err error) string {
	if errors.Is(err, checkpoint.ErrNoLlamaServer) {
		return "no llama-server found: install llama.cpp's llama-server on PATH, or name it with --llama-server BIN or $VTUNE_LLAMA_SERVER"
	}
	if errors.Is(err, checkpoint.ErrNoLlamaQuantize) {
		return "no llama-quantize found: install llama.cpp's llama-quantize on PATH, or name it with --llama-quantize BIN or $VTUNE_LLAMA_QUANTIZE"
	}
	return fieldFlags.Replace(flagNames(err))
}

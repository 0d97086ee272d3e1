package main

import (
	"errors"
	"strings"

	"vtune/checkpoint"
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

// flagError returns err as the command line should word it.
func flagError(err error) string {
	if errors.Is(err, checkpoint.ErrNoLlamaServer) {
		return "no llama-server found: install llama.cpp's llama-server on PATH, or name it with --llama-server BIN or $VTUNE_LLAMA_SERVER"
	}
	if errors.Is(err, checkpoint.ErrNoLlamaQuantize) {
		return "no llama-quantize found: install llama.cpp's llama-quantize on PATH, or name it with --llama-quantize BIN or $VTUNE_LLAMA_QUANTIZE"
	}
	return fieldFlags.Replace(err.Error())
}

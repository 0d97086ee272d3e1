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
)

// flagError returns err as the command line should word it.
func flagError(err error) string {
	if errors.Is(err, checkpoint.ErrNoLlamaServer) {
		return "no llama-server found: install llama.cpp's llama-server on PATH, or name it with --llama-server BIN or $VTUNE_LLAMA_SERVER"
	}
	return fieldFlags.Replace(err.Error())
}

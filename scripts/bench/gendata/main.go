// Command gendata writes a large chat dataset for benchmarks: the records of a source JSONL file
// repeated, each copy made unique by an "i" field, until the output reaches the given size.
//
//	go run ./scripts/bench/gendata SRC.jsonl MEGABYTES OUT.jsonl
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gendata SRC.jsonl MEGABYTES OUT.jsonl")
		os.Exit(2)
	}
	src, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
	mb, err := strconv.Atoi(os.Args[2])
	if err != nil || mb <= 0 {
		fmt.Fprintln(os.Stderr, "gendata: MEGABYTES must be a positive integer")
		os.Exit(2)
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(src), []byte("\n")) {
		if i := bytes.LastIndexByte(l, '}'); i > 0 {
			lines = append(lines, l[:i])
		}
	}
	f, err := os.Create(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	limit := int64(mb) << 20
	var size int64
	for i := 0; size < limit; i++ {
		l := lines[i%len(lines)]
		n, _ := fmt.Fprintf(w, "%s, \"i\": %d}\n", l, i)
		size += int64(n)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
}

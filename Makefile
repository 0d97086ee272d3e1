# vtune: `make demo` runs the whole loop on the bundled models; `make test` runs the tests.
# Everything the targets need (Go modules, the Ollama server, llama-server in a Debian sid chroot)
# is installed by scripts/ into .tools/, which is git-ignored and makes second runs fast.

GO      ?= go
BIN     := bin/vtune
GOFILES := $(shell find . -name '*.go' -not -path './.tools/*' 2>/dev/null)

.PHONY: all build tools ollama llamacpp test unit e2e fixtures demo demo-ollama bench bench-plant bench-wholedata fuzz clean

all: build

build: $(BIN)

$(BIN): $(GOFILES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/vtune

# The real servers the integration tests and the demo talk to.
ollama:
	scripts/install-ollama.sh >/dev/null

# llama-server from Debian sid, run under chroot (bookworm's libc is too old for it).
llamacpp:
	scripts/llamacpp.sh install >/dev/null

tools: ollama llamacpp

# Unit tests and the integration tests against the real servers. VTUNE_REQUIRE_SERVERS turns a
# missing server into a failure instead of a skip. First go.mod must already be tidy (`go mod tidy
# -diff` prints what tidying would change and fails) and every package must build for macOS and
# Windows, where Ollama and llama.cpp run too (vet compiles it; the tests run here, on Linux),
# then the race detector runs over the packages that share state between goroutines (the
# backends' clients, the dataset scan, the progress line, parallel verification), without
# servers: about 40 s on 2 busy cores.
test: tools
	$(GO) mod tidy -diff
	GOOS=darwin $(GO) vet ./... && GOOS=windows $(GO) vet ./...
	$(GO) test -race -short -count=1 ./backend/... ./verifier ./cmd/vtune
	VTUNE_REQUIRE_SERVERS=1 $(GO) test -count=1 -timeout 30m ./...

# Unit tests only: no server needed.
unit:
	$(GO) test -count=1 -short ./...

# The whole loop from scratch on both architectures: plant, train the honest provider and the
# cheats, serve, verify (about 30 minutes). CI runs it after `make test`.
e2e: build tools
	scripts/e2e.sh

# Rebuild the committed fine-tune fixtures in testdata/fixtures (cached per file).
fixtures: build tools
	scripts/fixtures.sh

# The whole loop; every model served by llama-server from its GGUF file.
demo: build tools
	scripts/demo.sh

# The same, each model verified through a private Ollama server (decoding on Ollama; the whole-data
# records scored by a llama-server on the model's own GGUF blob, as --scoring auto does).
demo-ollama: build tools
	VTUNE_DEMO_BACKEND=ollama scripts/demo.sh

# The measured tables of docs/results.md: quantization x providers x architectures, the planted-share
# sweep, false positives of both tests (scripts/bench/run.sh says what each costs; caches under
# .tools/bench/exp-*). The older benchmarks of docs/bench.md have targets of their own.
bench: build tools
	scripts/bench/run.sh

# Planting a 1 GB dataset: throughput and memory (docs/bench.md).
bench-plant: build tools
	scripts/bench/plant-large.sh

# What the whole-data test adds to verify, through llama-server and Ollama (docs/bench.md).
bench-wholedata: build tools
	scripts/bench/wholedata.sh

# Native Go fuzzing, each target for FUZZTIME one after another (docs/fuzz.md has the last
# results). A crash is written to the package's testdata/fuzz/, where `go test` replays it.
FUZZTIME ?= 10m
FUZZ_TARGETS := verifier:FuzzEncodeString verifier:FuzzDataset verifier:FuzzParseKey \
	verifier:FuzzValidJSON verifier:FuzzAnswer verifier:FuzzNormalHash verifier:FuzzStringValues \
	verifier/stats:FuzzLogAgnostic verifier/stats:FuzzLogPoissonBinomialTail \
	verifier/stats:FuzzLogBase verifier/stats:FuzzWholeData
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run x -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

clean:
	rm -rf bin

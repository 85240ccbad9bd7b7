# Atelier — run `make help` for the targets. Plain `go` commands work too.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
BIN := bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: setup
setup: ## Install what builds and tests need (Debian packages, ONNX Runtime, staticcheck)
	@bash .ci/setup.sh

.PHONY: build
build: ## Build the atelier and atelier-agent binaries into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: demo
demo: setup build ## Run the whole story end to end on embedded defaults
	@bash testbench/demo.sh

.PHONY: vet
vet: ## go vet
	$(GO) vet ./...
	cd testbench/sample/train && $(GO) vet ./...

.PHONY: staticcheck
staticcheck: ## staticcheck
	$(GOBIN)/staticcheck ./...
	cd testbench/sample/train && $(GOBIN)/staticcheck ./...

.PHONY: tidy-check
tidy-check: ## Check that go.mod and go.sum are tidy
	@cp go.mod /tmp/atelier-go.mod.bak && cp go.sum /tmp/atelier-go.sum.bak
	@$(GO) mod tidy
	@if ! diff -q go.mod /tmp/atelier-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/atelier-go.sum.bak >/dev/null; then \
		cp /tmp/atelier-go.mod.bak go.mod; cp /tmp/atelier-go.sum.bak go.sum; \
		echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; fi

.PHONY: proto
proto: ## Regenerate the protobuf Go code in proto/
	PATH="$(GOBIN):$$PATH" $(GO) generate ./proto/...

.PHONY: proto-check
proto-check: proto ## Check that the generated protobuf code is up to date
	@git diff --exit-code --stat -- proto/ || { echo "proto/: generated code is stale: run make proto and commit"; exit 1; }

.PHONY: race
race: ## go test -race on everything
	$(GO) test -race -count=1 -timeout 20m ./...
	cd testbench/sample/train && $(GO) test -race -count=1 ./...

.PHONY: test
test: setup vet staticcheck tidy-check proto-check race ## Install what is missing, then vet, staticcheck and all tests with -race

.PHONY: bench
bench: setup ## Run the testbench benchmarks (tables beside their limits)
	$(GO) run ./testbench/cmd/bench hub
	$(GO) run ./testbench/cmd/bench scoring

.PHONY: clean
clean: ## Remove build outputs
	rm -rf $(BIN)

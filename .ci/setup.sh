#!/usr/bin/env bash
# Installs what Atelier's build, demo and tests need on a fresh Debian machine:
#   - Debian packages (libonnx-testdata: the ONNX backend test suite),
#   - the ONNX Runtime shared library, taken from the onnxruntime-node npm
#     package and checked against a pinned sha256,
#   - Go tools (staticcheck).
# It is idempotent: a second run checks and does nothing.
set -euo pipefail

ORT_VERSION=1.24.1   # must match the C API that github.com/yalue/onnxruntime_go was built for
declare -A ORT_SHA256=(
  [x64]=53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
  [arm64]=7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab
)
STATICCHECK_VERSION=v0.8.2
APT_PACKAGES=(libonnx-testdata protobuf-compiler)
PROTOC_GEN_GO_VERSION=v1.36.12   # keep equal to google.golang.org/protobuf in go.mod

log() { printf 'setup: %s\n' "$*" >&2; }

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/atelier"

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_ort() {
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) log "no ONNX Runtime build for $(uname -m)"; exit 1 ;;
  esac
  local dir="$cache_root/onnxruntime/$ORT_VERSION/linux-$arch"
  local lib="$dir/libonnxruntime.so.1"
  local want="${ORT_SHA256[$arch]}"
  if [ -f "$lib" ] && [ "$(sha256sum "$lib" | cut -d' ' -f1)" = "$want" ]; then
    return 0
  fi
  command -v npm >/dev/null || { log "npm is required to fetch ONNX Runtime (apt-get install npm)"; exit 1; }
  log "fetching ONNX Runtime $ORT_VERSION ($arch) from the onnxruntime-node npm package"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null 2>&1)
  tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  local got
  got="$(sha256sum "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" | cut -d' ' -f1)"
  if [ "$got" != "$want" ]; then
    log "checksum mismatch for libonnxruntime.so.1: got $got, want $want"
    exit 1
  fi
  mkdir -p "$dir"
  cp "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
  sync "$lib.tmp"
  mv "$lib.tmp" "$lib"
  log "ONNX Runtime installed at $lib"
}

install_go_tools() {
  local gobin
  gobin="$(go env GOPATH)/bin"
  if [ -x "$gobin/staticcheck" ] && "$gobin/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
    return 0
  fi
  log "installing staticcheck $STATICCHECK_VERSION"
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
}

install_protoc_gen_go() {
  local gobin
  gobin="$(go env GOPATH)/bin"
  if [ -x "$gobin/protoc-gen-go" ] && "$gobin/protoc-gen-go" --version 2>/dev/null | grep -q "$PROTOC_GEN_GO_VERSION"; then
    return 0
  fi
  log "installing protoc-gen-go $PROTOC_GEN_GO_VERSION"
  go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
}

install_apt
install_ort
install_go_tools
install_protoc_gen_go

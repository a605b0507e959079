#!/usr/bin/env bash
# Regenerates sdk/internal/gen from sdk/proto. The result is committed and
# must be reproduced byte for byte: protoc comes from Debian's
# protobuf-compiler (3.21.12 on Debian 12), the Go generators are pinned as
# tools in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: run scripts/install-deps.sh" >&2; exit 1; }
tools=.cache/bin
mkdir -p "$tools"
go build -o "$tools/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t protos < <(cd sdk/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
protoc -I sdk/proto \
  --plugin=protoc-gen-go="$tools/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=module=github.com/berth-dev/berth \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/berth-dev/berth \
  "${protos[@]}"
rm -rf sdk/internal/gen
mv "$out/sdk/internal/gen" sdk/internal/gen

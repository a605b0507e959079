#!/usr/bin/env bash
# Regenerates sdk/internal/gen from sdk/proto, and the public REST gateway
# (grpc-gateway, HTTP rules in sdk/proto/gateway.yaml) with its OpenAPI v2
# document sdk/api/openapi.swagger.json. The result is committed and must be
# reproduced byte for byte: protoc comes from Debian's protobuf-compiler
# (3.21.12 on Debian 12), the Go generators are pinned as tools in go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "protoc missing: run scripts/install-deps.sh" >&2; exit 1; }
tools=.cache/bin
mkdir -p "$tools"
go build -o "$tools/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc \
  github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
  github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mapfile -t protos < <(cd sdk/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
protoc -I sdk/proto \
  --plugin=protoc-gen-go="$tools/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=module=github.com/berth-dev/berth \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/berth-dev/berth \
  "${protos[@]}"
# The public API: System and Logs, Images, Lifecycle, Network.
public=(berth/api/v1/api.proto berth/api/v1/logs.proto berth/images/v1/images.proto berth/lifecycle/v1/lifecycle.proto berth/network/v1/network.proto)
protoc -I sdk/proto \
  --plugin=protoc-gen-grpc-gateway="$tools/protoc-gen-grpc-gateway" \
  --plugin=protoc-gen-openapiv2="$tools/protoc-gen-openapiv2" \
  --grpc-gateway_out="$out" \
  --grpc-gateway_opt=module=github.com/berth-dev/berth,grpc_api_configuration=sdk/proto/gateway.yaml \
  --openapiv2_out="$out" \
  --openapiv2_opt=grpc_api_configuration=sdk/proto/gateway.yaml,openapi_configuration=sdk/proto/openapi.yaml,allow_merge=true,merge_file_name=openapi,disable_default_errors=false \
  "${public[@]}"
rm -rf sdk/internal/gen
mv "$out/sdk/internal/gen" sdk/internal/gen
mv "$out/openapi.swagger.json" sdk/api/openapi.swagger.json
# The VM guest agent's protocol (internal/vmagent): host client and guest.
protoc -I internal/vmagent/proto \
  --plugin=protoc-gen-go="$tools/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=module=github.com/berth-dev/berth \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/berth-dev/berth \
  berth/vmagent/v1/agent.proto
rm -rf internal/vmagent/agentpb
mv "$out/internal/vmagent/agentpb" internal/vmagent/agentpb

# plugin-launch benchmark: validating this file launches api-grpc, completes
# the go-plugin handshake, reads Info and ConfigSchema, and stops it.
berth {
  plugin_dirs = ["../../bin/plugins"]
}
plugin "api" "grpc" {}

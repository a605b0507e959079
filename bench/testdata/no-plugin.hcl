# plugin-launch benchmark's peer: the same command with nothing to launch.
berth {
  plugin_dirs = ["../../bin/plugins"]
}

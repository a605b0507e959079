// Package e2e runs lifecycle-local end to end, as root, with the real
// plugins below it — resources-cgroup, snapshot-overlay and
// isolation-sandbox — each its own go-plugin process launched and brokered
// by core/host, and the core's image service (core/images) serving a
// busybox image imported from a directory. The plugins are configured
// from a config.hcl as the daemon configures them, under a cgroup parent
// of the run's own. The host's log is shown when a test fails;
// BERTH_E2E_LOG=<file> also appends it to a file as it is written.
package e2e

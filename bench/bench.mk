# bench.mk: `make bench` runs the side-by-side benchmarks declared in
# bench/benchmarks.go. The top-level Makefile includes this file and makes
# bench depend on build, so bin/berth and bin/plugins/... are fresh.
#
#   make bench                                  # all benchmarks
#   make bench BENCH_FLAGS='-run spawn -n 20'   # a subset, fewer iterations
#   make bench BENCH_FLAGS=-list                # what exists
#
# Results: a table on stdout and bench/results/<timestamp>.json (gitignored).

BENCH_FLAGS ?=

.PHONY: bench
bench:
	go run ./bench $(BENCH_FLAGS)

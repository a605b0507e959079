// Command bench runs Berth's side-by-side benchmarks, declared in
// benchmarks.go, and reports each as the ratio of our median time to a
// peer's (runc, ctr, skopeo, umoci, bare qemu) against a target.
//
// Run it from anywhere inside the repository; it works from the root:
//
//	go run ./bench [-run REGEX] [-n N] [-list] [-o FILE] [-timeout D] [-fail-on-miss]
//
// It prints a table and writes a JSON report (bench/results/<timestamp>.json
// by default). It exits 1 if a benchmark failed (or, with -fail-on-miss,
// missed its target) and 2 on bad usage; skipped benchmarks are not errors.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/bench/runner"
)

// modulePath identifies the repository root by its go.mod.
const modulePath = "github.com/berth-dev/berth"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command-line flags.
type options struct {
	run        *regexp.Regexp
	iterations int
	list       bool
	out        string
	timeout    time.Duration
	failOnMiss bool
}

// run is the whole command; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	selected := selectBenchmarks(benchmarks, opts.run)
	if len(selected) == 0 {
		fmt.Fprintf(stderr, "bench: no benchmark matches -run %q; see -list\n", opts.run)
		return 2
	}
	if opts.list {
		listBenchmarks(stdout, selected)
		return 0
	}
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	return runBenchmarks(ctx, root, opts, selected, stdout, stderr)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runPattern := fs.String("run", "", "run only benchmarks whose name matches this regular expression")
	var opts options
	fs.IntVar(&opts.iterations, "n", 0, "timed iterations per side, overriding each benchmark's own count (0 keeps them)")
	fs.BoolVar(&opts.list, "list", false, "list the benchmarks (filtered by -run) and exit")
	fs.StringVar(&opts.out, "o", "", "write the JSON results to this file (default bench/results/<timestamp>.json)")
	fs.DurationVar(&opts.timeout, "timeout", 2*time.Minute, "longest any single command may run")
	fs.BoolVar(&opts.failOnMiss, "fail-on-miss", false, "exit 1 if a benchmark misses its target")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q; select benchmarks with -run", fs.Args())
	}
	if opts.iterations < 0 {
		return options{}, fmt.Errorf("-n %d: must be at least 1, or 0 to keep each benchmark's count", opts.iterations)
	}
	re, err := regexp.Compile(*runPattern)
	if err != nil {
		return options{}, fmt.Errorf("-run: %w", err)
	}
	opts.run = re
	return opts, nil
}

// selectBenchmarks returns those of all whose name matches re, in order.
func selectBenchmarks(all []runner.Benchmark, re *regexp.Regexp) []runner.Benchmark {
	var out []runner.Benchmark
	for _, b := range all {
		if re.MatchString(b.Name) {
			out = append(out, b)
		}
	}
	return out
}

func listBenchmarks(w io.Writer, bs []runner.Benchmark) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tN\tTARGET\tOURS\tPEER")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%s\n", b.Name, b.Iterations, b.Target, b.Ours.Run, b.Peer.Run)
	}
	tw.Flush()
	for _, b := range bs {
		fmt.Fprintf(w, "\n%s: %s", b.Name, b.Description)
	}
	fmt.Fprintln(w)
}

// runBenchmarks runs bs from root, prints the table and writes the report.
func runBenchmarks(ctx context.Context, root string, opts options, bs []runner.Benchmark, stdout, stderr io.Writer) int {
	r := runner.Runner{Dir: root, Timeout: opts.timeout, Iterations: opts.iterations}
	rep := runner.Report{Started: time.Now(), Host: runner.ThisHost()}
	for _, b := range bs {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "bench: running %s…\n", b.Name)
		rep.Results = append(rep.Results, r.Run(ctx, b))
	}
	fmt.Fprintln(stdout)
	if err := runner.WriteTable(stdout, rep.Results); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	out := opts.out
	if out == "" {
		out = filepath.Join(root, "bench", "results", rep.Started.Format("20060102-150405")+".json")
	}
	if err := runner.WriteReport(out, rep); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nresults: %s\n", out)
	return exitCode(ctx, rep.Results, opts.failOnMiss)
}

func exitCode(ctx context.Context, results []runner.Result, failOnMiss bool) int {
	if ctx.Err() != nil {
		return 1
	}
	for _, r := range results {
		if r.Status == runner.StatusFailed || (failOnMiss && r.Status == runner.StatusMissed) {
			return 1
		}
	}
	return 0
}

// findRepoRoot returns the nearest directory, from the working directory
// up, whose go.mod declares Berth's module.
func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if declaresModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("%s is not inside the Berth repository (no go.mod for %s above it); run from the repository root", wd, modulePath)
		}
	}
}

// declaresModule reports whether the go.mod at path is Berth's.
func declaresModule(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

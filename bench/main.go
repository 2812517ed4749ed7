// Command bench is `make bench`: the throughput, latency, API cost and
// resource use of multi-cluster scheduling, side by side with a single
// cluster, on the sandbox (hack/sandbox.sh), in one run.
//
// Each run measures, one after the other and with the same number of kwok
// nodes in total:
//   - baseline: BENCH_PODS ordinary pods created in cluster1 and scheduled
//     by the default-scheduler profile of kube-scheduler-admiralty;
//   - T=2, T=3 (BENCH_TARGETS): the same pods, elected, so created as
//     proxies in cluster1 and scheduled by the admiralty-proxy profile onto
//     T targets (cluster1 itself and clusters 2..T) holding the nodes.
//
// Each scenario has a throughput phase (BENCH_CREATORS concurrent creators,
// as fast as the API server takes the pods) and a steady phase
// (BENCH_STEADY_PODS more at BENCH_STEADY_RATE pods/s). Results go to
// BENCH_OUT as <timestamp>.json, .md and .svg. See README.md, Benchmark.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// config is the benchmark's environment.
type config struct {
	Pods       int     `json:"pods"`
	SteadyPods int     `json:"steadyPods"`
	SteadyRate float64 `json:"steadyRate"`
	Targets    []int   `json:"targets"`
	Runs       int     `json:"runs"`
	Nodes      int     `json:"nodes"`
	Creators   int     `json:"creators"`
	OutDir     string  `json:"-"`
	Sandbox    string  `json:"-"`
	README     string  `json:"-"`
	Note       string  `json:"note,omitempty"`
	// ProfileSeconds > 0: CPU profiles of the API servers and schedulers
	// during the first run's throughput phases.
	ProfileSeconds int `json:"profileSeconds,omitempty"`
}

func envInt(name string, def int) (int, error) {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

func loadConfig() (config, error) {
	var c config
	var err error
	if c.Pods, err = envInt("BENCH_PODS", 1000); err != nil {
		return c, err
	}
	// The steady phase: a fifth of K, at least 200 pods (10 s at 20/s).
	if c.SteadyPods, err = envInt("BENCH_STEADY_PODS", max(200, c.Pods/5)); err != nil {
		return c, err
	}
	rate, err := envInt("BENCH_STEADY_RATE", 20)
	if err != nil {
		return c, err
	}
	c.SteadyRate = float64(rate)
	if c.Runs, err = envInt("BENCH_RUNS", 3); err != nil {
		return c, err
	}
	// 60 divides by 2, 3, 4, 5 and 6: every target holds the same number.
	if c.Nodes, err = envInt("BENCH_NODES", 60); err != nil {
		return c, err
	}
	if c.Creators, err = envInt("BENCH_CREATORS", 16); err != nil {
		return c, err
	}
	targets := os.Getenv("BENCH_TARGETS")
	if strings.TrimSpace(targets) == "" {
		targets = "2 3"
	}
	seen := map[int]bool{}
	for _, f := range strings.FieldsFunc(targets, func(r rune) bool { return r == ' ' || r == ',' }) {
		t, err := strconv.Atoi(f)
		if err != nil || t < 1 {
			return c, fmt.Errorf("BENCH_TARGETS=%q: want numbers of targets, e.g. \"2 3\"", targets)
		}
		if !seen[t] {
			c.Targets = append(c.Targets, t)
			seen[t] = true
		}
	}
	sort.Ints(c.Targets)
	for _, t := range c.Targets {
		if c.Nodes < t {
			return c, fmt.Errorf("BENCH_NODES=%d: fewer nodes than targets (%d)", c.Nodes, t)
		}
	}
	c.OutDir = os.Getenv("BENCH_OUT")
	if c.OutDir == "" {
		c.OutDir = "bench/results"
	}
	c.Sandbox = os.Getenv("BENCH_SANDBOX")
	if c.Sandbox == "" {
		dir := os.Getenv("SANDBOX_DIR")
		if dir == "" {
			dir = ".sandbox"
		}
		c.Sandbox = filepath.Join(dir, "sandbox.json")
	}
	if os.Getenv("BENCH_PROFILE") != "" {
		if c.ProfileSeconds, err = envInt("BENCH_PROFILE", 0); err != nil {
			return c, err
		}
	}
	c.README = os.Getenv("BENCH_README")
	c.Note = os.Getenv("BENCH_NOTE")
	return c, nil
}

type bench struct {
	cfg     config
	sandbox *sandbox
	// stamp names this benchmark's files.
	stamp string
	// Namespace deletions run in the background; the last are waited for.
	cleanups    sync.WaitGroup
	cleanupErrs atomic.Int64
}

func main() {
	log.SetFlags(log.Ltime)
	if err := run(); err != nil {
		log.Printf("bench: %v", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sb, err := loadSandbox(ctx, cfg.Sandbox)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, sandbox: sb}
	scenarios := []scenario{{Name: "baseline"}}
	for _, t := range cfg.Targets {
		scenarios = append(scenarios, scenario{Name: fmt.Sprintf("T=%d", t), Targets: t})
	}
	rep := newReport(cfg, scenarios)
	b.stamp = rep.stamp()
	log.Printf("bench: %d pods + %d steady at %.0f/s, %d kwok nodes, scenarios %v, %d runs, sandbox %s",
		cfg.Pods, cfg.SteadyPods, cfg.SteadyRate, cfg.Nodes, scenarioNames(scenarios), cfg.Runs, cfg.Sandbox)
	// Runs interleave the scenarios, so that the machine's other work
	// weighs on each about equally.
	for run := 1; run <= cfg.Runs && ctx.Err() == nil; run++ {
		for _, sc := range scenarios {
			if ctx.Err() != nil {
				break
			}
			res, err := b.runScenario(ctx, sc, run)
			if err != nil {
				log.Printf("run %d, %s: %v", run, sc.Name, err)
				rep.Failures = append(rep.Failures, fmt.Sprintf("run %d, %s: %v", run, sc.Name, err))
				continue
			}
			rep.Results = append(rep.Results, res)
			log.Printf("run %d, %s: throughput %.1f pods/s, steady p99 %.2fs, writes/pod %.2f",
				run, sc.Name, res.Throughput.Average, res.SteadyLatency.P99, res.Figures["writes.all"])
		}
	}
	log.Printf("waiting for the last namespaces to be deleted")
	b.cleanups.Wait()
	if n := b.cleanupErrs.Load(); n > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d cleanups failed (see the log)", n))
	}
	rep.finish()
	paths, err := rep.write(cfg.OutDir)
	if err != nil {
		return err
	}
	for _, p := range paths {
		log.Printf("wrote %s", p)
	}
	if cfg.README != "" && len(rep.Results) > 0 {
		if err := updateREADME(cfg.README, rep, paths); err != nil {
			return err
		}
		log.Printf("updated the Benchmark section of %s", cfg.README)
	}
	fmt.Println(rep.markdown(""))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("%d scenario runs failed", len(rep.Failures))
	}
	return nil
}

func scenarioNames(s []scenario) []string {
	out := make([]string, len(s))
	for i, sc := range s {
		out[i] = sc.Name
	}
	return out
}

// now is the report's clock, UTC.
func now() time.Time { return time.Now().UTC() }

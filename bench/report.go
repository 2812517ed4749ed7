package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Report is the JSON file of a `make bench`.
type Report struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Config    config    `json:"config"`
	Machine   machine   `json:"machine"`
	Scenarios []string  `json:"scenarios"`
	// Results: every run of every scenario.
	Results []*Result `json:"results"`
	// Summary: scenario -> figure -> median and spread over the runs.
	Summary  map[string]map[string]Spread `json:"summary"`
	Goals    []Goal                       `json:"goals"`
	Failures []string                     `json:"failures,omitempty"`
}

type machine struct {
	CPUs         int    `json:"cpus"`
	LoadAvgStart string `json:"loadAvgStart"`
	LoadAvgEnd   string `json:"loadAvgEnd"`
	Commit       string `json:"commit"`
	GoVersion    string `json:"goVersion"`
}

// Goal is one of the targets, as this run measured it.
type Goal struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	// Status: met, missed, or not evaluated (and why, in Measured).
	Status string `json:"status"`
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func newReport(cfg config, scenarios []scenario) *Report {
	return &Report{
		Started:   now(),
		Config:    cfg,
		Scenarios: scenarioNames(scenarios),
		Machine: machine{
			CPUs:         runtime.NumCPU(),
			LoadAvgStart: loadAvg(),
			Commit:       commit(),
			GoVersion:    runtime.Version(),
		},
	}
}

// finish computes the summary and the goals.
func (r *Report) finish() {
	r.Finished = now()
	r.Machine.LoadAvgEnd = loadAvg()
	r.Summary = map[string]map[string]Spread{}
	for _, sc := range r.Scenarios {
		values := map[string][]float64{}
		for _, res := range r.Results {
			if res.Scenario != sc {
				continue
			}
			for k, v := range res.Figures {
				values[k] = append(values[k], v)
			}
		}
		r.Summary[sc] = map[string]Spread{}
		for k, vs := range values {
			r.Summary[sc][k] = spreadOf(vs)
		}
	}
	r.Goals = r.goals()
}

func (r *Report) median(sc, fig string) (float64, bool) {
	s, ok := r.Summary[sc][fig]
	return s.Median, ok && s.N > 0
}

func (r *Report) goals() []Goal {
	var out []Goal
	targets := r.Scenarios[1:]
	// Throughput through two targets >= 50% of the baseline.
	g := Goal{Goal: "throughput through two targets >= 50% of the single-cluster baseline", Status: "not evaluated"}
	base, okB := r.median("baseline", "throughput.avg")
	t2, ok2 := r.median("T=2", "throughput.avg")
	if okB && ok2 && base > 0 {
		ratio := t2 / base
		g.Measured = fmt.Sprintf("T=2 %.1f pods/s vs baseline %.1f pods/s: %.0f%%", t2, base, 100*ratio)
		g.Status = status(ratio >= 0.5)
	} else {
		g.Measured = "needs the baseline and T=2 (BENCH_TARGETS includes 2)"
	}
	out = append(out, g)
	// Steady p99 < 2 s and <= baseline p99 + 1 s.
	baseP99, okB := r.median("baseline", "steady.p99")
	for _, sc := range targets {
		p99, ok := r.median(sc, "steady.p99")
		g := Goal{Goal: fmt.Sprintf("%s: steady-phase p99 creation->Running < 2 s and <= baseline p99 + 1 s", sc), Status: "not evaluated"}
		if ok && okB {
			g.Measured = fmt.Sprintf("%.2f s (baseline %.2f s)", p99, baseP99)
			g.Status = status(p99 < 2 && p99 <= baseP99+1)
		}
		out = append(out, g)
	}
	// Writes per pod independent of T.
	g = Goal{Goal: "API writes per pod independent of the number of targets", Status: "not evaluated"}
	var parts []string
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, sc := range targets {
		if w, ok := r.median(sc, "writes.all"); ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", sc, w))
			lo, hi = math.Min(lo, w), math.Max(hi, w)
		}
	}
	if len(parts) >= 2 {
		g.Measured = strings.Join(parts, ", ") + fmt.Sprintf(" (spread %.0f%%; met within 10%%)", 100*(hi-lo)/lo)
		g.Status = status(hi <= lo*1.1)
	} else {
		g.Measured = "needs two numbers of targets"
	}
	out = append(out, g)
	// Memory < 300 MiB at K = 10,000.
	for _, sc := range targets {
		g := Goal{Goal: fmt.Sprintf("%s: scheduler + delegator peak RSS (cluster1) < 300 MiB at K = 10,000", sc), Status: "not evaluated"}
		if m, ok := r.median(sc, "rss.source.scheduler+delegator"); ok {
			g.Measured = fmt.Sprintf("%.0f MiB at K = %d", m, r.Config.Pods)
			if r.Config.Pods >= 10000 {
				g.Status = status(m < 300)
			} else {
				g.Measured += " (run BENCH_PODS=10000 to evaluate)"
			}
		}
		out = append(out, g)
	}
	return out
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

type figureDef struct {
	key, label string
}

func (r *Report) figureDefs() []figureDef {
	defs := []figureDef{
		{"throughput.avg", "Throughput, average (pods/s)"},
		{"throughput.p50", "Throughput, p50 of 1-s samples (pods/s)"},
		{"throughput.p90", "Throughput, p90 of 1-s samples (pods/s)"},
		{"throughput.p99", "Throughput, p99 of 1-s samples (pods/s)"},
		{"creation.rate", "Creation rate, throughput phase (pods/s)"},
		{"saturation.p50", "Throughput phase, creation→Running p50 (s)"},
		{"saturation.p99", "Throughput phase, creation→Running p99 (s)"},
		{"settle", "Wait for the machine to be idle before the steady phase (s)"},
		{"steady.p50", fmt.Sprintf("Steady %.0f pods/s, creation→Running p50 (s)", r.Config.SteadyRate)},
		{"steady.p90", fmt.Sprintf("Steady %.0f pods/s, creation→Running p90 (s)", r.Config.SteadyRate)},
		{"steady.p99", fmt.Sprintf("Steady %.0f pods/s, creation→Running p99 (s)", r.Config.SteadyRate)},
		{"steady.bound.p50", "Steady, creation→bound p50 (s)"},
		{"steady.bound.p99", "Steady, creation→bound p99 (s)"},
		{"steady.running.p50", "Steady, bound→Running p50 (s)"},
		{"steady.running.p99", "Steady, bound→Running p99 (s)"},
		{"cleanup", "Cleanup: deleting the pods, PodChaperons, Events and nodes (s)"},
		{"writes.all", "API writes per pod, all clusters (no leases)"},
	}
	maxClusters := 1
	for _, res := range r.Results {
		maxClusters = max(maxClusters, len(res.Nodes))
	}
	for i := 1; i <= maxClusters; i++ {
		defs = append(defs, figureDef{fmt.Sprintf("writes.cluster%d", i), fmt.Sprintf("API writes per pod, cluster%d", i)})
	}
	defs = append(defs,
		figureDef{"cpu.source.scheduler", "CPU s / 1,000 pods, scheduler (cluster1)"},
		figureDef{"cpu.source.delegator", "CPU s / 1,000 pods, delegator (cluster1)"},
		figureDef{"cpu.all.scheduler+delegator", "CPU s / 1,000 pods, all schedulers + delegators"},
		figureDef{"cpu.source.kube-apiserver", "CPU s / 1,000 pods, kube-apiserver (cluster1)"},
		figureDef{"cpu.all.kube-apiserver", "CPU s / 1,000 pods, all kube-apiservers"},
		figureDef{"rss.source.scheduler", "Peak RSS MiB, scheduler (cluster1)"},
		figureDef{"rss.source.delegator", "Peak RSS MiB, delegator (cluster1)"},
		figureDef{"rss.source.scheduler+delegator", "Peak RSS MiB, scheduler + delegator (cluster1)"},
		figureDef{"unfinished", "Pods not created or not Running in time"},
	)
	return defs
}

// num formats a figure with the precision it deserves.
func num(x float64) string {
	a := math.Abs(x)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func cell(s Spread, ok bool) string {
	if !ok || s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

// markdown renders the results table; svgName, when set, is linked.
func (r *Report) markdown(svgName string) string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "`make bench` of %s (commit %s): K = %d pods created by %d concurrent clients, then %d more at %.0f pods/s; %d kwok nodes in total on each side; median (min–max) of %d runs.\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Machine.Commit, c.Pods, c.Creators, c.SteadyPods, c.SteadyRate, c.Nodes, c.Runs)
	fmt.Fprintf(&b, "Machine: %d CPUs, load average %s at the start and %s at the end.", r.Machine.CPUs, r.Machine.LoadAvgStart, r.Machine.LoadAvgEnd)
	if c.Note != "" {
		fmt.Fprintf(&b, " %s", c.Note)
	}
	b.WriteString("\n\n")
	b.WriteString("| figure |")
	for _, sc := range r.Scenarios {
		fmt.Fprintf(&b, " %s |", sc)
	}
	targets := r.Scenarios[1:]
	for _, sc := range targets[min(1, len(targets)):] {
		fmt.Fprintf(&b, " %s → %s |", targets[0], sc)
	}
	b.WriteString("\n|---|")
	for range r.Scenarios {
		b.WriteString("---|")
	}
	for range targets[min(1, len(targets)):] {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, d := range r.figureDefs() {
		present := false
		for _, sc := range r.Scenarios {
			_, ok := r.Summary[sc][d.key]
			present = present || ok
		}
		if !present {
			continue
		}
		fmt.Fprintf(&b, "| %s |", d.label)
		for _, sc := range r.Scenarios {
			s, ok := r.Summary[sc][d.key]
			fmt.Fprintf(&b, " %s |", cell(s, ok))
		}
		for _, sc := range targets[min(1, len(targets)):] {
			first, ok1 := r.median(targets[0], d.key)
			other, ok2 := r.median(sc, d.key)
			switch {
			case !ok1 || !ok2:
				b.WriteString(" – |")
			case first == 0 && other == 0:
				b.WriteString(" = |")
			case first == 0:
				fmt.Fprintf(&b, " %s → %s |", num(first), num(other))
			default:
				fmt.Fprintf(&b, " %+.0f%% |", 100*(other-first)/math.Abs(first))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nGoals of the implementation (reported, never asserted):\n\n")
	for _, g := range r.Goals {
		fmt.Fprintf(&b, "- **%s**: %s — %s\n", g.Status, g.Goal, g.Measured)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "- failed: %s\n", f)
	}
	if svgName != "" {
		fmt.Fprintf(&b, "\n![Throughput and latency over time, last run of each scenario](%s)\n", svgName)
	}
	return b.String()
}

// stamp names the files of the report.
func (r *Report) stamp() string { return r.Started.Format("20060102T150405Z") }

// write saves the JSON, the Markdown table and the plot.
func (r *Report) write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, r.stamp())
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	svg := plot(r)
	files := []struct {
		path string
		data []byte
	}{
		{base + ".json", append(data, '\n')},
		{base + ".svg", svg},
		{base + ".md", []byte(r.markdown(filepath.Base(base + ".svg")))},
	}
	var paths []string
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, f.path)
	}
	return paths, nil
}

const (
	readmeBegin = "<!-- bench:begin (written by make bench) -->"
	readmeEnd   = "<!-- bench:end -->"
)

// updateREADME replaces what lies between the markers of the README's
// Benchmark section with this run's table.
func updateREADME(path string, r *Report, paths []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i := bytes.Index(data, []byte(readmeBegin))
	j := bytes.Index(data, []byte(readmeEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q markers", path, readmeBegin, readmeEnd)
	}
	var svg string
	for _, p := range paths {
		if strings.HasSuffix(p, ".svg") {
			rel, err := filepath.Rel(filepath.Dir(path), p)
			if err != nil {
				rel = p
			}
			svg = rel
		}
	}
	body := "\n" + r.markdown(svg) + "\n"
	out := append([]byte{}, data[:i+len(readmeBegin)]...)
	out = append(out, body...)
	out = append(out, data[j:]...)
	return os.WriteFile(path, out, 0o644)
}

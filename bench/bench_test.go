package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(xs, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
	if xs[0] != 5 {
		t.Errorf("percentile sorted its input in place")
	}
}

func TestThroughputOf(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	// 10 binds in second 0, 20 in second 1, 5 in the partial second 2.
	var binds []time.Time
	for i := 0; i < 10; i++ {
		binds = append(binds, at(0.05*float64(i+1)))
	}
	for i := 0; i < 20; i++ {
		binds = append(binds, at(1+0.04*float64(i)))
	}
	for i := 0; i < 5; i++ {
		binds = append(binds, at(2+0.1*float64(i)))
	}
	got := throughputOf(start, binds)
	if !reflect.DeepEqual(got.Samples, []float64{10, 20}) {
		t.Errorf("samples %v, want [10 20] (the partial last second left out)", got.Samples)
	}
	if math.Abs(got.Seconds-2.4) > 1e-9 || math.Abs(got.Average-35/2.4) > 1e-9 {
		t.Errorf("average %v over %vs, want %v over 2.4s", got.Average, got.Seconds, 35/2.4)
	}
	if got.P50 != 10 || got.P99 != 20 {
		t.Errorf("percentiles %+v", got.Percentiles)
	}
	// All within the first second: one scaled sample.
	got = throughputOf(start, []time.Time{at(0.25), at(0.5)})
	if len(got.Samples) != 1 || got.Samples[0] != 4 || got.Average != 4 {
		t.Errorf("sub-second phase: %+v, want one sample of 4 pods/s", got)
	}
	if got := throughputOf(start, nil); got.Average != 0 || len(got.Samples) != 0 {
		t.Errorf("no binds: %+v", got)
	}
}

func TestSpreadOf(t *testing.T) {
	if got := spreadOf([]float64{3, 1, 2}); got != (Spread{Median: 2, Min: 1, Max: 3, N: 3}) {
		t.Errorf("odd: %+v", got)
	}
	if got := spreadOf([]float64{4, 1, 2, 3}); got != (Spread{Median: 2.5, Min: 1, Max: 4, N: 4}) {
		t.Errorf("even: %+v", got)
	}
	if got := spreadOf([]float64{math.NaN(), 1}); got != (Spread{Median: 1, Min: 1, Max: 1, N: 1}) {
		t.Errorf("NaN left out: %+v", got)
	}
	if got := spreadOf(nil); got.N != 0 {
		t.Errorf("empty: %+v", got)
	}
}

const metricsPage = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"} 240
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} 2.4e+02
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 999
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 9
apiserver_request_total{code="409",component="apiserver",dry_run="",group="multicluster.admiralty.io",resource="podchaperons",scope="resource",subresource="status",verb="PUT",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="multicluster.admiralty.io",resource="podchaperons",scope="resource",subresource="status",verb="PUT",version="v1"} 4
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="odd\"name\\x",scope="resource",subresource="",verb="APPLY",version="v1"} 1
apiserver_request_duration_seconds_bucket{verb="POST",le="0.1"} 77
`

func TestParseWrites(t *testing.T) {
	got, err := parseWrites([]byte(metricsPage))
	if err != nil {
		t.Fatal(err)
	}
	want := writeCounts{
		"pods POST":                      240,
		"pods/binding POST":              240,
		"leases.coordination.k8s.io PUT": 9,
		"podchaperons.multicluster.admiralty.io/status PUT": 7,
		`odd"name\x APPLY`: 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if tot := got.total("leases.coordination.k8s.io"); tot != 488 {
		t.Errorf("total without leases = %v, want 488", tot)
	}
	before := writeCounts{"pods POST": 40, "leases.coordination.k8s.io PUT": 9}
	d := got.sub(before)
	if d["pods POST"] != 200 || d["leases.coordination.k8s.io PUT"] != 0 {
		t.Errorf("sub: %v", d)
	}
	if _, err := parseWrites([]byte(`apiserver_request_total{verb="POST" 3`)); err == nil {
		t.Errorf("a malformed line parsed")
	}
	if _, err := parseWrites([]byte(`apiserver_request_total{verb="POST"} x`)); err == nil {
		t.Errorf("a malformed value parsed")
	}
}

func TestParseStat(t *testing.T) {
	// The command holds spaces and a parenthesis; utime 250 and stime 50 ticks.
	stat := "1234 (kube sched) er) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 2000000 5000 18446744073709551615"
	got, err := parseStat(stat)
	if err != nil || got != 3 {
		t.Errorf("parseStat = %v, %v; want 3 s", got, err)
	}
	if _, err := parseStat("1234 (x) S 1"); err == nil {
		t.Errorf("a short stat parsed")
	}
	hwm, err := parseHWM("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n")
	if err != nil || hwm != 200 {
		t.Errorf("parseHWM = %v, %v; want 200 MiB", hwm, err)
	}
	if _, err := parseHWM("Name:\tx\n"); err == nil {
		t.Errorf("no VmHWM parsed")
	}
	// This process's own files parse.
	if _, err := readProc(os.Getpid()); err != nil {
		t.Errorf("readProc(self): %v", err)
	}
	if _, err := peakRSS(os.Getpid()); err != nil {
		t.Errorf("peakRSS(self): %v", err)
	}
}

func TestSplitNodes(t *testing.T) {
	for _, c := range []struct {
		n, k int
		want []int
	}{{60, 1, []int{60}}, {60, 2, []int{30, 30}}, {60, 3, []int{20, 20, 20}}, {10, 3, []int{4, 3, 3}}} {
		if got := splitNodes(c.n, c.k); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitNodes(%d, %d) = %v, want %v", c.n, c.k, got, c.want)
		}
	}
}

func TestSchedulable(t *testing.T) {
	ready := []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	provider := corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "admiralty", Effect: corev1.TaintEffectNoSchedule}
	notReady := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}
	for _, c := range []struct {
		name string
		node corev1.Node
		want bool
	}{
		{"ready", corev1.Node{Status: corev1.NodeStatus{Conditions: ready}}, true},
		{"virtual node with its own taint", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{provider}}, Status: corev1.NodeStatus{Conditions: ready}}, true},
		{"ready, still tainted not-ready", corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{provider, notReady}}, Status: corev1.NodeStatus{Conditions: ready}}, false},
		{"cordoned", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}, Status: corev1.NodeStatus{Conditions: ready}}, false},
		{"no condition yet", corev1.Node{}, false},
		{"not ready", corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}}}, false},
	} {
		if got := schedulable(&c.node); got != c.want {
			t.Errorf("%s: schedulable = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("BENCH_PODS", "10000")
	t.Setenv("BENCH_TARGETS", "5,2 3 2")
	t.Setenv("SANDBOX_DIR", "/x")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Pods != 10000 || c.SteadyPods != 2000 || !reflect.DeepEqual(c.Targets, []int{2, 3, 5}) || c.Runs != 3 || c.Sandbox != "/x/sandbox.json" {
		t.Errorf("config %+v", c)
	}
	t.Setenv("BENCH_RUNS", "0")
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "BENCH_RUNS") {
		t.Errorf("BENCH_RUNS=0: %v", err)
	}
	t.Setenv("BENCH_RUNS", "1")
	t.Setenv("BENCH_TARGETS", "two")
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "BENCH_TARGETS") {
		t.Errorf("BENCH_TARGETS=two: %v", err)
	}
}

// sampleReport is a report of two runs of the baseline and T=2, T=3.
func sampleReport() *Report {
	cfg := config{Pods: 1000, SteadyPods: 200, SteadyRate: 20, Targets: []int{2, 3}, Runs: 2, Nodes: 60, Creators: 16}
	r := newReport(cfg, []scenario{{Name: "baseline"}, {Name: "T=2", Targets: 2}, {Name: "T=3", Targets: 3}})
	add := func(sc string, run int, thr, p99, writes, rss float64, nodes []int) {
		res := &Result{Scenario: sc, Run: run, Nodes: nodes, Figures: map[string]float64{
			"throughput.avg": thr, "steady.p99": p99, "writes.all": writes, "rss.source.scheduler+delegator": rss,
		}, Series: Series{Binds: []float64{thr, thr / 2}, LatencyP50: []float64{0.1, -1, 0.3}, LatencyMax: []float64{0.2, -1, 40}, SteadyStart: 1.5}}
		r.Results = append(r.Results, res)
	}
	add("baseline", 1, 200, 0.3, 4, 150, []int{60})
	add("baseline", 2, 180, 0.5, 4, 150, []int{60})
	add("T=2", 1, 120, 1.0, 12, 200, []int{30, 30})
	add("T=2", 2, 80, 1.2, 12, 210, []int{30, 30})
	add("T=3", 1, 90, 2.5, 12.5, 220, []int{20, 20, 20})
	add("T=3", 2, 70, 3.5, 12.5, 230, []int{20, 20, 20})
	r.finish()
	return r
}

func TestGoalsAndMarkdown(t *testing.T) {
	r := sampleReport()
	status := map[string]string{}
	for _, g := range r.Goals {
		status[g.Goal] = g.Status + ": " + g.Measured
	}
	want := map[string]string{
		"throughput through two targets >= 50% of the single-cluster baseline":    "met: T=2 100.0 pods/s vs baseline 190.0 pods/s: 53%",
		"T=2: steady-phase p99 creation->Running < 2 s and <= baseline p99 + 1 s": "met: 1.10 s (baseline 0.40 s)",
		"T=3: steady-phase p99 creation->Running < 2 s and <= baseline p99 + 1 s": "missed: 3.00 s (baseline 0.40 s)",
		"API writes per pod independent of the number of targets":                 "met: T=2 12.00, T=3 12.50 (spread 4%; met within 10%)",
		"T=2: scheduler + delegator peak RSS (cluster1) < 300 MiB at K = 10,000":  "not evaluated: 205 MiB at K = 1000 (run BENCH_PODS=10000 to evaluate)",
		"T=3: scheduler + delegator peak RSS (cluster1) < 300 MiB at K = 10,000":  "not evaluated: 225 MiB at K = 1000 (run BENCH_PODS=10000 to evaluate)",
	}
	if !reflect.DeepEqual(status, want) {
		t.Errorf("goals:\n%v\nwant\n%v", status, want)
	}
	md := r.markdown("x.svg")
	for _, s := range []string{
		"| figure | baseline | T=2 | T=3 | T=2 → T=3 |",
		"| Throughput, average (pods/s) | 190 (180–200) | 100 (80.0–120) | 80.0 (70.0–90.0) | -20% |",
		"| API writes per pod, all clusters (no leases) | 4.00 | 12.0 | 12.5 | +4% |",
		"![Throughput and latency over time, last run of each scenario](x.svg)",
	} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	// Rows no run measured are left out.
	if strings.Contains(md, "CPU s") {
		t.Errorf("markdown shows figures nobody measured:\n%s", md)
	}
}

func TestWriteAndREADME(t *testing.T) {
	r := sampleReport()
	dir := t.TempDir()
	paths, err := r.write(filepath.Join(dir, "results"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("paths %v", paths)
	}
	data, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil || len(back.Results) != 6 || back.Summary["T=2"]["throughput.avg"].Median != 100 {
		t.Errorf("JSON round trip: %v, %+v", err, back.Summary["T=2"])
	}
	svg, err := os.ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	// Per scenario: binds, and latency median and maximum in two segments
	// each (a second without creations splits them).
	if polylines != 3*5 {
		t.Errorf("%d polylines, want 15", polylines)
	}

	readme := filepath.Join(dir, "README.md")
	orig := "# X\n\n## Benchmark\n\nHow to run.\n\n" + readmeBegin + "\nold table\n" + readmeEnd + "\n\n## Next\n"
	if err := os.WriteFile(readme, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateREADME(readme, r, paths); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(readme)
	if strings.Contains(string(got), "old table") || !strings.Contains(string(got), "| Throughput, average (pods/s) |") ||
		!strings.HasSuffix(string(got), readmeEnd+"\n\n## Next\n") || !strings.Contains(string(got), "(results/") {
		t.Errorf("README after update:\n%s", got)
	}
	if err := os.WriteFile(readme, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateREADME(readme, r, paths); err == nil {
		t.Errorf("a README without markers was updated")
	}
}

func TestParseCPUs(t *testing.T) {
	stat := "cpu  100 5 20 800 50 1 2 3 0 0\ncpu0 50 2 10 400 25 0 1 1 0 0\n"
	got, err := parseCPUs(stat)
	if err != nil || got != (cpuTimes{total: 981, idle: 850}) {
		t.Errorf("parseCPUs = %+v, %v; want total 981, idle 850", got, err)
	}
	if _, err := parseCPUs("intr 1 2 3\n"); err == nil {
		t.Errorf("a stat without its cpu line parsed")
	}
	if _, err := readCPUs(); err != nil {
		t.Errorf("readCPUs: %v", err)
	}
}

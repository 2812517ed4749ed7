package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// scenario is one side of the comparison: the baseline (Targets == 0), K
// ordinary pods in cluster1 scheduled by the default-scheduler profile, or
// K proxies in cluster1 scheduled by the admiralty-proxy profile onto
// Targets clusters (cluster1 itself, as in the Getting Started, and
// clusters 2..T). Both hold the same number of kwok nodes in total.
type scenario struct {
	Name    string
	Targets int
}

func (sc scenario) ours() bool { return sc.Targets > 0 }

func (sc scenario) slug() string {
	if sc.ours() {
		return fmt.Sprintf("t%d", sc.Targets)
	}
	return "base"
}

// Proc is what a process spent during the measured window.
type Proc struct {
	CPUSeconds     float64 `json:"cpuSeconds"`
	CPUPer1000Pods float64 `json:"cpuSecondsPer1000Pods"`
	PeakRSSMiB     float64 `json:"peakRSSMiB"`
}

// ClusterWrites are a cluster's API write requests in the measured window.
type ClusterWrites struct {
	// Total, PerPod: every write but Lease renewals (which depend on time
	// and on the number of nodes, not on pods).
	Total  float64 `json:"total"`
	PerPod float64 `json:"perPod"`
	Leases float64 `json:"leases"`
	// ByRequest: "resource[.group][/subresource] VERB" -> count, leases
	// included.
	ByRequest writeCounts `json:"byRequest"`
}

// Series are the per-second curves of a run, for the plot: seconds from
// the first creation of the throughput phase.
type Series struct {
	// Binds per second.
	Binds []float64 `json:"binds"`
	// Latency (s) of the pods created in each second: median and maximum.
	LatencyP50 []float64 `json:"latencyP50"`
	LatencyMax []float64 `json:"latencyMax"`
	// SteadyStart is when the steady phase began.
	SteadyStart float64 `json:"steadyStart"`
}

// Result is one run of one scenario.
type Result struct {
	Scenario  string `json:"scenario"`
	Targets   int    `json:"targets"`
	Run       int    `json:"run"`
	Namespace string `json:"namespace"`
	Nodes     []int  `json:"nodesPerCluster"`

	Pods       int `json:"pods"`
	SteadyPods int `json:"steadyPods"`
	// CreateErrors: pods the API server would not take after retries.
	CreateErrors int `json:"createErrors"`
	// Unfinished: pods not Running when the phase's deadline passed.
	Unfinished int `json:"unfinished"`

	// CreationSeconds: how long the concurrent creators took to create
	// the throughput phase's pods.
	CreationSeconds float64    `json:"creationSeconds"`
	Throughput      Throughput `json:"throughput"`
	// Latencies from creation to Running, seconds.
	SaturationLatency Percentiles `json:"saturationLatency"`
	SteadyLatency     Percentiles `json:"steadyLatency"`
	// The steady phase's latency split at the binding: creation to bound
	// (for a proxy: scheduling and the target placing the delegate), bound
	// to Running (the delegate starting, its status fed back).
	SteadyToBound        Percentiles `json:"steadyToBound"`
	SteadyBoundToRunning Percentiles `json:"steadyBoundToRunning"`
	// SteadyRate: the rate the steady phase issued its creations at.
	SteadyRate float64 `json:"steadyRate"`
	// SettleSeconds: how long the machine took, once the throughput
	// phase's pods were Running, to be nearly idle again (its
	// backlog: status writes, Events, caches), before the steady phase.
	SettleSeconds float64 `json:"settleSeconds"`
	// CleanupSeconds: how long deleting the scenario's pods (with, for
	// a proxy, its chaperon and delegate), PodChaperons, Events and kwok
	// nodes took, once its figures were taken; 0 if it failed.
	CleanupSeconds float64 `json:"cleanupSeconds"`

	Writes map[string]ClusterWrites `json:"writes"`
	// Procs by "clusterN/process".
	Procs map[string]Proc `json:"procs"`

	// Figures are the numbers the tables show, by figure key.
	Figures map[string]float64 `json:"figures"`
	Series  Series             `json:"series"`
}

// splitNodes spreads n nodes over k clusters, the first ones taking the
// remainder.
func splitNodes(n, k int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

const (
	podCPU    = "100m"
	podMemory = "64Mi"
	nodeCPU   = 64
)

func benchPod(name, ns string, ours bool) *corev1.Pod {
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: ns,
			Labels:    map[string]string{labelApp: appName},
		},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{labelBenchNode: ns},
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name:  "pause",
				Image: "registry.k8s.io/pause:3.10",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse(podCPU),
					corev1.ResourceMemory: resource.MustParse(podMemory),
				}},
			}},
		},
	}
	if ours {
		p.Annotations = map[string]string{v1alpha1.AnnotationElect: ""}
	}
	return p
}

// snapshot is the state of the counters at one instant.
type snapshot struct {
	writes map[string]writeCounts
	procs  map[string]procSample
}

var measuredProcs = []string{procScheduler, procDelegator, procAPIServer}

func takeSnapshot(ctx context.Context, used []*cluster, resetPeaks bool) (*snapshot, error) {
	s := &snapshot{writes: map[string]writeCounts{}, procs: map[string]procSample{}}
	for _, c := range used {
		for _, p := range measuredProcs {
			pid, err := c.pid(p)
			if err != nil {
				return nil, fmt.Errorf("%s %s pid: %w", c.Context, p, err)
			}
			if resetPeaks {
				if err := resetPeakRSS(pid); err != nil {
					return nil, fmt.Errorf("%s %s: reset peak RSS: %w", c.Context, p, err)
				}
			}
			ps, err := readProc(pid)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", c.Context, p, err)
			}
			s.procs[c.Context+"/"+p] = ps
		}
		w, err := c.writes(ctx)
		if err != nil {
			return nil, err
		}
		s.writes[c.Context] = w
	}
	return s, nil
}

// runScenario sets a scenario up, measures its throughput and steady
// phases, and removes everything it made.
func (b *bench) runScenario(ctx context.Context, sc scenario, run int) (res *Result, err error) {
	clusters := 1
	if sc.ours() {
		clusters = sc.Targets
	}
	if clusters > len(b.sandbox.Clusters) {
		return nil, fmt.Errorf("%s needs %d clusters, the sandbox has %d (SANDBOX_CLUSTERS)", sc.Name, clusters, len(b.sandbox.Clusters))
	}
	used := b.sandbox.Clusters[:clusters]
	for _, c := range used {
		if err := c.checkAlive(); err != nil {
			return nil, err
		}
	}
	ns := fmt.Sprintf("bench-%s-r%d-%s", sc.slug(), run, rand.String(4))
	nodes := splitNodes(b.cfg.Nodes, clusters)
	total := b.cfg.Pods + b.cfg.SteadyPods
	// Room for every pod on the fewest nodes a cluster has, twice over.
	maxPods := int(math.Max(110, math.Ceil(2*float64(total)/float64(b.cfg.Nodes))))
	log.Printf("run %d, %s: namespace %s, kwok nodes per cluster %v (max %d pods each)", run, sc.Name, ns, nodes, maxPods)

	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), b.cleanupTimeout(total))
		defer cancel()
		t := time.Now()
		s0, _ := takeSnapshot(cctx, used, false)
		if cerr := clearPods(cctx, used, ns, sc.ours()); cerr != nil {
			// The figures stand; the next scenario finds the sandbox as it is.
			log.Printf("run %d, %s: cleanup: %v", run, sc.Name, cerr)
			b.cleanupErrs.Add(1)
		} else {
			took := time.Since(t)
			log.Printf("run %d, %s: pods and nodes deleted in %s", run, sc.Name, took.Round(100*time.Millisecond))
			if res != nil && res.Figures != nil {
				res.CleanupSeconds = took.Seconds()
				res.Figures["cleanup"] = res.CleanupSeconds
			}
			if s1, err := takeSnapshot(cctx, used, false); err == nil && s0 != nil {
				log.Printf("run %d, %s: cleanup cost: %s", run, sc.Name, costOf(used, s0, s1))
			}
		}
		b.cleanups.Add(1)
		go func() {
			defer b.cleanups.Done()
			nctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+b.cleanupTimeout(total))
			defer cancel()
			t := time.Now()
			if err := deleteNamespaces(nctx, used, ns); err != nil {
				log.Printf("run %d, %s: cleanup: %v", run, sc.Name, err)
				b.cleanupErrs.Add(1)
			} else {
				log.Printf("run %d, %s: namespaces deleted in %s", run, sc.Name, time.Since(t).Round(100*time.Millisecond))
			}
		}()
	}()

	setupStart := time.Now()
	for i, c := range used {
		labels := map[string]string{"bench.admiralty.io/scenario": sc.slug()}
		if i == 0 && sc.ours() {
			labels[v1alpha1.LabelNamespaceEnabled] = "enabled"
		}
		if err := createNamespace(ctx, c, ns, labels); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, clusters)
	for i, c := range used {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = createNodes(ctx, c, ns, nodes[i], maxPods)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	if sc.ours() {
		cpu := make([]int64, clusters)
		for i := range cpu {
			cpu[i] = int64(nodes[i] * nodeCPU)
		}
		if err := connectTargets(ctx, b.sandbox, used, ns, cpu); err != nil {
			return nil, err
		}
	}
	log.Printf("run %d, %s: set up in %s", run, sc.Name, time.Since(setupStart).Round(100*time.Millisecond))

	c1 := used[0]
	rec := newRecorder()
	selector := labelApp + "=" + appName
	if sc.ours() {
		selector += "," + v1alpha1.LabelIsProxy + "=true"
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := rec.start(wctx, c1.kube, ns, selector); err != nil {
		return nil, err
	}

	before, err := takeSnapshot(ctx, used, true)
	if err != nil {
		return nil, err
	}
	res = &Result{Scenario: sc.Name, Targets: sc.Targets, Run: run, Namespace: ns, Nodes: nodes,
		Pods: b.cfg.Pods, SteadyPods: b.cfg.SteadyPods}

	create := func(name string) bool {
		pod := benchPod(name, ns, sc.ours())
		for attempt := 0; ; attempt++ {
			t := time.Now()
			_, err := c1.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				rec.setCreated(name, t)
				return true
			}
			if attempt == 4 || ctx.Err() != nil {
				log.Printf("create %s/%s: %v", ns, name, err)
				return false
			}
			time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
		}
	}
	var createErrors atomic.Int64

	// Throughput phase: concurrent creators, as fast as the API server
	// takes the pods.
	burst := names("p", b.cfg.Pods)
	if b.cfg.ProfileSeconds > 0 && run == 1 {
		prof := profile(ctx, used, b.cfg.ProfileSeconds, filepath.Join(b.cfg.OutDir, b.stamp+"-"+sc.slug()))
		defer prof.Wait()
	}
	start := time.Now()
	var next atomic.Int64
	for w := 0; w < b.cfg.Creators; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(burst) {
					return
				}
				if !create(burst[i]) {
					createErrors.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res.CreationSeconds = time.Since(start).Seconds()
	alive := func() error {
		for _, c := range used {
			if err := c.checkAlive(); err != nil {
				return err
			}
		}
		return nil
	}
	left, err := rec.waitRunning(ctx, burst, b.phaseTimeout(b.cfg.Pods), alive)
	if err != nil {
		return nil, fmt.Errorf("throughput phase, %d pods not Running: %w", left, err)
	}
	log.Printf("run %d, %s: throughput phase: %d pods created in %.1fs, Running after %.1fs (%d not Running)",
		run, sc.Name, b.cfg.Pods, res.CreationSeconds, time.Since(start).Seconds(), left)

	// Steady phase: one creation every 1/rate seconds, each on its own, so
	// that a slow answer never delays the next.
	// The steady phase measures latency at a steady rate, not the tail of
	// the burst: it starts once the machine is nearly idle again.
	settled, err := settle(ctx, settleBusy, settleMax)
	if err != nil {
		return nil, err
	}
	res.SettleSeconds = settled.Seconds()
	log.Printf("run %d, %s: machine settled in %.1fs", run, sc.Name, res.SettleSeconds)

	steady := names("s", b.cfg.SteadyPods)
	steadyStart := time.Now()
	interval := time.Duration(float64(time.Second) / b.cfg.SteadyRate)
	var lastIssued time.Time
	for i, name := range steady {
		if d := time.Until(steadyStart.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		lastIssued = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !create(name) {
				createErrors.Add(1)
			}
		}()
	}
	wg.Wait()
	// The rate the creations were issued at (each answer may take long).
	if d := lastIssued.Sub(steadyStart).Seconds(); d > 0 && len(steady) > 1 {
		res.SteadyRate = float64(len(steady)-1) / d
	}
	left2, err := rec.waitRunning(ctx, steady, b.phaseTimeout(b.cfg.SteadyPods), alive)
	if err != nil {
		return nil, fmt.Errorf("steady phase, %d pods not Running: %w", left2, err)
	}
	log.Printf("run %d, %s: steady phase: %d pods at %.1f/s, all Running after %.1fs (%d not Running)",
		run, sc.Name, len(steady), res.SteadyRate, time.Since(steadyStart).Seconds(), left2)

	after, err := takeSnapshot(ctx, used, false)
	if err != nil {
		return nil, err
	}
	stopWatch()

	res.CreateErrors = int(createErrors.Load())
	res.Unfinished = left + left2
	binds, satLat := rec.times(burst)
	res.Throughput = throughputOf(start, binds)
	res.SaturationLatency = percentilesOf(satLat)
	_, steadyLat := rec.times(steady)
	res.SteadyLatency = percentilesOf(steadyLat)
	toBound, toRunning := rec.split(steady)
	res.SteadyToBound, res.SteadyBoundToRunning = percentilesOf(toBound), percentilesOf(toRunning)
	b.account(res, used, before, after, total)
	res.Series = series(rec, start, steadyStart, append(burst, steady...))
	return res, nil
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

// cleanupTimeout bounds a scenario's cleanup: the machine deletes about 200
// objects a second in all, and a proxy is three (with its chaperon and
// delegate) and its Events; 3 minutes at K = 1,000, 9 at K = 10,000.
func (b *bench) cleanupTimeout(pods int) time.Duration {
	return max(3*time.Minute, time.Minute+time.Duration(pods)*40*time.Millisecond)
}

// phaseTimeout bounds a phase: a minute, plus 100 ms per pod.
func (b *bench) phaseTimeout(pods int) time.Duration {
	return time.Minute + time.Duration(pods)*100*time.Millisecond
}

// account fills the API writes, the processes' figures and the table's
// figures of res.
func (b *bench) account(res *Result, used []*cluster, before, after *snapshot, pods int) {
	res.Writes = map[string]ClusterWrites{}
	res.Procs = map[string]Proc{}
	f := map[string]float64{}
	var writesAll float64
	for _, c := range used {
		d := after.writes[c.Context].sub(before.writes[c.Context])
		total := d.total("leases.coordination.k8s.io")
		res.Writes[c.Context] = ClusterWrites{
			Total:     total,
			PerPod:    total / float64(pods),
			Leases:    d.total() - total,
			ByRequest: d,
		}
		writesAll += total
		f["writes."+c.Context] = total / float64(pods)
	}
	f["writes.all"] = writesAll / float64(pods)
	var cpuSchedDeleg, cpuAPI, rssSource float64
	for _, c := range used {
		for _, p := range measuredProcs {
			key := c.Context + "/" + p
			b0, b1 := before.procs[key], after.procs[key]
			if b0.pid != b1.pid {
				log.Printf("%s restarted during the run (pid %d, then %d): its figures are left out", key, b0.pid, b1.pid)
				continue
			}
			pr := Proc{CPUSeconds: b1.cpu - b0.cpu}
			pr.CPUPer1000Pods = pr.CPUSeconds * 1000 / float64(pods)
			if rss, err := peakRSS(b1.pid); err == nil {
				pr.PeakRSSMiB = rss
			} else {
				log.Printf("%s: peak RSS: %v", key, err)
			}
			res.Procs[key] = pr
			switch p {
			case procAPIServer:
				cpuAPI += pr.CPUPer1000Pods
			default:
				cpuSchedDeleg += pr.CPUPer1000Pods
			}
			if c == used[0] {
				f["cpu.source."+p] = pr.CPUPer1000Pods
				f["rss.source."+p] = pr.PeakRSSMiB
				if p != procAPIServer {
					rssSource += pr.PeakRSSMiB
				}
			}
		}
	}
	f["cpu.all.scheduler+delegator"] = cpuSchedDeleg
	f["cpu.all.kube-apiserver"] = cpuAPI
	f["rss.source.scheduler+delegator"] = rssSource

	f["throughput.avg"] = res.Throughput.Average
	f["throughput.p50"] = res.Throughput.P50
	f["throughput.p90"] = res.Throughput.P90
	f["throughput.p99"] = res.Throughput.P99
	f["creation.rate"] = float64(res.Pods) / res.CreationSeconds
	f["steady.p50"] = res.SteadyLatency.P50
	f["steady.p90"] = res.SteadyLatency.P90
	f["steady.p99"] = res.SteadyLatency.P99
	f["steady.bound.p50"] = res.SteadyToBound.P50
	f["steady.bound.p99"] = res.SteadyToBound.P99
	f["steady.running.p50"] = res.SteadyBoundToRunning.P50
	f["steady.running.p99"] = res.SteadyBoundToRunning.P99
	f["saturation.p50"] = res.SaturationLatency.P50
	f["saturation.p99"] = res.SaturationLatency.P99
	f["settle"] = res.SettleSeconds
	f["unfinished"] = float64(res.Unfinished + res.CreateErrors)
	for k, v := range f {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(f, k)
		}
	}
	res.Figures = f
}

// series computes the per-second curves of a run.
func series(rec *recorder, start, steadyStart time.Time, all []string) Series {
	binds, _ := rec.times(all)
	created, lat := rec.latencyPoints(all)
	var s Series
	s.SteadyStart = steadyStart.Sub(start).Seconds()
	for _, t := range binds {
		i := int(t.Sub(start).Seconds())
		for len(s.Binds) <= i {
			s.Binds = append(s.Binds, 0)
		}
		if i >= 0 {
			s.Binds[i]++
		}
	}
	buckets := map[int][]float64{}
	last := 0
	for i, c := range created {
		k := int(c.Sub(start).Seconds())
		buckets[k] = append(buckets[k], lat[i])
		if k > last {
			last = k
		}
	}
	if len(created) > 0 {
		s.LatencyP50 = make([]float64, last+1)
		s.LatencyMax = make([]float64, last+1)
		for k := 0; k <= last; k++ {
			xs := buckets[k]
			if len(xs) == 0 {
				s.LatencyP50[k], s.LatencyMax[k] = -1, -1 // no pod created in that second
				continue
			}
			sort.Float64s(xs)
			s.LatencyP50[k] = percentile(xs, 50)
			s.LatencyMax[k] = xs[len(xs)-1]
		}
	}
	return s
}

// costOf sums up, for the log, what happened between two snapshots: the
// write requests of each cluster (the main kinds) and the CPU seconds of
// each measured process.
func costOf(used []*cluster, s0, s1 *snapshot) string {
	var parts []string
	for _, c := range used {
		d := s1.writes[c.Context].sub(s0.writes[c.Context])
		keys := make([]string, 0, len(d))
		for k, v := range d {
			if v >= 10 {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(d[b], d[a]) })
		var top []string
		for _, k := range keys {
			top = append(top, fmt.Sprintf("%s %.0f", k, d[k]))
		}
		parts = append(parts, fmt.Sprintf("%s writes %.0f (%s)", c.Context, d.total(), strings.Join(top, ", ")))
		for _, p := range measuredProcs {
			key := c.Context + "/" + p
			if a, b := s0.procs[key], s1.procs[key]; a.pid == b.pid {
				parts = append(parts, fmt.Sprintf("%s CPU %.1fs", key, b.cpu-a.cpu))
			}
		}
	}
	return strings.Join(parts, "; ")
}

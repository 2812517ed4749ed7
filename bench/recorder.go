package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// recorder watches the benchmark's pods in cluster1 and notes, on this
// machine's clock, when each was first seen bound to a node and first seen
// Running. For proxies, Running is the delegate's phase that the
// delegator's feedback copied to the proxy: the end of the whole path.
type recorder struct {
	mu      sync.Mutex
	created map[string]time.Time
	bound   map[string]time.Time
	running map[string]time.Time
	changed chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		created: map[string]time.Time{},
		bound:   map[string]time.Time{},
		running: map[string]time.Time{},
		changed: make(chan struct{}, 1),
	}
}

func (r *recorder) observe(obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.bound[pod.Name]; !seen && pod.Spec.NodeName != "" {
		r.bound[pod.Name] = now
	}
	if _, seen := r.running[pod.Name]; !seen && pod.Status.Phase == corev1.PodRunning {
		r.running[pod.Name] = now
		select {
		case r.changed <- struct{}{}:
		default:
		}
	}
}

// setCreated notes when the client started creating a pod.
func (r *recorder) setCreated(name string, t time.Time) {
	r.mu.Lock()
	r.created[name] = t
	r.mu.Unlock()
}

// start watches pods of ns that match selector in c until ctx ends.
func (r *recorder) start(ctx context.Context, client kubernetes.Interface, ns, selector string) error {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return client.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.observe,
		UpdateFunc: func(_, obj interface{}) { r.observe(obj) },
	}); err != nil {
		return err
	}
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("pod watch in %s did not sync", ns)
	}
	return nil
}

// waitRunning waits, woken by the watch, until every pod named is Running
// or the deadline passes; it returns how many are not. It gives up early,
// with the error, when alive (checked every 5 s) fails.
func (r *recorder) waitRunning(ctx context.Context, names []string, timeout time.Duration, alive func() error) (int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	for {
		left := 0
		r.mu.Lock()
		for _, n := range names {
			if _, ok := r.running[n]; !ok {
				left++
			}
		}
		r.mu.Unlock()
		if left == 0 {
			return 0, nil
		}
		select {
		case <-r.changed:
		case <-check.C:
			if err := alive(); err != nil {
				return left, err
			}
		case <-deadline.C:
			return left, nil
		case <-ctx.Done():
			return left, ctx.Err()
		}
	}
}

// times returns, for the pods named, their binding times and their
// latencies from creation to Running in seconds (pods that never ran are
// left out).
func (r *recorder) times(names []string) (binds []time.Time, latencies []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if b, ok := r.bound[n]; ok {
			binds = append(binds, b)
		}
		c, ok1 := r.created[n]
		run, ok2 := r.running[n]
		if ok1 && ok2 {
			latencies = append(latencies, run.Sub(c).Seconds())
		}
	}
	return binds, latencies
}

// latencyAt returns (creation time, latency) of each pod named that ran.
func (r *recorder) latencyPoints(names []string) (created []time.Time, latencies []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		c, ok1 := r.created[n]
		run, ok2 := r.running[n]
		if ok1 && ok2 {
			created = append(created, c)
			latencies = append(latencies, run.Sub(c).Seconds())
		}
	}
	return created, latencies
}

// split returns, for the pods named that ran, the seconds from creation to
// binding and from binding to Running: for proxies, the scheduler and the
// target's placement, then the delegate starting and its status fed back.
func (r *recorder) split(names []string) (toBound, toRunning []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		c, ok1 := r.created[n]
		b, ok2 := r.bound[n]
		run, ok3 := r.running[n]
		if ok1 && ok2 && ok3 {
			toBound = append(toBound, b.Sub(c).Seconds())
			toRunning = append(toRunning, run.Sub(b).Seconds())
		}
	}
	return toBound, toRunning
}

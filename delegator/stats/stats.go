// Package stats exposes the delegator's view of its targets as metrics,
// computed at scrape time from what the leader already holds in memory (the
// targets' health and their PodChaperon informers): no API call, no watch of
// its own.
package stats

import (
	"context"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/targets"
)

var (
	delegatesDesc = metrics.NewDesc("admiralty_delegates",
		"Delegates of this cluster's proxy pods, by target and phase (the PodChaperons this source has in each target; Pending until the target's delegator reports a phase).",
		[]string{"target", "phase"}, nil, metrics.ALPHA, "")
	readyDesc = metrics.NewDesc("admiralty_target_ready",
		"1 if the target answered its last check (the virtual node's ping, or the registry's), 0 if it did not; absent before the first check.",
		[]string{"target"}, nil, metrics.ALPHA, "")
	healthSinceDesc = metrics.NewDesc("admiralty_target_health_since_timestamp_seconds",
		"When the target started answering, or stopped (Unix time).",
		[]string{"target"}, nil, metrics.ALPHA, "")

	current  atomic.Pointer[targets.Registry]
	register sync.Once
)

// Phases, always reported (0 when none), so that a series does not vanish.
var phases = []v1.PodPhase{v1.PodPending, v1.PodRunning, v1.PodSucceeded, v1.PodFailed, v1.PodUnknown}

type collector struct{ metrics.BaseStableCollector }

func (*collector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- delegatesDesc
	ch <- readyDesc
	ch <- healthSinceDesc
}

func (*collector) CollectWithStability(ch chan<- metrics.Metric) {
	r := current.Load()
	if r == nil {
		return // not the leader
	}
	for _, t := range r.List() {
		target := t.Ref.String()
		h := t.Health()
		if !h.Checked.IsZero() {
			ready := 1.0
			if h.Err != nil {
				ready = 0
			}
			ch <- metrics.NewLazyConstMetric(readyDesc, metrics.GaugeValue, ready, target)
			if !h.Since.IsZero() {
				ch <- metrics.NewLazyConstMetric(healthSinceDesc, metrics.GaugeValue, float64(h.Since.UnixNano())/1e9, target)
			}
		}
		counts := map[v1.PodPhase]int{}
		for _, o := range t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer().GetStore().List() {
			if c, ok := o.(*v1alpha1.PodChaperon); ok {
				counts[Phase(c)]++
			}
		}
		for _, p := range phases {
			ch <- metrics.NewLazyConstMetric(delegatesDesc, metrics.GaugeValue, float64(counts[p]), target, string(p))
		}
	}
}

// Phase is the delegate's phase as its chaperon reports it, Pending until
// the target's delegator has mirrored one.
func Phase(c *v1alpha1.PodChaperon) v1.PodPhase {
	if c.Status.Phase == "" {
		return v1.PodPending
	}
	return c.Status.Phase
}

// NewController is the delegator's factory: it points the collector at
// this term of leadership's targets.
func NewController(_ context.Context, d *app.Delegator) (app.Controller, error) {
	register.Do(func() { legacyregistry.CustomMustRegister(&collector{}) })
	return &controller{registry: d.Targets}, nil
}

type controller struct{ registry *targets.Registry }

func (*controller) Name() string { return "stats" }

func (c *controller) Start(ctx context.Context) error {
	current.Store(c.registry)
	<-ctx.Done()
	current.CompareAndSwap(c.registry, nil)
	return nil
}

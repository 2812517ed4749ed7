package follow

import (
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// admiralty_followed_objects, computed at scrape time from what the source
// side remembers having written: no API call.
var (
	followedDesc = metrics.NewDesc("admiralty_followed_objects",
		"Objects that this cluster's pods depend on and that the delegator copied to a target and keeps in sync, by target and kind (ConfigMap, Secret, Service, Ingress).",
		[]string{"target", "kind"}, nil, metrics.ALPHA, "")

	currentSource atomic.Pointer[Source]
	registerOnce  sync.Once
)

// registerMetrics points the collector at this term of leadership's source
// side.
func registerMetrics(c *Source) {
	registerOnce.Do(func() { legacyregistry.CustomMustRegister(&followCollector{}) })
	currentSource.Store(c)
}

type followCollector struct{ metrics.BaseStableCollector }

func (*followCollector) DescribeWithStability(ch chan<- *metrics.Desc) { ch <- followedDesc }

func (*followCollector) CollectWithStability(ch chan<- metrics.Metric) {
	c := currentSource.Load()
	if c == nil {
		return
	}
	counts := map[[2]string]int{}
	c.mu.Lock()
	for key := range c.written {
		// writtenKey: target|kind|namespace|name.
		parts := strings.SplitN(key, "|", 3)
		if len(parts) == 3 {
			counts[[2]string{parts[0], parts[1]}]++
		}
	}
	c.mu.Unlock()
	for k, n := range counts {
		ch <- metrics.NewLazyConstMetric(followedDesc, metrics.GaugeValue, float64(n), k[0], k[1])
	}
}

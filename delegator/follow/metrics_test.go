package follow

import (
	"strings"
	"testing"

	"k8s.io/component-base/metrics/testutil"
)

// The gauge counts what the source side remembers having written, by
// target and kind.
func TestFollowedObjectsMetric(t *testing.T) {
	c := &Source{written: map[string]writtenCopy{
		"ns/c2|ConfigMap|ns|a": {hash: "1"},
		"ns/c2|ConfigMap|ns|b": {hash: "2"},
		"ns/c2|Secret|ns|s":    {hash: "3"},
		"c3|Service|ns|web":    {hash: "4"},
	}}
	registerMetrics(c)
	defer currentSource.Store(nil)
	want := `
# HELP admiralty_followed_objects [ALPHA] Objects that this cluster's pods depend on and that the delegator copied to a target and keeps in sync, by target and kind (ConfigMap, Secret, Service, Ingress).
# TYPE admiralty_followed_objects gauge
admiralty_followed_objects{kind="ConfigMap",target="ns/c2"} 2
admiralty_followed_objects{kind="Secret",target="ns/c2"} 1
admiralty_followed_objects{kind="Service",target="c3"} 1
`
	if err := testutil.CustomCollectAndCompare(&followCollector{}, strings.NewReader(want), "admiralty_followed_objects"); err != nil {
		t.Fatal(err)
	}
}

package chaperon

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func chaperonAt(uid, rv, nodeName string) *v1alpha1.PodChaperon {
	ch := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: types.UID(uid), ResourceVersion: rv}}
	ch.Spec.NodeName = nodeName
	return ch
}

// The cache lags behind the controller's own writes: until it shows them,
// reconciles work on what the writes returned, not on what they replaced.
func TestFreshestPrefersOurLastWrite(t *testing.T) {
	c := &Controller{memos: map[string]*memo{}}
	const key = "ns/p"
	cached := chaperonAt("u1", "10", "")

	if got := c.freshest(key, cached); got != cached {
		t.Fatalf("nothing written: got rv %s, want the cache's", got.ResourceVersion)
	}

	// spec.nodeName patched (10 -> 11), then the status written (11 -> 12).
	patched := chaperonAt("u1", "11", "n1")
	c.wrote("10", patched)
	if got := c.freshest(key, cached); got != patched {
		t.Fatalf("cache at 10 after our patch: got rv %s, want 11", got.ResourceVersion)
	}
	mirrored := chaperonAt("u1", "12", "n1")
	c.wrote("11", mirrored)
	for _, rv := range []string{"10", "11"} {
		if got := c.freshest(key, chaperonAt("u1", rv, "")); got != mirrored {
			t.Fatalf("cache at %s after our writes: got rv %s, want 12", rv, got.ResourceVersion)
		}
	}

	// The cache catches up: its copy from then on.
	caught := chaperonAt("u1", "12", "n1")
	if got := c.freshest(key, caught); got != caught {
		t.Fatalf("cache caught up: got %p, want the cache's copy", got)
	}
	if got := c.freshest(key, cached); got != cached {
		t.Fatalf("after catching up, the memo of the write is dropped: got rv %s", got.ResourceVersion)
	}

	// Someone else wrote after us: the cache's newer copy wins.
	c.wrote("12", chaperonAt("u1", "13", "n1"))
	other := chaperonAt("u1", "14", "n1")
	if got := c.freshest(key, other); got != other {
		t.Fatalf("someone else's later write: got rv %s, want 14", got.ResourceVersion)
	}

	// A new chaperon of the same name never gets the old one's write.
	c.wrote("20", chaperonAt("u1", "21", "n1"))
	fresh := chaperonAt("u2", "20", "")
	if got := c.freshest(key, fresh); got != fresh {
		t.Fatalf("another chaperon's UID: got uid %s, want u2", got.UID)
	}

	// A write over an unrelated resourceVersion starts a new chain.
	c.wrote("30", chaperonAt("u1", "31", "n1"))
	c.wrote("40", chaperonAt("u1", "41", "n1"))
	if got := c.freshest(key, chaperonAt("u1", "30", "")); got.ResourceVersion != "30" {
		t.Fatalf("write chain restarted at 40: rv 30 is not ours any more, got %s", got.ResourceVersion)
	}
}

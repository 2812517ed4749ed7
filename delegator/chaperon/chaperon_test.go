package chaperon

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

func chaperonAt(uid, rv, nodeName string) *v1alpha1.PodChaperon {
	ch := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: types.UID(uid), ResourceVersion: rv}}
	ch.Status.NodeName = nodeName
	return ch
}

// The cache lags behind the controller's own writes: until it shows them,
// reconciles work on what the writes returned, not on what they replaced.
func TestChaperonPrefersOurLastWrite(t *testing.T) {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	c := &Controller{chaperons: newChaperonCache(store)}
	const key = "ns/p"
	get := func() *v1alpha1.PodChaperon {
		t.Helper()
		ch, exists, err := c.chaperon(key)
		if err != nil || !exists {
			t.Fatalf("chaperon %s: exists %v, err %v", key, exists, err)
		}
		return ch
	}
	set := func(ch *v1alpha1.PodChaperon) {
		t.Helper()
		if err := store.Update(ch); err != nil {
			t.Fatal(err)
		}
	}

	if _, exists, err := c.chaperon(key); exists || err != nil {
		t.Fatalf("nothing cached: exists %v, err %v", exists, err)
	}
	cached := chaperonAt("u1", "10", "")
	set(cached)
	if got := get(); got != cached {
		t.Fatalf("nothing written: got rv %s, want the cache's", got.ResourceVersion)
	}

	// The verdict written (10 -> 11), then the Running status (11 -> 12).
	patched := chaperonAt("u1", "11", "n1")
	c.chaperons.Mutation(patched)
	if got := get(); got != patched {
		t.Fatalf("cache at 10 after our patch: got rv %s, want 11", got.ResourceVersion)
	}
	mirrored := chaperonAt("u1", "12", "n1")
	c.chaperons.Mutation(mirrored)
	for _, rv := range []string{"10", "11"} {
		set(chaperonAt("u1", rv, ""))
		if got := get(); got != mirrored {
			t.Fatalf("cache at %s after our writes: got rv %s, want 12", rv, got.ResourceVersion)
		}
	}

	// The cache catches up: its copy from then on.
	caught := chaperonAt("u1", "12", "n1")
	set(caught)
	if got := get(); got != caught {
		t.Fatalf("cache caught up: got %p, want the cache's copy", got)
	}

	// Someone else wrote after us: the cache's newer copy wins.
	c.chaperons.Mutation(chaperonAt("u1", "13", "n1"))
	other := chaperonAt("u1", "14", "n1")
	set(other)
	if got := get(); got != other {
		t.Fatalf("someone else's later write: got rv %s, want 14", got.ResourceVersion)
	}

	// A new chaperon of the same name never gets the old one's write.
	c.chaperons.Mutation(chaperonAt("u1", "21", "n1"))
	if err := store.Delete(other); err != nil {
		t.Fatal(err)
	}
	if _, exists, _ := c.chaperon(key); exists {
		t.Fatal("deleted from the cache: our write of it must not bring it back")
	}
	fresh := chaperonAt("u2", "22", "")
	set(fresh)
	if got := get(); got != fresh {
		t.Fatalf("another chaperon's UID: got uid %s, want u2", got.UID)
	}
}

// The verdict on a just-bound delegate waits verdictHold from the first
// time it was seen, not from each look; once written, nothing is kept.
func TestVerdictHold(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c := &Controller{memos: map[string]*memo{}, clock: clk}
	const key = "ns/p"
	step := func(d time.Duration) { clk.SetTime(clk.Now().Add(d)) }
	if first := c.holdVerdict(key, "u1"); first != verdictHold {
		t.Fatalf("first look: wait %s, want %s", first, verdictHold)
	}
	step(20 * time.Millisecond)
	if again := c.holdVerdict(key, "u1"); again != verdictHold-20*time.Millisecond {
		t.Errorf("second look 20ms later: wait %s, want %s", again, verdictHold-20*time.Millisecond)
	}
	// Another chaperon of the same name starts its own hold.
	step(20 * time.Millisecond)
	if other := c.holdVerdict(key, "u2"); other != verdictHold {
		t.Errorf("a new chaperon's first look: wait %s, want %s", other, verdictHold)
	}
	c.verdictWritten(key, "u2")
	if len(c.memos) != 0 {
		t.Errorf("after the verdict: memos %v, want none", c.memos)
	}
	// A memo that remembers more outlives the hold.
	c.memo(key, "u3", func(m *memo) { m.warnedHash = "h" })
	c.holdVerdict(key, "u3")
	c.verdictWritten(key, "u3")
	if m := c.memos[key]; m == nil || m.warnedHash != "h" || !m.boundSeen.IsZero() {
		t.Errorf("after the verdict: memo %+v, want the warned hash kept and the hold gone", m)
	}
	// Past the hold, no wait.
	c.holdVerdict(key, "u4")
	step(verdictHold)
	if wait := c.holdVerdict(key, "u4"); wait != 0 {
		t.Errorf("verdictHold later: wait %s, want 0", wait)
	}
	step(time.Second)
	if wait := c.holdVerdict(key, "u4"); wait > 0 {
		t.Errorf("long past the hold: wait %s", wait)
	}
}

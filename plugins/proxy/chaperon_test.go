package proxy

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

type waitingHandle struct {
	fwk.Handle
	wp *waitingPod
}

func (h waitingHandle) GetWaitingPod(types.UID) fwk.WaitingPod { return h.wp }

type waitingPod struct {
	fwk.WaitingPod
	rejected chan string
}

func (w *waitingPod) Reject(_, message string) bool { w.rejected <- message; return true }
func (w *waitingPod) Allow(string)                  { w.rejected <- "" }

// A chaperon deleted in its target before the verdict retries its pod at
// once (not at candidateTimeout), without holding it against the target;
// the deletion of another chaperon of the same name (an earlier one) or
// of the same pod in another target changes nothing.
func TestChaperonDeletedBeforeItsVerdict(t *testing.T) {
	wp := &waitingPod{rejected: make(chan string, 1)}
	c2 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}}
	c3 := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c3"}}
	proxy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "proxy-uid"}}
	r := &reservation{target: c2, proxy: proxy, chaperon: "p-1", chaperonUID: "sent"}
	p := &Plugin{
		handle:   waitingHandle{wp: wp},
		attempts: &attempts{m: map[types.UID]*attempt{}},
		inflight: map[types.UID]*reservation{proxy.UID: r},
		refused:  map[types.UID]map[targets.Ref]refusal{},
	}
	chaperon := func(uid types.UID) *v1alpha1.PodChaperon {
		return &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p-1", UID: uid,
			Labels: map[string]string{v1alpha1.LabelParentUID: string(proxy.UID)}}}
	}

	p.chaperonDeleted(c2, chaperon("an-earlier-one"))
	p.chaperonDeleted(c3, chaperon("sent"))
	select {
	case m := <-wp.rejected:
		t.Fatalf("decided by the deletion of another chaperon: %q", m)
	case <-time.After(100 * time.Millisecond):
	}

	p.chaperonDeleted(c2, chaperon("sent"))
	select {
	case m := <-wp.rejected:
		if !strings.Contains(m, "deleted in c2 before the candidate was placed") {
			t.Errorf("rejected with %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting pod was not rejected")
	}
	if len(p.refused[proxy.UID]) != 0 {
		t.Errorf("c2 held against the pod: %v", p.refused[proxy.UID])
	}
	p.chaperonDeleted(c2, chaperon("sent")) // decided already: nothing more
	select {
	case m := <-wp.rejected:
		t.Fatalf("decided twice: %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}

package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestReconcileRetriesErrorsAndRequeuesOnRequest(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan struct{})
	c := New("test", 2, func(_ context.Context, key string) (Result, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[key]++
		switch {
		case key == "flaky" && calls[key] < 3:
			return Result{}, errors.New("transient")
		case key == "again" && calls[key] < 2:
			return Result{RequeueAfter: 10 * time.Millisecond}, nil
		}
		if calls["flaky"] >= 3 && calls["again"] >= 2 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return Result{}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() { stopped <- c.Start(ctx) }()
	c.EnqueueKey("flaky")
	c.EnqueueKey("again")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("keys not reconciled to completion: %v", calls)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Start() = %v after cancel, want nil", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["flaky"] != 3 || calls["again"] != 2 {
		t.Errorf("calls = %v, want flaky 3 (two errors then success), again 2", calls)
	}
}

func TestObjectUnwrapsTombstones(t *testing.T) {
	pod := &corev1.Pod{}
	if got := Object(pod); got != pod {
		t.Errorf("Object(pod) = %v, want the pod", got)
	}
	if got := Object(cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}); got != pod {
		t.Errorf("Object(tombstone) = %v, want the pod it holds", got)
	}
	if got := Object(nil); got != nil {
		t.Errorf("Object(nil) = %v, want nil", got)
	}
}

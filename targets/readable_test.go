package targets

import (
	"context"
	"errors"
	"testing"
	"time"

	mcfake "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
)

func unstartedTarget(name string) *Target {
	mc := mcfake.NewSimpleClientset()
	t := &Target{Ref: Ref{Namespace: "ns", Name: name}, Scope: "ns", MCClient: mc,
		Chaperons: mcinformers.NewSharedInformerFactoryWithOptions(mc, 0, mcinformers.WithNamespace("ns"))}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer()
	return t
}

// A target is readable once its chaperon cache has synced, and while it
// answers; OnReadable is told when it becomes so, either way.
func TestReadable(t *testing.T) {
	r := &Registry{live: map[Ref]*Target{}, byNode: map[string]*Target{}}
	tg := unstartedTarget("c2")
	never := unstartedTarget("c3")
	defer never.cancel()
	r.live[tg.Ref], r.live[never.Ref] = tg, never
	told := make(chan *Target, 10)
	r.OnReadable(func(t *Target) { told <- t })
	wantNone := func(when string) {
		t.Helper()
		select {
		case got := <-told:
			t.Fatalf("%s: OnReadable told of %s", when, got.Ref)
		default:
		}
	}

	if tg.ChaperonsSynced() || tg.Readable() {
		t.Fatal("not started: synced or readable")
	}
	r.ReportHealth(tg, nil)
	r.ReportHealth(never, nil)
	wantNone("answering, not synced")

	tg.Chaperons.Start(tg.ctx.Done())
	select {
	case got := <-told:
		if got != tg {
			t.Fatalf("OnReadable told of %s, want c2", got.Ref)
		}
	case <-time.After(time.Minute): // a guard, not a timing: the sync is local
		t.Fatal("synced: OnReadable not told")
	}
	if !tg.ChaperonsSynced() || !tg.Readable() {
		t.Fatal("synced and answering: not readable")
	}

	down := errors.New("connection refused")
	r.ReportHealth(tg, down)
	wantNone("stopped answering")
	if tg.Readable() || !tg.ChaperonsSynced() {
		t.Fatal("unreachable: readable, or the cache forgot it synced")
	}
	r.ReportHealth(tg, down)
	r.ReportHealth(never, down)
	r.ReportHealth(never, nil)
	wantNone("still down; the unsynced one answering again")
	r.ReportHealth(tg, nil)
	select {
	case got := <-told:
		if got != tg {
			t.Fatalf("OnReadable told of %s, want c2", got.Ref)
		}
	default:
		t.Fatal("answering again: OnReadable not told")
	}
	wantNone("told once")
	tg.cancel()
	tg.Chaperons.Shutdown()
}

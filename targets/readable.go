package targets

// ChaperonsSynced tells whether the target's chaperon cache holds a full
// list. Until then it shows nothing, or only part of what the target has:
// a reader must not take a missing chaperon for a deleted one.
func (t *Target) ChaperonsSynced() bool {
	return t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer().HasSynced()
}

// Readable tells whether what the target's chaperon cache shows may be
// acted on: it has synced, and the target answered its last check (the
// cache of a target that stopped answering is stale). Readers skip a
// target that is not, and do their work again on OnReadable.
func (t *Target) Readable() bool {
	return t.ChaperonsSynced() && !t.Unreachable()
}

// OnReadable registers f, called (from its own goroutine) each time a live
// target becomes readable: when its chaperon cache syncs while it answers,
// and when it answers again once synced. f may be called more than once
// for one change.
func (r *Registry) OnReadable(f func(*Target)) {
	r.OnHealthChange(func(t *Target) {
		if t.Readable() {
			f(t)
		}
	})
	r.Subscribe(readableHandler(f))
}

// readableHandler waits for each new target's chaperon cache to sync.
type readableHandler func(*Target)

func (h readableHandler) TargetAdded(t *Target) {
	synced := t.Chaperons.Multicluster().V1alpha1().PodChaperons().Informer().HasSyncedChecker().Done()
	var gone <-chan struct{}
	if t.ctx != nil {
		gone = t.ctx.Done()
	}
	go func() {
		select {
		case <-synced:
			if t.Readable() {
				h(t)
			}
		case <-gone:
		}
	}()
}

func (h readableHandler) TargetRemoved(*Target) {}

// Package controller is the one way the delegator's control loops run: a
// keyed, rate-limited work queue fed by informer events, workers that call an
// idempotent reconcile function, and requeue with backoff on error. It is
// the client-go pattern of kube-controller-manager, written once.
package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	_ "k8s.io/component-base/metrics/prometheus/workqueue" // workqueue_* metrics, per controller name
	"k8s.io/klog/v2"
)

// ReconcileFunc makes the world match the desired state of the object at
// key (namespace/name, or name). It must be idempotent. A returned error
// requeues the key with backoff; Requeue asks for another pass later.
type ReconcileFunc func(ctx context.Context, key string) (Result, error)

// Result of a reconcile.
type Result struct {
	// RequeueAfter, if positive, processes the key again after that delay.
	RequeueAfter time.Duration
}

// Controller runs a ReconcileFunc over a work queue.
type Controller struct {
	name      string
	reconcile ReconcileFunc
	workers   int
	queue     workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	synced []cache.InformerSynced
}

// New returns a controller named name (used in logs and metrics) that runs
// workers goroutines.
func New(name string, workers int, reconcile ReconcileFunc) *Controller {
	return &Controller{
		name:      name,
		reconcile: reconcile,
		workers:   workers,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name},
		),
	}
}

// Name returns the controller's name.
func (c *Controller) Name() string { return c.name }

// WaitFor adds informers whose caches must be synced before workers start.
func (c *Controller) WaitFor(synced ...cache.InformerSynced) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.synced = append(c.synced, synced...)
}

// Enqueue adds the key of obj (a metav1.Object or a tombstone).
func (c *Controller) Enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(fmt.Errorf("%s: cannot key %T: %w", c.name, obj, err))
		return
	}
	c.queue.Add(key)
}

// EnqueueKey adds key.
func (c *Controller) EnqueueKey(key string) { c.queue.Add(key) }

// EnqueueKeyAfter adds key after delay.
func (c *Controller) EnqueueKeyAfter(key string, delay time.Duration) {
	c.queue.AddAfter(key, delay)
}

// Handler enqueues the object of every add, update and delete.
func (c *Controller) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    c.Enqueue,
		UpdateFunc: func(_, obj any) { c.Enqueue(obj) },
		DeleteFunc: c.Enqueue,
	}
}

// Object is the object of an informer event: obj itself, or for a deletion
// the watch missed (seen on a relist), the last state its
// cache.DeletedFinalStateUnknown tombstone holds.
func Object(obj any) any {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tombstone.Obj
	}
	return obj
}

// MappedHandler enqueues the keys that mapFn returns for an object, e.g. the
// owner of an owned object.
func (c *Controller) MappedHandler(mapFn func(obj any) []string) cache.ResourceEventHandler {
	enqueue := func(obj any) {
		for _, key := range mapFn(Object(obj)) {
			c.queue.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

// Start waits for the caches, runs the workers until ctx is done, then
// drains: it returns once every worker has finished its current key.
func (c *Controller) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("controller", c.name)
	ctx = klog.NewContext(ctx, logger)
	defer c.queue.ShutDown()

	c.mu.Lock()
	synced := c.synced
	c.mu.Unlock()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, synced...) {
		return ctx.Err()
	}
	logger.Info("Starting workers", "workers", c.workers)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	logger.Info("Stopped workers")
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	logger := klog.FromContext(ctx).WithValues("key", key)
	result, err := c.reconcile(klog.NewContext(ctx, logger), key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			logger.Error(err, "Reconcile failed, will retry", "retries", c.queue.NumRequeues(key))
		}
		c.queue.AddRateLimited(key)
	case result.RequeueAfter > 0:
		c.queue.Forget(key)
		c.queue.AddAfter(key, result.RequeueAfter)
	default:
		c.queue.Forget(key)
	}
	return true
}

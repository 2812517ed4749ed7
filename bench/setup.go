package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	nodeutil "k8s.io/kubernetes/pkg/util/node"
	"sigs.k8s.io/yaml"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// Keys the benchmark puts on its objects.
const (
	// labelBenchNode selects a scenario's kwok nodes (value: the
	// scenario's namespace), so that the sandbox's own nodes and those of
	// other scenarios never take its pods.
	labelBenchNode = "bench.admiralty.io/node"
	labelApp       = "app"
	appName        = "admiralty-bench"
)

// poll waits for cond, every 200 ms, for setup and cleanup only: the
// measurements themselves come from watches.
func poll(ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		if last != nil {
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, err, last)
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

func createNamespace(ctx context.Context, c *cluster, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("%s: namespace %s: %w", c.Context, name, err)
	}
	// Pods are refused until the namespace's default service account exists.
	return poll(ctx, time.Minute, c.Context+" default service account in "+name, func(ctx context.Context) (bool, error) {
		_, err := c.kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// benchNode is a kwok fake node: a Node object that kwok's controller keeps
// Ready and whose pods it runs.
func benchNode(name, scenarioNS, region string, maxPods int) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("512Gi"),
		corev1.ResourcePods:   *resource.NewQuantity(int64(maxPods), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				labelBenchNode:                  scenarioNS,
				"kubernetes.io/hostname":        name,
				"kubernetes.io/os":              "linux",
				"kubernetes.io/arch":            "amd64",
				"topology.kubernetes.io/region": region,
			},
		},
		Status: corev1.NodeStatus{Allocatable: res, Capacity: res},
	}
}

// createNodes creates n kwok nodes for the scenario in c and waits until
// kwok has made them Ready and they are schedulable.
func createNodes(ctx context.Context, c *cluster, scenarioNS string, n, maxPods int) error {
	for k := 0; k < n; k++ {
		name := fmt.Sprintf("%s-%s-n%d", scenarioNS, c.Context, k)
		if _, err := c.kube.CoreV1().Nodes().Create(ctx, benchNode(name, scenarioNS, c.Context, maxPods), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: node %s: %w", c.Context, name, err)
		}
	}
	return poll(ctx, 2*time.Minute, fmt.Sprintf("%s: %d bench nodes schedulable", c.Context, n), func(ctx context.Context) (bool, error) {
		nodes, err := c.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labelBenchNode + "=" + scenarioNS})
		if err != nil {
			return false, err
		}
		ready := 0
		for i := range nodes.Items {
			if schedulable(&nodes.Items[i]) {
				ready++
			}
		}
		return ready == n, nil
	})
}

// schedulable tells whether a node is Ready and rid of the taints that
// Kubernetes puts on nodes that are not (node.kubernetes.io/not-ready,
// which the API server's TaintNodesByCondition admission puts on every new
// node until kube-controller-manager sees it Ready, unreachable, ...). A
// scenario starting before would see its first pods fail to schedule and
// wait out their backoff: on a busy sandbox the controller manager took 5 s
// to untaint the virtual nodes of a T scenario, whose first 80 proxies were
// refused.
func schedulable(node *corev1.Node) bool {
	if node.Spec.Unschedulable {
		return false
	}
	for _, t := range node.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			return false
		}
	}
	return nodeutil.IsNodeReady(node)
}

func deleteNodes(ctx context.Context, c *cluster, scenarioNS string) error {
	return c.kube.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: labelBenchNode + "=" + scenarioNS})
}

// connectTargets makes cluster1 a source of the scenario's namespace with
// targets: itself (Target c1, self) and clusters 2..T, each through a
// Source c1 there and its credentials exported with `kubectl admiralty
// export`, as the Getting Started does. It waits until every Target is
// Ready and every virtual node schedulable (Ready, untainted) with the
// target's bench nodes counted.
func connectTargets(ctx context.Context, s *sandbox, used []*cluster, ns string, cpuPerTarget []int64) error {
	c1 := used[0]
	targetsYAML := []*v1alpha1.Target{{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Namespace: ns},
		Spec:       v1alpha1.TargetSpec{Self: true},
	}}
	for j, c := range used[1:] {
		name := fmt.Sprintf("c%d", j+2)
		src := &v1alpha1.Source{
			ObjectMeta: metav1.ObjectMeta{Name: "c1", Namespace: ns},
			Spec:       v1alpha1.SourceSpec{ServiceAccountName: "c1"},
		}
		if _, err := c.mc.MulticlusterV1alpha1().Sources(ns).Create(ctx, src, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: Source c1: %w", c.Context, err)
		}
		var secret corev1.Secret
		err := poll(ctx, time.Minute, c.Context+": kubectl admiralty export c1", func(ctx context.Context) (bool, error) {
			out, err := exec.CommandContext(ctx, filepath.Join(s.Bin, "kubectl-admiralty"), "export", "c1",
				"--kubeconfig", c.AdminKubeconfig, "--context", c.Context, "-n", ns, "--as", name).Output()
			if err != nil {
				return false, fmt.Errorf("%v: %s", err, errOutput(err))
			}
			return true, yaml.Unmarshal(out, &secret)
		})
		if err != nil {
			return err
		}
		secret.Namespace = ns
		if _, err := c1.kube.CoreV1().Secrets(ns).Create(ctx, &secret, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: Secret %s: %w", c1.Context, name, err)
		}
		targetsYAML = append(targetsYAML, &v1alpha1.Target{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       v1alpha1.TargetSpec{KubeconfigSecret: &v1alpha1.KubeconfigSecret{Name: name}},
		})
	}
	for _, t := range targetsYAML {
		if _, err := c1.mc.MulticlusterV1alpha1().Targets(ns).Create(ctx, t, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("%s: Target %s: %w", c1.Context, t.Name, err)
		}
	}
	for i, t := range targetsYAML {
		var vnode string
		err := poll(ctx, 2*time.Minute, "Target "+t.Name+" Ready", func(ctx context.Context) (bool, error) {
			got, err := c1.mc.MulticlusterV1alpha1().Targets(ns).Get(ctx, t.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			vnode = got.Status.VirtualNodeName
			cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
			if cond != nil && cond.Status != metav1.ConditionTrue {
				return false, fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
			return cond != nil && vnode != "", nil
		})
		if err != nil {
			return err
		}
		// The virtual node sums the target's Ready nodes from its
		// ClusterSummary: once it counts the bench nodes, the source's
		// scheduler can see them too.
		want := resource.NewQuantity(cpuPerTarget[i], resource.DecimalSI)
		err = poll(ctx, 2*time.Minute, "virtual node "+vnode+" schedulable with the bench nodes", func(ctx context.Context) (bool, error) {
			node, err := c1.kube.CoreV1().Nodes().Get(ctx, vnode, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			cpu := node.Status.Allocatable[corev1.ResourceCPU]
			return schedulable(node) && cpu.Cmp(*want) >= 0, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func errOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// clearPods removes what loads the API servers, before the next scenario:
// first the proxies (force-deleted: they have no kubelet to confirm), then
// the PodChaperons left (so that no delegate is made again), then every pod
// left (delegates, force-deleted too) and the kwok nodes, each cluster in
// parallel; the Events meanwhile, since nothing waits for them (then once
// more at the end, for any made since). Each step is one DeleteCollection (the
// sandbox's kube-apiservers delete 8 objects at once,
// --delete-collection-workers) instead of a request per object; it took as
// long (38-51 s for a T scenario at K = 1,000, 41-45 s before): the time
// goes into what each proxy's deletion sets off, not the requests. What is left for
// the namespace controller (Targets, Sources, Secrets, service accounts) is
// a handful of objects. A namespace's deletion alone would delete pods
// gracefully, which kwok acknowledges one by one, and do so while the next
// scenario runs.
func clearPods(ctx context.Context, used []*cluster, ns string, ours bool) error {
	zero := int64(0)
	force := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	start := time.Now()
	logged := func(c *cluster, what string, err error) error {
		if err == nil {
			log.Printf("cleanup %s: %s: %s deleted after %s", ns, c.Context, what, time.Since(start).Round(100*time.Millisecond))
		}
		return err
	}
	deletePods := func(c *cluster, selector string) error {
		what := strings.TrimSpace("pods " + selector)
		return logged(c, what, deleteCollection(ctx, c, ns, what, selector, force, c.kube.CoreV1().Pods(ns).DeleteCollection, nil))
	}
	// The Events of the pods: thousands, which the namespace controller
	// would delete while the next scenario runs. They go while the pods do,
	// then once more at the end, for any made since.
	var deleteEvents []func() error
	for _, c := range used {
		deleteEvents = append(deleteEvents, func() error {
			del := c.kube.CoreV1().Events(ns).DeleteCollection
			return logged(c, "Events", deleteCollection(ctx, c, ns, "Events", "", metav1.DeleteOptions{}, del, nil))
		})
	}
	events := make(chan error, 1)
	go func() { events <- parallel(deleteEvents) }()
	// The proxies first: for each, the delegator deletes its chaperon in
	// its target, which deleting the chaperons at the same time would
	// race (a second request for most). Then what is left of them.
	if err := deletePods(used[0], labelApp+"="+appName); err != nil {
		return errors.Join(err, <-events)
	}
	var fns []func() error
	if ours {
		for _, c := range used {
			fns = append(fns, func() error {
				del := c.mc.MulticlusterV1alpha1().PodChaperons(ns).DeleteCollection
				return logged(c, "PodChaperons", deleteCollection(ctx, c, ns, "PodChaperons", "", metav1.DeleteOptions{}, del, nil))
			})
		}
	}
	if err := parallel(fns); err != nil {
		return errors.Join(err, <-events)
	}
	fns = nil
	for _, c := range used {
		fns = append(fns, func() error {
			if err := deletePods(c, ""); err != nil {
				return err
			}
			if err := deleteNodes(ctx, c, ns); err != nil {
				return fmt.Errorf("%s: delete bench nodes: %w", c.Context, err)
			}
			err := poll(ctx, 2*time.Minute, c.Context+": no pod left in "+ns, func(ctx context.Context) (bool, error) {
				pods, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
				if err != nil {
					return false, err
				}
				if len(pods.Items) > 0 {
					// Made since the list (a chaperon's delegate in flight).
					return false, deletePods(c, "")
				}
				return true, nil
			})
			return err
		})
	}
	if err := errors.Join(parallel(fns), <-events); err != nil {
		return err
	}
	return parallel(deleteEvents)
}

// deleteCollection deletes every object of a kind in c's namespace ns
// (matching selector) with DeleteCollection, and unless list is nil, waits
// until it finds none (objects with finalizers). Over thousands of objects (K =
// 10,000) the API server takes longer than its request timeout (60 s) and
// cuts the request (a 504, or a reset stream): each request lists what is
// left, so asking again until one completes deletes everything.
func deleteCollection(ctx context.Context, c *cluster, ns, what, selector string, opts metav1.DeleteOptions,
	del func(context.Context, metav1.DeleteOptions, metav1.ListOptions) error,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error)) error {
	for {
		err := ignoreNotFound(del(ctx, opts, metav1.ListOptions{LabelSelector: selector}))
		if err == nil {
			break
		}
		var reset http2.StreamError
		cut := apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || errors.As(err, &reset)
		if !cut || ctx.Err() != nil {
			return fmt.Errorf("%s: delete %s: %w", c.Context, what, err)
		}
		log.Printf("%s: deleting %s of %s: %v; deleting what is left", c.Context, what, ns, err)
	}
	if list == nil {
		return nil
	}
	return poll(ctx, 5*time.Minute, c.Context+": "+what+" of "+ns+" deleted", func(ctx context.Context) (bool, error) {
		l, err := list(ctx, metav1.ListOptions{LabelSelector: selector, Limit: 1})
		return err == nil && meta.LenList(l) == 0, err
	})
}

// parallel runs fns at once and returns the first error.
func parallel(fns []func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteNamespaces deletes the scenario's namespaces (Targets, Sources,
// Secrets, service accounts) and waits until they are gone. The objects
// with finalizers go first, each kind waited for: cluster1's Targets, whose
// cleanup in the targets uses the credentials that the targets'
// namespaces hold, then the targets' Sources. The namespace controller,
// finding an object it cannot delete at once, looks again only 8 s later
// (its estimate for finalizers); with these gone, one pass deletes the rest.
// It runs while the next scenario does, as it costs the API servers little
// once the pods and Events are gone.
func deleteNamespaces(ctx context.Context, used []*cluster, ns string) error {
	c1 := used[0]
	targets := c1.mc.MulticlusterV1alpha1().Targets(ns)
	err := deleteCollection(ctx, c1, ns, "Targets", "", metav1.DeleteOptions{}, targets.DeleteCollection,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return targets.List(ctx, o) })
	if err != nil {
		return err
	}
	fns := make([]func() error, len(used))
	for i, c := range used {
		fns[i] = func() error {
			sources := c.mc.MulticlusterV1alpha1().Sources(ns)
			err := deleteCollection(ctx, c, ns, "Sources", "", metav1.DeleteOptions{}, sources.DeleteCollection,
				func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return sources.List(ctx, o) })
			if err != nil {
				return err
			}
			if err := ignoreNotFound(c.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})); err != nil {
				return fmt.Errorf("%s: delete namespace %s: %w", c.Context, ns, err)
			}
			return poll(ctx, 5*time.Minute, c.Context+": namespace "+ns+" deleted", func(ctx context.Context) (bool, error) {
				_, err := c.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
		}
	}
	return parallel(fns)
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// The seed's Getting Started, step by step with its own commands, in a
// namespace of its own: Source c1 in cluster2 and cluster3, the credentials
// exchanged with the kubectl+jq flow (cluster2) and `kubectl admiralty
// export` (cluster3), Targets c1 (self) and c2 in cluster1, the namespace
// label, the 10-replica nginx; then the Advanced Scheduling moves, and the
// delegate lifecycle.
func TestGettingStarted(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 8*time.Minute)
	ns := "gs-" + rand.String(5)
	for _, c := range sandbox.Clusters {
		createNamespace(t, c, ns)
	}

	applySource(t, c2, ns)
	applySource(t, c3, ns)
	// The seed's commands, verbatim but for waiting on the token.
	exchangeWithKubectlAndJq(t, ctx, ns, "cluster2", "c2")
	// And the one-pipe replacement of kubemcsa export.
	shell(t, ctx, fmt.Sprintf(`
until kubectl admiralty export c1 --context cluster3 -n %[1]s --as c3 >/dev/null; do sleep 0.5; done
kubectl admiralty export c1 --context cluster3 -n %[1]s --as c3 | kubectl --context cluster1 -n %[1]s apply -f -
`, ns))

	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c2
  namespace: %[1]s
spec:
  kubeconfigSecret:
    name: c2
---
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c1
  namespace: %[1]s
spec:
  self: true
`, ns))
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	vnode := func(name string) string { return "admiralty-namespace-" + ns + "-" + name }
	for _, name := range []string{"c1", "c2"} {
		waitTargetReady(ctx, t, mc1, ns, name)
		waitNodeReady(ctx, t, c1, vnode(name))
	}
	eventually(ctx, t, "the virtual node of c2 carries the region all of cluster2's nodes share", func(ctx context.Context) (bool, string, error) {
		node, err := c1.Client.CoreV1().Nodes().Get(ctx, vnode("c2"), metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got := node.Labels["topology.kubernetes.io/region"]
		return got == "eu", "region " + got, nil
	})

	// The seed expects the replicas split between two equal clusters.
	waitLeftoversGone(ctx, t)
	labelNamespace(t, c1, ns)
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  namespace: %s
spec:
  replicas: 10
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
      annotations:
        multicluster.admiralty.io/elect: ""
    spec:
      containers:
      - name: nginx
        image: nginx
        resources:
          requests:
            cpu: 100m
            memory: 32Mi
        ports:
        - containerPort: 80
`, ns))

	placement := waitPlacement(ctx, t, ns, 10, map[string]bool{"cluster1": true, "cluster2": true})
	t.Logf("nginx delegates: %v", placement)
	if placement["cluster1"] == 0 || placement["cluster2"] == 0 {
		t.Errorf("delegates %v, want them split across cluster1 and cluster2", placement)
	}
	checkDelegatesMatchOriginals(ctx, t, ns)

	// Advanced Scheduling: a region selector moves every delegate.
	patchSelector(ctx, t, c1, ns, `{"topology.kubernetes.io/region": "eu"}`)
	waitPlacement(ctx, t, ns, 10, map[string]bool{"cluster2": true})

	// Service Reroute and Globalization, with the seed's command; and an
	// ingress in front of the service, which follows its delegates.
	shell(t, ctx, fmt.Sprintf(`kubectl --context cluster1 -n %s expose deployment nginx`, ns))
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: nginx-tls, namespace: %[1]s}
stringData: {tls.crt: not-a-certificate, tls.key: not-a-key}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: nginx, namespace: %[1]s}
spec:
  defaultBackend: {service: {name: nginx, port: {number: 80}}}
  tls: [{secretName: nginx-tls}]
`, ns))
	checkServiceRerouted(ctx, t, ns)
	checkServiceCopy(ctx, t, c2, ns, true)
	checkIngressCopy(ctx, t, ns, map[string]bool{"cluster2": true})

	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c3
  namespace: %s
spec:
  kubeconfigSecret:
    name: c3
`, ns))
	waitNodeReady(ctx, t, c1, vnode("c3"))
	patchSelector(ctx, t, c1, ns, `{"topology.kubernetes.io/region": "ap"}`)
	waitPlacement(ctx, t, ns, 10, map[string]bool{"cluster3": true})
	// The global service is in every target; the ingress moves with the
	// delegates.
	checkServiceCopy(ctx, t, c3, ns, true)
	checkServiceCopy(ctx, t, c2, ns, false)
	checkIngressCopy(ctx, t, ns, map[string]bool{"cluster3": true})

	// A selector that no cluster matches: Pending, with per-target reasons.
	patchSelector(ctx, t, c1, ns, `{"topology.kubernetes.io/region": "mars"}`)
	eventually(ctx, t, "a proxy that fits nowhere explains why, per target", func(ctx context.Context) (bool, string, error) {
		pods, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
		if err != nil {
			return false, "", err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
				continue
			}
			events, err := podEvents(ctx, c1, p)
			if err != nil {
				return false, "", err
			}
			for _, e := range events {
				if e.Reason == "FailedScheduling" && strings.Contains(e.Message, "c1: 0/3 nodes") &&
					strings.Contains(e.Message, "c2: 0/3 nodes") && strings.Contains(e.Message, "c3: 0/3 nodes") {
					return true, "", nil
				}
			}
			return false, summarizeEvents(events), nil
		}
		return false, "no pending proxy yet", nil
	})

	// Back to the US: the delegate lifecycle.
	patchSelector(ctx, t, c1, ns, `{"topology.kubernetes.io/region": "us"}`)
	waitPlacement(ctx, t, ns, 10, map[string]bool{"cluster1": true})

	delegates := listDelegates(ctx, t, c1, ns)
	victim := delegates[0]
	if err := c1.Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	proxyName := lastSegment(victim.Annotations[v1alpha1.AnnotationProxyPod])
	proxyBefore, err := c1.Client.CoreV1().Pods(ns).Get(ctx, proxyName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "a deleted delegate is replaced and its proxy stays", func(ctx context.Context) (bool, string, error) {
		d, err := c1.Client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		p, err := c1.Client.CoreV1().Pods(ns).Get(ctx, proxyName, metav1.GetOptions{})
		if err != nil {
			return false, "", fmt.Errorf("the proxy is gone: %w", err)
		}
		return d.UID != victim.UID && d.Status.Phase == corev1.PodRunning && p.UID == proxyBefore.UID, string(d.Status.Phase), nil
	})

	if err := c1.Client.CoreV1().Pods(ns).Delete(ctx, proxyName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "deleting a proxy deletes its delegate", func(ctx context.Context) (bool, string, error) {
		_, err := c1.Client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})

	// A pod pinned to c3, then c3's Target deleted: its virtual node, the
	// proxy, the chaperon and the delegate in cluster3 all go.
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: pinned
  namespace: %s
  annotations:
    multicluster.admiralty.io/elect: ""
    multicluster.admiralty.io/clustername: c3
spec:
  containers:
  - name: main
    image: busybox
`, ns))
	eventually(ctx, t, "the pinned pod runs in cluster3", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "pinned", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Spec.NodeName == vnode("c3") && p.Status.Phase == corev1.PodRunning, p.Spec.NodeName + " " + string(p.Status.Phase), nil
	})
	if err := mc1.MulticlusterV1alpha1().Targets(ns).Delete(ctx, "c3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "deleting a Target removes its virtual node and leaves no orphan", func(ctx context.Context) (bool, string, error) {
		_, nodeErr := c1.Client.CoreV1().Nodes().Get(ctx, vnode("c3"), metav1.GetOptions{})
		_, proxyErr := c1.Client.CoreV1().Pods(ns).Get(ctx, "pinned", metav1.GetOptions{})
		chaperons, err := versioned.NewForConfigOrDie(c3.Config).MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, "", err
		}
		delegates, err := c3.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID})
		if err != nil {
			return false, "", err
		}
		_, targetErr := mc1.MulticlusterV1alpha1().Targets(ns).Get(ctx, "c3", metav1.GetOptions{})
		msg := fmt.Sprintf("node: %v, proxy: %v, target: %v, chaperons in cluster3: %d, delegates: %d", nodeErr, proxyErr, targetErr, len(chaperons.Items), len(delegates.Items))
		return apierrors.IsNotFound(nodeErr) && apierrors.IsNotFound(proxyErr) && apierrors.IsNotFound(targetErr) &&
			len(chaperons.Items) == 0 && len(delegates.Items) == 0, msg, nil
	})
	// Clean up while the targets are connected, so delegates go with their
	// proxies.
	_ = c1.Client.AppsV1().Deployments(ns).Delete(ctx, "nginx", metav1.DeleteOptions{})
	// No proxy left: the service gets its selector back, is no longer
	// global, and its copy goes from cluster2; cluster3's went with its
	// Target.
	eventually(ctx, t, "the service is restored and its copies deleted", func(ctx context.Context) (bool, string, error) {
		svc, err := c1.Client.CoreV1().Services(ns).Get(ctx, "nginx", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		_, copyErr := c2.Client.CoreV1().Services(ns).Get(ctx, "nginx", metav1.GetOptions{})
		msg := fmt.Sprintf("selector %v, annotations %v, copy in cluster2: %v", svc.Spec.Selector, svc.Annotations, copyErr)
		return cmp.Equal(svc.Spec.Selector, map[string]string{"app": "nginx"}) && svc.Annotations["io.cilium/global-service"] == "" &&
			apierrors.IsNotFound(copyErr), msg, nil
	})
	eventually(ctx, t, "the deleted Target c3 took the copies of the service and ingress", func(ctx context.Context) (bool, string, error) {
		_, svcErr := c3.Client.CoreV1().Services(ns).Get(ctx, "nginx", metav1.GetOptions{})
		_, ingErr := c3.Client.NetworkingV1().Ingresses(ns).Get(ctx, "nginx", metav1.GetOptions{})
		_, tlsErr := c3.Client.CoreV1().Secrets(ns).Get(ctx, "nginx-tls", metav1.GetOptions{})
		return apierrors.IsNotFound(svcErr) && apierrors.IsNotFound(ingErr) && apierrors.IsNotFound(tlsErr),
			fmt.Sprintf("service: %v, ingress: %v, TLS secret: %v", svcErr, ingErr, tlsErr), nil
	})
	eventually(ctx, t, "no delegate is left behind", func(ctx context.Context) (bool, string, error) {
		n := 0
		for _, c := range sandbox.Clusters {
			pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID})
			if err != nil {
				return false, "", err
			}
			n += len(pods.Items)
		}
		return n == 0, fmt.Sprintf("%d delegates", n), nil
	})
}

// checkServiceRerouted: the service of the proxies selects the delegates
// and is global.
func checkServiceRerouted(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	c1 := sandbox.Clusters[0]
	eventually(ctx, t, "the service is rerouted and global in cluster1", func(ctx context.Context) (bool, string, error) {
		svc, err := c1.Client.CoreV1().Services(ns).Get(ctx, "nginx", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		msg := fmt.Sprintf("selector %v, annotations %v", svc.Spec.Selector, svc.Annotations)
		return cmp.Equal(svc.Spec.Selector, map[string]string{v1alpha1.LabelPrefix + "app": "nginx"}) &&
			svc.Annotations["io.cilium/global-service"] == "true" &&
			svc.Annotations[v1alpha1.GroupName+"/original-selector"] == `{"app":"nginx"}`, msg, nil
	})
}

// checkServiceCopy: cluster c has a copy of the global service, with the
// delegates' selector, and its endpoints are the delegates' IPs there (some,
// or none if withDelegates is false).
func checkServiceCopy(ctx context.Context, t *testing.T, c *Cluster, ns string, withDelegates bool) {
	t.Helper()
	eventually(ctx, t, "a copy of the service in "+c.Context+" selects the delegates there", func(ctx context.Context) (bool, string, error) {
		svc, err := c.Client.CoreV1().Services(ns).Get(ctx, "nginx", metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		msg := fmt.Sprintf("selector %v, annotations %v, labels %v", svc.Spec.Selector, svc.Annotations, svc.Labels)
		return cmp.Equal(svc.Spec.Selector, map[string]string{v1alpha1.LabelPrefix + "app": "nginx"}) &&
			svc.Annotations["io.cilium/global-service"] == "true" &&
			svc.Labels[v1alpha1.GroupName+"/origin-cluster"] == "cluster1", msg, nil
	})
	eventually(ctx, t, "the endpoints of the service in "+c.Context+" are the delegates' IPs", func(ctx context.Context) (bool, string, error) {
		want := map[string]bool{}
		for _, d := range listDelegates(ctx, t, c, ns) {
			if d.Status.PodIP != "" {
				want[d.Status.PodIP] = true
			}
		}
		slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=nginx"})
		if err != nil {
			return false, "", err
		}
		got := map[string]bool{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					got[a] = true
				}
			}
		}
		return (len(want) > 0) == withDelegates && cmp.Equal(want, got), fmt.Sprintf("delegates %v, endpoints %v", keys(want), keys(got)), nil
	})
}

// checkIngressCopy: the ingress and its TLS secret are copied to the
// clusters that run its service's delegates, and only there.
func checkIngressCopy(ctx context.Context, t *testing.T, ns string, where map[string]bool) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("the ingress and its TLS secret are in %v only", keys(where)), func(ctx context.Context) (bool, string, error) {
		var wrong []string
		for _, c := range sandbox.Clusters[1:] {
			_, err := c.Client.NetworkingV1().Ingresses(ns).Get(ctx, "nginx", metav1.GetOptions{})
			if where[c.Context] != (err == nil) {
				wrong = append(wrong, fmt.Sprintf("%s ingress: %v", c.Context, err))
			}
			_, err = c.Client.CoreV1().Secrets(ns).Get(ctx, "nginx-tls", metav1.GetOptions{})
			if where[c.Context] != (err == nil) {
				wrong = append(wrong, fmt.Sprintf("%s secret: %v", c.Context, err))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "; "), nil
	})
}

func createNamespace(t *testing.T, c *Cluster, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: %v", c.Context, err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	eventually(testContext(t, 30*time.Second), t, "default service account in "+name, func(ctx context.Context) (bool, string, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err), nil
	})
}

func labelNamespace(t *testing.T, c *Cluster, ns string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"multicluster-scheduler":"enabled"}}}`)
	if _, err := c.Client.CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// The label reaches admission through caches (the API server's for the
	// webhook's namespaceSelector, the delegator's namespace informer): a
	// pod created at once may still pass as an ordinary pod, as CI saw
	// once. Wait until an elected pod created now (dry run) is a proxy.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "label-probe", Namespace: ns, Annotations: map[string]string{v1alpha1.AnnotationElect: ""}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "registry.k8s.io/pause:3.10"}}},
	}
	eventually(ctx, t, "namespace "+ns+" enabled in admission", func(ctx context.Context) (bool, string, error) {
		got, err := c.Client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error(), nil
		}
		return got.Labels[v1alpha1.LabelIsProxy] == "true", "an elected pod is not made a proxy yet", nil
	})
}

// shell runs a script with the sandbox's kubeconfig and bin/ first on PATH
// (kubectl, kubectl-admiralty).
func shell(t *testing.T, ctx context.Context, script string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+sandbox.Kubeconfig, "PATH="+sandbox.Bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("script failed: %v\n%s\n--- script:\n%s", err, out, script)
	}
	return string(out)
}

func kubectlApply(t *testing.T, c *Cluster, manifest string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(sandbox.Bin, "kubectl"), "--kubeconfig", c.AdminKubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: kubectl apply: %v\n%s", c.Context, err, out)
	}
}

func waitTargetReady(ctx context.Context, t *testing.T, mc versioned.Interface, ns, name string) {
	t.Helper()
	eventually(ctx, t, "Target "+name+" Ready", func(ctx context.Context) (bool, string, error) {
		tg, err := mc.MulticlusterV1alpha1().Targets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, c := range tg.Status.Conditions {
			if c.Type == v1alpha1.ConditionReady {
				return c.Status == metav1.ConditionTrue, c.Reason + ": " + c.Message, nil
			}
		}
		return false, "no Ready condition", nil
	})
}

func waitNodeReady(ctx context.Context, t *testing.T, c *Cluster, name string) {
	t.Helper()
	eventually(ctx, t, "virtual node "+name+" Ready", func(ctx context.Context) (bool, string, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, string(cond.Status), nil
			}
		}
		return false, "no Ready condition", nil
	})
}

func patchSelector(ctx context.Context, t *testing.T, c *Cluster, ns, selector string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":%s}}}}`, selector)
	if _, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, "nginx", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// listDelegates lists the Running delegates of namespace ns in cluster c.
func listDelegates(ctx context.Context, t *testing.T, c *Cluster, ns string) []corev1.Pod {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelPrefix + "app=nginx"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// waitPlacement waits until the Deployment has `want` Running proxies on
// virtual nodes and as many Running delegates, all in the allowed
// clusters, and no other proxy or delegate; it returns delegates per cluster.
func waitPlacement(ctx context.Context, t *testing.T, ns string, want int, allowed map[string]bool) map[string]int {
	t.Helper()
	c1 := sandbox.Clusters[0]
	var placement map[string]int
	eventually(ctx, t, fmt.Sprintf("%d proxies Running with their delegates in %v", want, keys(allowed)), func(ctx context.Context) (bool, string, error) {
		dep, err := c1.Client.AppsV1().Deployments(ns).Get(ctx, "nginx", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		proxies, err := c1.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
		if err != nil {
			return false, "", err
		}
		running := 0
		for _, p := range proxies.Items {
			if p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "admiralty-") && p.DeletionTimestamp == nil {
				running++
			}
		}
		placement = map[string]int{}
		total, misplaced := 0, 0
		for _, c := range sandbox.Clusters {
			n := len(listDelegates(ctx, t, c, ns))
			if n > 0 {
				placement[c.Context] = n
			}
			total += n
			if !allowed[c.Context] {
				misplaced += n
			}
		}
		msg := fmt.Sprintf("proxies %d/%d Running (of %d listed), delegates %v, rollout updated %d available %d",
			running, want, len(proxies.Items), placement, dep.Status.UpdatedReplicas, dep.Status.AvailableReplicas)
		done := running == want && len(proxies.Items) == want && total == want && misplaced == 0 &&
			dep.Status.UpdatedReplicas == int32(want) && dep.Status.ObservedGeneration == dep.Generation
		return done, msg, nil
	})
	return placement
}

// checkDelegatesMatchOriginals compares each delegate's spec with the
// original manifest saved on its proxy.
func checkDelegatesMatchOriginals(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	c1 := sandbox.Clusters[0]
	for _, c := range sandbox.Clusters {
		for _, d := range listDelegates(ctx, t, c, ns) {
			proxy, err := c1.Client.CoreV1().Pods(ns).Get(ctx, lastSegment(d.Annotations[v1alpha1.AnnotationProxyPod]), metav1.GetOptions{})
			if err != nil {
				t.Errorf("delegate %s/%s: its proxy: %v", c.Context, d.Name, err)
				continue
			}
			original := &corev1.Pod{}
			if err := json.Unmarshal([]byte(proxy.Annotations[v1alpha1.AnnotationSourcePodManifest]), original); err != nil {
				t.Errorf("proxy %s: saved manifest: %v", proxy.Name, err)
				continue
			}
			opts := cmp.Options{}
			if diff := cmp.Diff(containersOf(original), containersOf(&d), opts); diff != "" {
				t.Errorf("delegate %s/%s containers differ from the original (-original +delegate):\n%s", c.Context, d.Name, diff)
			}
			if diff := cmp.Diff(original.Spec.NodeSelector, d.Spec.NodeSelector); diff != "" {
				t.Errorf("delegate %s/%s node selector differs (-original +delegate):\n%s", c.Context, d.Name, diff)
			}
		}
	}
}

// containersOf strips what the target's admission adds (the service
// account token mount), to compare what the user wrote.
func containersOf(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range p.Spec.Containers {
		c = *c.DeepCopy()
		var mounts []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if !strings.HasPrefix(m.Name, "kube-api-access-") {
				mounts = append(mounts, m)
			}
		}
		c.VolumeMounts = mounts
		out = append(out, c)
	}
	return out
}

func lastSegment(s string) string {
	return s[strings.LastIndex(s, "/")+1:]
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

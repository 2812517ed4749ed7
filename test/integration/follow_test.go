package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/follow"
)

// federate makes a namespace of the same name in every cluster, with
// Source c1 in cluster2 and cluster3 and Targets c2 and c3 in cluster1 (the
// Getting Started's, without the self target), and returns its name.
func federate(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ns := namespace(t, c1, prefix, map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"})
	for _, c := range []*Cluster{c2, c3} {
		createNamespace(t, c, ns)
		applySource(t, c, ns)
	}
	shell(t, ctx, fmt.Sprintf(`
for i in 2 3; do
  until kubectl admiralty export c1 --context cluster$i -n %[1]s --as c$i >/dev/null; do sleep 0.5; done
  kubectl admiralty export c1 --context cluster$i -n %[1]s --as c$i | kubectl --context cluster1 -n %[1]s apply -f -
done
`, ns))
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata: {name: c2, namespace: %[1]s}
spec: {kubeconfigSecret: {name: c2}}
---
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata: {name: c3, namespace: %[1]s}
spec: {kubeconfigSecret: {name: c3}}
`, ns))
	mc1 := versioned.NewForConfigOrDie(c1.Config)
	// Cleanups run last-registered first: the Targets go, cleaning up in
	// their targets, before the namespaces (and the Sources) do.
	t.Cleanup(func() {
		ctx := testContext(t, time.Minute)
		for _, name := range []string{"c2", "c3"} {
			_ = mc1.MulticlusterV1alpha1().Targets(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		eventually(ctx, t, "the Targets are gone", func(ctx context.Context) (bool, string, error) {
			list, err := mc1.MulticlusterV1alpha1().Targets(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, "", err
			}
			return len(list.Items) == 0, fmt.Sprintf("%d left", len(list.Items)), nil
		})
	})
	for _, name := range []string{"c2", "c3"} {
		waitTargetReady(ctx, t, mc1, ns, name)
		waitNodeReady(ctx, t, c1, "admiralty-namespace-"+ns+"-"+name)
	}
	return ns
}

// creations records the resourceVersion at which objects were created in
// a cluster (one etcd: creations are ordered by it), from watches started
// before anything is created.
type creations struct {
	mu sync.Mutex
	rv map[string]int64
}

func watchCreations(ctx context.Context, t *testing.T, c *Cluster, ns string) *creations {
	t.Helper()
	cr := &creations{rv: map[string]int64{}}
	starts := []func(context.Context) (watch.Interface, error){
		func(ctx context.Context) (watch.Interface, error) {
			return c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentClusterName})
		},
		func(ctx context.Context) (watch.Interface, error) {
			return c.Client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: follow.LabelOriginCluster})
		},
		func(ctx context.Context) (watch.Interface, error) {
			return c.Client.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{LabelSelector: follow.LabelOriginCluster})
		},
	}
	for _, start := range starts {
		w, err := start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		go func() {
			for ev := range w.ResultChan() {
				if ev.Type != watch.Added {
					continue
				}
				m, ok := ev.Object.(metav1.Object)
				if !ok {
					continue
				}
				rv, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
				kind := fmt.Sprintf("%T", ev.Object)
				cr.mu.Lock()
				if _, seen := cr.rv[kind+"/"+m.GetName()]; !seen {
					cr.rv[kind+"/"+m.GetName()] = rv
				}
				cr.mu.Unlock()
			}
		}()
	}
	return cr
}

func (cr *creations) get(key string) (int64, bool) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	rv, ok := cr.rv[key]
	return rv, ok
}

// A pod that uses a config map (env and volume) and secrets (envFrom and
// imagePullSecrets) runs in cluster2 with copies made there before its
// delegate, none in cluster3; an edit of the config map reaches the copy;
// deleting the pod removes the copies.
func TestFollowConfigMapsAndSecrets(t *testing.T) {
	c1, c2, c3 := sandbox.Clusters[0], sandbox.Clusters[1], sandbox.Clusters[2]
	ctx := testContext(t, 4*time.Minute)
	ns := federate(ctx, t, "follow")
	created := watchCreations(ctx, t, c2, ns)

	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: ConfigMap
metadata: {name: conf, namespace: %[1]s, labels: {team: a}}
data: {greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: %[1]s}
stringData: {PASSWORD: s3cret}
---
apiVersion: v1
kind: Secret
metadata: {name: registry, namespace: %[1]s}
type: kubernetes.io/dockerconfigjson
stringData: {.dockerconfigjson: '{"auths":{}}'}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: %[1]s
  annotations:
    multicluster.admiralty.io/elect: ""
    multicluster.admiralty.io/clustername: c2
spec:
  imagePullSecrets: [{name: registry}]
  containers:
  - name: main
    image: busybox
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: conf, key: greeting}}
    envFrom:
    - secretRef: {name: creds}
    volumeMounts: [{name: conf, mountPath: /etc/conf}]
  volumes:
  - name: conf
    configMap: {name: conf}
`, ns))

	eventually(ctx, t, "the pod runs in cluster2", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Status.Phase == corev1.PodRunning && strings.HasSuffix(p.Spec.NodeName, "-c2"), p.Spec.NodeName + " " + string(p.Status.Phase), nil
	})

	origin := func(obj metav1.Object, name string) error {
		l := obj.GetLabels()
		want := map[string]string{follow.LabelOriginCluster: "cluster1", follow.LabelOriginNamespace: ns, follow.LabelOriginName: name}
		for k, v := range want {
			if l[k] != v {
				return fmt.Errorf("%s: label %s=%q, want %q", name, k, l[k], v)
			}
		}
		if l[follow.LabelOriginUID] == "" {
			return fmt.Errorf("%s: no origin UID", name)
		}
		return nil
	}
	cm, err := c2.Client.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the config map's copy in cluster2: %v", err)
	}
	if err := origin(cm, "conf"); err != nil {
		t.Error(err)
	}
	if cm.Data["greeting"] != "hello" || cm.Labels["team"] != "a" {
		t.Errorf("copy of conf: data %v labels %v", cm.Data, cm.Labels)
	}
	for _, name := range []string{"creds", "registry"} {
		s, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the copy of secret %s in cluster2: %v", name, err)
		}
		if err := origin(s, name); err != nil {
			t.Error(err)
		}
	}
	if s, _ := c2.Client.CoreV1().Secrets(ns).Get(ctx, "registry", metav1.GetOptions{}); s != nil && s.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("copy of registry has type %s", s.Type)
	}
	if s, _ := c2.Client.CoreV1().Secrets(ns).Get(ctx, "creds", metav1.GetOptions{}); s != nil && string(s.Data["PASSWORD"]) != "s3cret" {
		t.Errorf("copy of creds has data %v", s.Data)
	}

	// Made before the delegate: their creations come first in cluster2's
	// etcd.
	delegates, err := c2.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentClusterName})
	if err != nil || len(delegates.Items) != 1 {
		t.Fatalf("delegates in cluster2: %v, %v", delegates, err)
	}
	delegate := delegates.Items[0].Name
	eventually(ctx, t, "the watches saw the creations", func(context.Context) (bool, string, error) {
		_, a := created.get("*v1.Pod/" + delegate)
		_, b := created.get("*v1.ConfigMap/conf")
		_, c := created.get("*v1.Secret/creds")
		_, d := created.get("*v1.Secret/registry")
		return a && b && c && d, fmt.Sprint(created.rv), nil
	})
	podRV, _ := created.get("*v1.Pod/" + delegate)
	for _, key := range []string{"*v1.ConfigMap/conf", "*v1.Secret/creds", "*v1.Secret/registry"} {
		if rv, _ := created.get(key); rv >= podRV {
			t.Errorf("%s was created at resourceVersion %d, after the delegate (%d)", key, rv, podRV)
		}
	}

	// Only where used.
	if _, err := c3.Client.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("config map conf in cluster3, which runs no pod using it: %v", err)
	}
	for _, name := range []string{"creds", "registry"} {
		if _, err := c3.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("secret %s in cluster3, which runs no pod using it: %v", name, err)
		}
	}

	// Another source's write over this copy is refused by cluster2's API
	// server (the admission policy), as any write that would make an
	// object a copy of another origin.
	other := cm.DeepCopy()
	other.Labels[follow.LabelOriginCluster] = "cluster3"
	other.Data = map[string]string{"greeting": "from cluster3"}
	if _, err := c2.Client.CoreV1().ConfigMaps(ns).Update(ctx, other, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("updating cluster1's copy as cluster3's: %v, want Forbidden", err)
	}

	// Kept in sync.
	patch := []byte(`{"data":{"greeting":"bonjour"}}`)
	if _, err := c1.Client.CoreV1().ConfigMaps(ns).Patch(ctx, "conf", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the copy follows the edit", func(ctx context.Context) (bool, string, error) {
		cm, err := c2.Client.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return cm.Data["greeting"] == "bonjour", cm.Data["greeting"], nil
	})

	// Gone with the last pod that used them.
	if err := c1.Client.CoreV1().Pods(ns).Delete(ctx, "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the copies go with the last delegate that used them", func(ctx context.Context) (bool, string, error) {
		var left []string
		if _, err := c2.Client.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("conf (%v)", err))
		}
		for _, name := range []string{"creds", "registry"} {
			if _, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, fmt.Sprintf("%s (%v)", name, err))
			}
		}
		return len(left) == 0, strings.Join(left, ", "), nil
	})
	// The originals stay.
	if _, err := c1.Client.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{}); err != nil {
		t.Errorf("the original config map: %v", err)
	}
}

// An object of the same name that cluster2 had before is reported, never
// overwritten, and the delegate is not made with it: the target refuses
// the candidate, saying why.
func TestFollowConflict(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 4*time.Minute)
	ns := federate(ctx, t, "follow-conflict")
	kubectlApply(t, c2, fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: taken, namespace: %[1]s}
stringData: {owner: cluster2}
`, ns))
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata: {name: taken, namespace: %[1]s}
stringData: {owner: cluster1}
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: %[1]s
  annotations:
    multicluster.admiralty.io/elect: ""
    multicluster.admiralty.io/clustername: c2
spec:
  containers:
  - name: main
    image: busybox
    envFrom: [{secretRef: {name: taken}}]
`, ns))

	proxy, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the proxy says that cluster2 refuses it, and why", func(ctx context.Context) (bool, string, error) {
		events, err := podEvents(ctx, c1, proxy)
		if err != nil {
			return false, "", err
		}
		for _, e := range events {
			if e.Reason == "FailedScheduling" && strings.Contains(e.Message, "Secret "+ns+"/taken exists in this cluster and is not the copy of cluster1's") {
				return true, "", nil
			}
		}
		return false, summarizeEvents(events), nil
	})
	eventually(ctx, t, "the conflict is an Event on the source's secret", func(ctx context.Context) (bool, string, error) {
		list, err := c1.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Secret,involvedObject.name=taken"})
		if err != nil {
			return false, "", err
		}
		return len(list.Items) > 0 && list.Items[0].Reason == follow.ReasonFollowConflict, summarizeEvents(list.Items), nil
	})
	mc2 := versioned.NewForConfigOrDie(c2.Config)
	eventually(ctx, t, "cluster2 says so on a chaperon, with an Event", func(ctx context.Context) (bool, string, error) {
		list, err := c2.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=PodChaperon"})
		if err != nil {
			return false, "", err
		}
		for _, e := range list.Items {
			if e.Reason == "DelegateRejected" && strings.Contains(e.Message, "is not the copy of cluster1's") {
				return true, "", nil
			}
		}
		return false, summarizeEvents(list.Items), nil
	})
	chaperons, err := mc2.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chaperons.Items {
		if cond := podCondition(ch.Status.Conditions, corev1.PodScheduled); cond != nil && cond.Status == corev1.ConditionTrue {
			t.Errorf("chaperon %s was accepted", ch.Name)
		}
	}
	delegates, err := c2.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentClusterName})
	if err != nil {
		t.Fatal(err)
	}
	if len(delegates.Items) != 0 {
		t.Errorf("%d delegates in cluster2, want none: none may use cluster2's secret", len(delegates.Items))
	}
	s, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, "taken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data["owner"]) != "cluster2" || follow.IsCopy(s) {
		t.Errorf("cluster2's secret was overwritten: data %v, labels %v", s.Data, s.Labels)
	}
}

// A reference the source cannot send is not waited for: a config map it
// does not have, or a service account token (a delegate never gets the
// source's credentials). The delegate runs as the pod would in one cluster,
// and nothing is copied.
func TestFollowNothingToSend(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 4*time.Minute)
	ns := federate(ctx, t, "follow-nothing")
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Secret
metadata:
  name: token
  namespace: %[1]s
  annotations: {kubernetes.io/service-account.name: default}
type: kubernetes.io/service-account-token
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: %[1]s
  annotations:
    multicluster.admiralty.io/elect: ""
    multicluster.admiralty.io/clustername: c2
spec:
  containers:
  - name: main
    image: busybox
    env:
    - name: OPTIONAL
      valueFrom: {configMapKeyRef: {name: absent, key: k, optional: true}}
    volumeMounts: [{name: token, mountPath: /var/run/token}]
  volumes:
  - name: token
    secret: {secretName: token}
`, ns))
	eventually(ctx, t, "the pod runs in cluster2", func(ctx context.Context) (bool, string, error) {
		p, err := c1.Client.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return p.Status.Phase == corev1.PodRunning && strings.HasSuffix(p.Spec.NodeName, "-c2"), p.Spec.NodeName + " " + string(p.Status.Phase), nil
	})
	chaperons, err := versioned.NewForConfigOrDie(c2.Config).MulticlusterV1alpha1().PodChaperons(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(chaperons.Items) != 1 {
		t.Fatalf("chaperons in cluster2: %v, %v", chaperons, err)
	}
	if got, ok := chaperons.Items[0].Annotations[follow.AnnotationFollowed]; !ok || got != "" {
		t.Errorf("annotation %s = %q (set: %v), want set and empty: nothing was sent", follow.AnnotationFollowed, got, ok)
	}
	if _, err := c2.Client.CoreV1().Secrets(ns).Get(ctx, "token", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the source's service account token in cluster2: %v", err)
	}
	copies, err := c2.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: follow.LabelOriginCluster})
	if err != nil {
		t.Fatal(err)
	}
	if len(copies.Items) != 0 {
		t.Errorf("%d config maps copied to cluster2, want none", len(copies.Items))
	}
}

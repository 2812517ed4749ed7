package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/chaperon"
)

// sourceChaperon is a PodChaperon as a source's scheduler sends it: the
// contract's labels and annotations, the original pod's labels prefixed,
// and the delegate's spec for the target's candidate scheduler.
func sourceChaperon(ns, name, cpu string) *v1alpha1.PodChaperon {
	return &v1alpha1.PodChaperon{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{
				v1alpha1.LabelParentClusterName: "test-source",
				v1alpha1.LabelParentUID:         rand.String(10),
				v1alpha1.LabelPrefix + "app":    "web",
			},
			Annotations: map[string]string{
				v1alpha1.AnnotationParentNamespace: ns,
				v1alpha1.AnnotationParentName:      "web",
				v1alpha1.AnnotationProxyPod:        "test-source/" + ns + "/web",
			},
		},
		Spec: corev1.PodSpec{
			SchedulerName: v1alpha1.CandidateSchedulerName,
			Containers: []corev1.Container{{
				Name:  "main",
				Image: "nginx",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: mustParse(cpu), corev1.ResourceMemory: mustParse("32Mi"),
				}},
			}},
		},
	}
}

// A chaperon becomes a delegate that the target's own scheduler places on
// a real node; the chaperon mirrors its status and node; a deleted delegate
// is made again, a spec change is ignored with an Event, and deleting the
// chaperon deletes the delegate.
func TestChaperonLifecycle(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 3*time.Minute)
	ns := namespace(t, c2, "chaperon", nil)
	mc := versioned.NewForConfigOrDie(c2.Config)
	chaperons := mc.MulticlusterV1alpha1().PodChaperons(ns)

	ch, err := chaperons.Create(ctx, sourceChaperon(ns, "web-x1", "100m"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := waitDelegateRunning(ctx, t, c2, ns, "web-x1", "")

	// The delegate is the chaperon's: metadata copied, owned for garbage
	// collection, scheduled by the candidate profile onto a kwok node.
	// (The target adds to them: the API server copies the node's topology
	// labels to a pod when binding it.)
	for k, v := range ch.Labels {
		if got, ok := first.Labels[k]; !ok || got != v {
			t.Errorf("delegate label %s = %q, want the chaperon's %q", k, got, v)
		}
	}
	for k, v := range ch.Annotations {
		if got, ok := first.Annotations[k]; !ok || got != v {
			t.Errorf("delegate annotation %s = %q, want the chaperon's %q", k, got, v)
		}
	}
	owner := metav1.GetControllerOf(first)
	if owner == nil || owner.Kind != "PodChaperon" || owner.UID != ch.UID || owner.BlockOwnerDeletion == nil || !*owner.BlockOwnerDeletion {
		t.Errorf("delegate controller = %+v, want the chaperon (uid %s) with blockOwnerDeletion", owner, ch.UID)
	}
	if first.Spec.SchedulerName != v1alpha1.CandidateSchedulerName {
		t.Errorf("delegate schedulerName = %q, want %q", first.Spec.SchedulerName, v1alpha1.CandidateSchedulerName)
	}
	checkRealNode(ctx, t, c2, first.Spec.NodeName)

	// The source learns from the chaperon: PodScheduled=True, Running, and
	// the node.
	eventually(ctx, t, "chaperon status mirrors the running delegate", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "web-x1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		scheduled := podCondition(got.Status.Conditions, corev1.PodScheduled)
		ok := got.Status.Phase == corev1.PodRunning && scheduled != nil && scheduled.Status == corev1.ConditionTrue &&
			got.Status.NodeName == first.Spec.NodeName && got.Status.PodIP != ""
		return ok, fmt.Sprintf("phase %s, PodScheduled %+v, status.nodeName %q, podIP %q", got.Status.Phase, scheduled, got.Status.NodeName, got.Status.PodIP), nil
	})

	// Deleted before it finished: a new delegate, scheduled anew.
	if err := c2.Client.CoreV1().Pods(ns).Delete(ctx, "web-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := waitDelegateRunning(ctx, t, c2, ns, "web-x1", first.UID)
	if second.Spec.SchedulerName != v1alpha1.CandidateSchedulerName {
		t.Errorf("recreated delegate schedulerName = %q, want %q", second.Spec.SchedulerName, v1alpha1.CandidateSchedulerName)
	}
	checkRealNode(ctx, t, c2, second.Spec.NodeName)
	waitEvent(ctx, t, c2, ns, "PodChaperon", "web-x1", chaperon.ReasonDelegateRecreated)
	// The chaperon's status is the new delegate's, node included.
	eventually(ctx, t, "chaperon status mirrors the recreated delegate", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "web-x1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ok := got.Status.Phase == corev1.PodRunning && got.Status.NodeName == second.Spec.NodeName && got.Status.PodIP == second.Status.PodIP
		return ok, fmt.Sprintf("phase %s, status.nodeName %q (want %q), podIP %q (want %q)", got.Status.Phase, got.Status.NodeName, second.Spec.NodeName, got.Status.PodIP, second.Status.PodIP), nil
	})

	// A pod's spec cannot change: the delegate stays, with an Event.
	patch := []byte(`{"spec":{"containers":[{"name":"main","image":"nginx:2"}]}}`)
	if _, err := chaperons.Patch(ctx, "web-x1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(ctx, t, c2, ns, "PodChaperon", "web-x1", chaperon.ReasonSpecChangeIgnored)
	if p, err := c2.Client.CoreV1().Pods(ns).Get(ctx, "web-x1", metav1.GetOptions{}); err != nil || p.UID != second.UID || p.Spec.Containers[0].Image != "nginx" {
		t.Errorf("after a spec change, delegate = %s (err %v), want the same pod %s with image nginx", describePod(p), err, second.UID)
	}

	// Deleting the chaperon deletes the delegate (garbage collection).
	if err := chaperons.Delete(ctx, "web-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the delegate goes with its chaperon", func(ctx context.Context) (bool, string, error) {
		p, err := c2.Client.CoreV1().Pods(ns).Get(ctx, "web-x1", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, describePod(p), err
	})
}

// A delegate that finished is never run again, even once deleted; the
// chaperon keeps its final status.
func TestChaperonFinishedDelegateIsNotRerun(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 2*time.Minute)
	ns := namespace(t, c2, "chaperon-done", nil)
	mc := versioned.NewForConfigOrDie(c2.Config)
	chaperons := mc.MulticlusterV1alpha1().PodChaperons(ns)
	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "job-x1", "100m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitDelegateRunning(ctx, t, c2, ns, "job-x1", "")

	// kwok plays the containers: finish the pod as a kubelet would.
	done := pod.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	if _, err := c2.Client.CoreV1().Pods(ns).UpdateStatus(ctx, done, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "chaperon shows Succeeded", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "job-x1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return got.Status.Phase == corev1.PodSucceeded, string(got.Status.Phase), nil
	})
	if err := c2.Client.CoreV1().Pods(ns).Delete(ctx, "job-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// The absence of a new pod can only be shown by waiting: a recreation
	// takes well under a second when it happens (see the lifecycle test).
	watchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := c2.Client.CoreV1().Pods(ns).Watch(watchCtx, metav1.ListOptions{FieldSelector: "metadata.name=job-x1"})
	if err != nil {
		t.Fatal(err)
	}
	for e := range w.ResultChan() {
		if p, ok := e.Object.(*corev1.Pod); ok && p.UID != pod.UID {
			t.Fatalf("a finished delegate was run again: %s", describePod(p))
		}
	}
	w.Stop()

	got, err := chaperons.Get(ctx, "job-x1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodSucceeded {
		t.Errorf("chaperon phase after the delegate's deletion = %s, want Succeeded", got.Status.Phase)
	}
}

// A chaperon that fits no node of the target is refused by the target's
// scheduler: PodScheduled=False, reason Unschedulable, with its message.
func TestChaperonUnschedulable(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, time.Minute)
	ns := namespace(t, c2, "chaperon-big", nil)
	mc := versioned.NewForConfigOrDie(c2.Config)
	chaperons := mc.MulticlusterV1alpha1().PodChaperons(ns)
	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "big-x1", "100"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "chaperon shows the target refuses the candidate", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "big-x1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		c := podCondition(got.Status.Conditions, corev1.PodScheduled)
		ok := c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable &&
			strings.Contains(c.Message, "Insufficient cpu") && got.Status.Phase == corev1.PodPending
		return ok, fmt.Sprintf("phase %s, PodScheduled %+v", got.Status.Phase, c), nil
	})
}

// A spec that the API server rejects as a pod is reported on the chaperon
// (a refusal with the API error, and an Event), once: no retry loop while
// nothing changes.
func TestChaperonRejectedSpec(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, time.Minute)
	ns := namespace(t, c2, "chaperon-bad", nil)
	mc := versioned.NewForConfigOrDie(c2.Config)
	chaperons := mc.MulticlusterV1alpha1().PodChaperons(ns)
	bad := sourceChaperon(ns, "bad-x1", "100m")
	bad.Spec.Containers[0].Name = "Not_A_DNS_Label"
	if _, err := chaperons.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var rv string
	eventually(ctx, t, "chaperon shows why its delegate cannot be created", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "bad-x1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		rv = got.ResourceVersion
		c := podCondition(got.Status.Conditions, corev1.PodScheduled)
		ok := c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable &&
			strings.Contains(c.Message, "is invalid") && strings.Contains(c.Message, "Not_A_DNS_Label")
		return ok, fmt.Sprintf("PodScheduled %+v", c), nil
	})
	waitEvent(ctx, t, c2, ns, "PodChaperon", "bad-x1", chaperon.ReasonDelegateRejected)

	// Nothing changes, so nothing is written again.
	time.Sleep(3 * time.Second)
	got, err := chaperons.Get(ctx, "bad-x1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != rv {
		t.Errorf("the chaperon of a rejected spec was written again (resourceVersion %s, then %s)", rv, got.ResourceVersion)
	}
	events, err := c2.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=PodChaperon,involvedObject.name=bad-x1,reason=" + chaperon.ReasonDelegateRejected,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 1 || events.Items[0].Count > 1 {
		t.Errorf("%s Events = %s, want one, once", chaperon.ReasonDelegateRejected, summarizeEvents(events.Items))
	}
	if _, err := c2.Client.CoreV1().Pods(ns).Get(ctx, "bad-x1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a delegate exists for a rejected spec (err %v)", err)
	}
}

// waitDelegateRunning waits for the delegate ns/name, other than the pod
// of UID not, to run on a node, and returns it.
func waitDelegateRunning(ctx context.Context, t *testing.T, c *Cluster, ns, name string, not types.UID) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(ctx, t, "delegate "+ns+"/"+name+" running", func(ctx context.Context) (bool, string, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no pod", nil
		}
		if err != nil {
			return false, "", err
		}
		pod = p
		return p.UID != not && p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning, describePod(p), nil
	})
	return pod
}

// checkRealNode fails unless name is one of the cluster's kwok nodes (not
// a virtual node).
func checkRealNode(ctx context.Context, t *testing.T, c *Cluster, name string) {
	t.Helper()
	n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %q of the delegate: %v", name, err)
	}
	if n.Labels["type"] != "kwok" || n.Labels[v1alpha1.LabelVirtualKubeletProvider] != "" {
		t.Errorf("delegate runs on %s (labels %v), want a real (kwok) node", name, n.Labels)
	}
}

func podCondition(conds []corev1.PodCondition, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

func describePod(p *corev1.Pod) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s uid %s phase %s node %q deleting %v", p.Name, p.UID, p.Status.Phase, p.Spec.NodeName, p.DeletionTimestamp != nil)
}

// The source's verdict does not wait for the delegate to run: a delegate
// bound but not started (its kubelet, kwok here, paused) is told on the
// chaperon, its node and PodScheduled, while Pending; its start follows.
func TestChaperonVerdictBeforeTheDelegateStarts(t *testing.T) {
	c2 := sandbox.Clusters[1]
	ctx := testContext(t, 2*time.Minute)
	ns := namespace(t, c2, "chaperon-verdict", nil)
	chaperons := versioned.NewForConfigOrDie(c2.Config).MulticlusterV1alpha1().PodChaperons(ns)

	kwok := component{name: c2.Context + " kwok", pidFile: filepath.Join(c2.KwokWorkdir, "pids", "kwok-controller.pid")}
	pid := kwok.pid()
	if pid <= 0 || !kwok.alive() {
		t.Fatalf("%s: no running process in %s", kwok.name, kwok.pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("pausing %s: %v", kwok.name, err)
	}
	paused := true
	resume := func() {
		if paused {
			paused = false
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("resuming %s: %v", kwok.name, err)
			}
		}
	}
	t.Cleanup(resume)

	if _, err := chaperons.Create(ctx, sourceChaperon(ns, "web-v1", "100m"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var node string
	eventually(ctx, t, "chaperon tells the node of its bound, not started delegate", func(ctx context.Context) (bool, string, error) {
		pod, err := c2.Client.CoreV1().Pods(ns).Get(ctx, "web-v1", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no delegate", nil
		}
		if err != nil {
			return false, "", err
		}
		got, err := chaperons.Get(ctx, "web-v1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		node = pod.Spec.NodeName
		scheduled := podCondition(got.Status.Conditions, corev1.PodScheduled)
		ok := node != "" && pod.Status.Phase == corev1.PodPending && got.Status.NodeName == node &&
			got.Status.Phase == corev1.PodPending && scheduled != nil && scheduled.Status == corev1.ConditionTrue
		return ok, fmt.Sprintf("delegate %s; chaperon phase %s, PodScheduled %+v, status.nodeName %q", describePod(pod), got.Status.Phase, scheduled, got.Status.NodeName), nil
	})
	checkRealNode(ctx, t, c2, node)

	resume()
	eventually(ctx, t, "chaperon mirrors the started delegate", func(ctx context.Context) (bool, string, error) {
		got, err := chaperons.Get(ctx, "web-v1", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ok := got.Status.Phase == corev1.PodRunning && got.Status.NodeName == node && got.Status.PodIP != ""
		return ok, fmt.Sprintf("phase %s, status.nodeName %q (want %q), podIP %q", got.Status.Phase, got.Status.NodeName, node, got.Status.PodIP), nil
	})
}

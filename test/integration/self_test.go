package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/plugins/proxy"
)

// A cluster that targets itself (Target c1, spec.self) gets no PodChaperon:
// the source's scheduler makes the delegate at once, its binding is the
// verdict, the proxy shows its status, kubectl admiralty describe shows it
// without a chaperon column, a delegate the API server refuses refuses the
// target with the API error, and a delegate deleted before it finished is
// made again (the feedback does what the target's chaperon controller
// does elsewhere).
func TestSelfTargetMakesDelegatesWithoutChaperons(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	c1 := sandbox.Clusters[0]
	f := advFederate(t, ctx, "self", "c1")
	mc1 := versioned.NewForConfigOrDie(c1.Config)

	target, p := f.runProxy(ctx, t, advPod("web", nil, nil))
	if target != "c1" {
		t.Fatalf("the proxy runs in %q, want c1", target)
	}
	name := proxy.ChaperonName(p, "cluster1")
	d, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the delegate %s: %v", name, err)
	}
	if d.Labels[v1alpha1.LabelParentUID] != string(p.UID) || d.Spec.SchedulerName != v1alpha1.CandidateSchedulerName ||
		d.Spec.NodeName == "" || strings.HasPrefix(d.Spec.NodeName, "admiralty-") || metav1.GetControllerOf(d) != nil {
		t.Errorf("delegate: labels %v, scheduler %q, node %q, controller %v; want the proxy's UID, %s, a real node, none",
			d.Labels, d.Spec.SchedulerName, d.Spec.NodeName, metav1.GetControllerOf(d), v1alpha1.CandidateSchedulerName)
	}
	if p.Status.PodIP == "" || p.Status.PodIP != d.Status.PodIP {
		t.Errorf("proxy IP %q, delegate IP %q: want the delegate's status fed back", p.Status.PodIP, d.Status.PodIP)
	}
	chaperons, err := mc1.MulticlusterV1alpha1().PodChaperons(f.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(chaperons.Items) != 0 {
		t.Errorf("%d PodChaperons in cluster1, want none for a self target", len(chaperons.Items))
	}

	describe := kubectlAdmiralty(ctx, t, "describe", "pod", "web", "--context", "cluster1", "-n", f.ns)
	if !strings.Contains(describe, "DELEGATE ("+f.ns+"/c1)") || strings.Contains(describe, "CHAPERON") || !strings.Contains(describe, d.Spec.NodeName) {
		t.Errorf("describe pod web: want a delegate column on %s and no chaperon column:\n%s", d.Spec.NodeName, describe)
	}

	// Bad input: a quota with room for one more pod admits the proxy, not
	// its delegate.
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "one-more-pod", Namespace: f.ns},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("3")}},
	}
	if _, err := c1.Client.CoreV1().ResourceQuotas(f.ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the quota counts the proxy and its delegate", func(ctx context.Context) (bool, string, error) {
		q, err := c1.Client.CoreV1().ResourceQuotas(f.ns).Get(ctx, quota.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		used := q.Status.Used[corev1.ResourcePods]
		return used.Value() == 2, "used " + used.String(), nil
	})
	if _, err := c1.Client.CoreV1().Pods(f.ns).Create(ctx, advPod("over", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the proxy over quota refused by c1 with the API error", func(ctx context.Context) (bool, string, error) {
		evs, err := podEvents(ctx, c1, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "over"}})
		if err != nil {
			return false, "", err
		}
		for _, e := range evs {
			if strings.Contains(e.Message, "cannot create the Delegate") && strings.Contains(e.Message, "exceeded quota") {
				return true, "", nil
			}
		}
		return false, summarizeEvents(evs), nil
	})
	over, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, "over", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if over.Spec.NodeName != "" {
		t.Errorf("the proxy over quota was bound to %s", over.Spec.NodeName)
	}
	if err := c1.Client.CoreV1().ResourceQuotas(f.ns).Delete(ctx, quota.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.deletePod(ctx, t, "over")

	// The delegate deleted before it finished: made again, the proxy
	// stays.
	if err := c1.Client.CoreV1().Pods(f.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the delegate made again, Running, the proxy unchanged", func(ctx context.Context) (bool, string, error) {
		cur, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || cur.UID != p.UID {
			return false, "", fmt.Errorf("the proxy is gone or replaced: %v", err)
		}
		nd, err := c1.Client.CoreV1().Pods(f.ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "no delegate", nil
		}
		if err != nil {
			return false, "", err
		}
		return nd.UID != d.UID && nd.Status.Phase == corev1.PodRunning && nd.Labels[v1alpha1.LabelParentUID] == string(p.UID),
			fmt.Sprintf("delegate %s %s", nd.UID, nd.Status.Phase), nil
	})
	evs, err := podEvents(ctx, c1, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summarizeEvents(evs), "DelegateRecreated") {
		t.Errorf("no DelegateRecreated Event on the proxy: %s", summarizeEvents(evs))
	}
}

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// The delegator's effective permissions, as the API server reports them
// for its service account (SelfSubjectRulesReview, in its own namespace and
// in any other), minus what every authenticated identity may do, are
// exactly the reviewed list in testdata/rbac/delegator.txt. A change of
// config/rbac that grants more (or less) fails here until the list is
// reviewed and regenerated: UPDATE_GOLDEN=1 go test ... -run TestDelegatorRBACIsReviewed.
func TestDelegatorRBACIsReviewed(t *testing.T) {
	c1 := sandbox.Clusters[0]
	ctx := testContext(t, time.Minute)
	other := namespace(t, c1, "rbac", nil)
	sa := func(ns, name string) rest.ImpersonationConfig {
		return rest.ImpersonationConfig{
			UserName: "system:serviceaccount:" + ns + ":" + name,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		}
	}
	baseline := rulesOf(ctx, t, c1, sa(other, "nobody"), "admiralty", other)
	got := rulesOf(ctx, t, c1, sa("admiralty", "admiralty"), "admiralty", other).Difference(baseline)
	lines := sets.List(got)
	path := filepath.Join("testdata", "rbac", "delegator.txt")
	header := "# Effective permissions of the delegator's service account (admiralty/admiralty),\n" +
		"# beyond what every authenticated identity has. Reviewed: regenerate with\n" +
		"# UPDATE_GOLDEN=1 only after reviewing a change of config/rbac.\n"
	text := header + strings.Join(lines, "\n") + "\n"
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := sets.New[string]()
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			want.Insert(l)
		}
	}
	if extra := sets.List(got.Difference(want)); len(extra) > 0 {
		t.Errorf("the delegator may do more than reviewed:\n  %s", strings.Join(extra, "\n  "))
	}
	if missing := sets.List(want.Difference(got)); len(missing) > 0 {
		t.Errorf("the delegator may no longer do:\n  %s", strings.Join(missing, "\n  "))
	}
	if t.Failed() {
		t.Log("review config/rbac, then UPDATE_GOLDEN=1 to record the new list")
	}
}

// rulesOf returns the rules of an identity in namespaces, one line per verb
// and resource: "<own|other|cluster> VERB GROUP/RESOURCE[/SUB] [NAMES]",
// where "own" is the identity's namespace (the first), "other" any other
// namespace, and a rule present in both is "cluster" (cluster-wide grants
// show in every namespace). Non-resource URLs are "url VERB PATH".
func rulesOf(ctx context.Context, t *testing.T, c *Cluster, as rest.ImpersonationConfig, namespaces ...string) sets.Set[string] {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = as
	client := kubernetes.NewForConfigOrDie(cfg)
	per := map[string]sets.Set[string]{}
	for _, ns := range namespaces {
		review, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lines := sets.New[string]()
		for _, r := range review.Status.ResourceRules {
			names := ""
			if len(r.ResourceNames) > 0 {
				n := append([]string{}, r.ResourceNames...)
				sort.Strings(n)
				names = " " + strings.Join(n, ",")
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						group := g
						if group == "" {
							group = "core"
						}
						lines.Insert(fmt.Sprintf("%s %s/%s%s", v, group, res, names))
					}
				}
			}
		}
		for _, r := range review.Status.NonResourceRules {
			for _, u := range r.NonResourceURLs {
				for _, v := range r.Verbs {
					lines.Insert(fmt.Sprintf("url %s %s", v, u))
				}
			}
		}
		per[ns] = lines
	}
	out := sets.New[string]()
	own, other := per[namespaces[0]], per[namespaces[1]]
	for l := range own {
		switch {
		case strings.HasPrefix(l, "url "):
			out.Insert(l)
		case other.Has(l):
			out.Insert("cluster " + l)
		default:
			out.Insert("own " + l)
		}
	}
	for l := range other {
		if !own.Has(l) && !strings.HasPrefix(l, "url ") {
			out.Insert("other " + l)
		}
	}
	return out
}

// Delegates never carry the source's service-account token: the source's
// admission mounts one in the proxy (kube-api-access-*), which the saved
// original leaves out; the delegate gets the target's own, or none when
// the pod opts out of automounting.
func TestDelegatesNeverGetTheSourceToken(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 2*time.Minute)
	ns := "token-" + rand.String(5)
	for _, c := range []*Cluster{c1, c2} {
		createNamespace(t, c, ns)
	}
	labelNamespace(t, c1, ns)
	adminTarget(ctx, t, c1, ns, "c2", c2, nil)
	waitTargetReady(ctx, t, versioned.NewForConfigOrDie(c1.Config), ns, "c2")

	auto := electedPod(ns, "auto")
	off := electedPod(ns, "off")
	off.Spec.AutomountServiceAccountToken = ptr.To(false)
	for _, p := range []*corev1.Pod{auto, off} {
		if _, err := c1.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	proxies := waitProxies(ctx, t, c1, ns, 2, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning }, "both proxies Running")
	for _, proxy := range proxies {
		var delegate *corev1.Pod
		eventually(ctx, t, "delegate of "+proxy.Name, func(ctx context.Context) (bool, string, error) {
			list, err := c2.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID + "=" + string(proxy.UID)})
			if err != nil || len(list.Items) != 1 {
				return false, fmt.Sprint(err), nil
			}
			delegate = &list.Items[0]
			return true, "", nil
		})
		sourceTokens := tokenVolumes(&proxy)
		if proxy.Name == "auto" && len(sourceTokens) == 0 {
			t.Fatalf("the source's admission mounted no token in proxy %s: the test proves nothing", proxy.Name)
		}
		manifest := proxy.Annotations[v1alpha1.AnnotationSourcePodManifest]
		for _, v := range sourceTokens {
			if strings.Contains(manifest, v) {
				t.Errorf("proxy %s: the saved original mentions the source's token volume %s", proxy.Name, v)
			}
			for _, dv := range delegate.Spec.Volumes {
				if dv.Name == v {
					t.Errorf("delegate of %s has the source's token volume %s", proxy.Name, v)
				}
			}
		}
		if delegate.Spec.ServiceAccountName != proxy.Spec.ServiceAccountName {
			t.Errorf("delegate of %s runs as %q, want the pod's own %q (in the target)", proxy.Name, delegate.Spec.ServiceAccountName, proxy.Spec.ServiceAccountName)
		}
		if proxy.Name == "off" {
			if got := tokenVolumes(delegate); len(got) > 0 || delegate.Spec.AutomountServiceAccountToken == nil || *delegate.Spec.AutomountServiceAccountToken {
				t.Errorf("delegate of a pod that opts out of token automounting has token volumes %v, automount %v", got, delegate.Spec.AutomountServiceAccountToken)
			}
		}
	}
}

// tokenVolumes names the projected service-account token volumes of pod.
func tokenVolumes(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				out = append(out, v.Name)
				break
			}
		}
	}
	return out
}

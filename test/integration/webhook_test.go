package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/webhook"
	"admiralty.io/multicluster-scheduler/proxypod"
)

var enabledLabels = map[string]string{v1alpha1.LabelNamespaceEnabled: "enabled"}

// webhookPod is a pod with what a proxy changes or keeps: a node
// selector, an affinity, a spread constraint, a toleration, a volume.
func webhookPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"topology.kubernetes.io/region": "eu"},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "type", Operator: corev1.NodeSelectorOpIn, Values: []string{"kwok"}}},
				}}},
			}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
				MaxSkew: 1, TopologyKey: "topology.kubernetes.io/region", WhenUnsatisfiable: corev1.ScheduleAnyway,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			}},
			Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "c", Image: "nginx",
				Resources:    corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: mustParse("10m")}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

// plainPod starts on a kwok node of any cluster.
func plainPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.PodSpec{
			Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "c", Image: "nginx"}},
		},
	}
}

var electAnnotation = map[string]string{v1alpha1.AnnotationElect: ""}

// withoutAdmission removes from a pod's spec what the source's admission
// added and the saved original must not carry (the service-account token
// volume and its mounts, the computed priority).
func withoutAdmission(spec corev1.PodSpec) corev1.PodSpec {
	spec = *spec.DeepCopy()
	var volumes []corev1.Volume
	for _, v := range spec.Volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") {
			volumes = append(volumes, v)
		}
	}
	spec.Volumes = volumes
	for i := range spec.Containers {
		var mounts []corev1.VolumeMount
		for _, m := range spec.Containers[i].VolumeMounts {
			if !strings.HasPrefix(m.Name, "kube-api-access-") {
				mounts = append(mounts, m)
			}
		}
		spec.Containers[i].VolumeMounts = mounts
	}
	spec.Priority = nil
	return spec
}

// checkProxy fails the test unless pod is a proxy whose saved original has
// the given spec.
func checkProxy(t *testing.T, pod *corev1.Pod, wantOriginalSpec *corev1.PodSpec) *corev1.Pod {
	t.Helper()
	if !proxypod.IsProxy(pod) {
		t.Fatalf("pod %s is not a proxy: labels %v", pod.Name, pod.Labels)
	}
	if pod.Spec.SchedulerName != v1alpha1.ProxySchedulerName {
		t.Errorf("proxy scheduled by %q, want %q", pod.Spec.SchedulerName, v1alpha1.ProxySchedulerName)
	}
	if diff := cmp.Diff(map[string]string{"virtual-kubelet.io/provider": "admiralty"}, pod.Spec.NodeSelector); diff != "" {
		t.Errorf("proxy node selector (-want +got):\n%s", diff)
	}
	if pod.Spec.Affinity != nil || len(pod.Spec.TopologySpreadConstraints) > 0 {
		t.Errorf("proxy kept its affinity %v or spread constraints %v", pod.Spec.Affinity, pod.Spec.TopologySpreadConstraints)
	}
	tolerates := false
	for _, tol := range pod.Spec.Tolerations {
		if tol == proxypod.Toleration {
			tolerates = true
		}
	}
	if !tolerates {
		t.Errorf("proxy does not tolerate virtual nodes: %v", pod.Spec.Tolerations)
	}
	original, err := proxypod.SourcePod(pod)
	if err != nil {
		t.Fatalf("saved original: %v", err)
	}
	if wantOriginalSpec != nil {
		if diff := cmp.Diff(*wantOriginalSpec, original.Spec); diff != "" {
			t.Errorf("saved original spec differs from the pod as created without the webhook (-want +got):\n%s", diff)
		}
	}
	return original
}

func checkNotProxy(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	_, saved := pod.Annotations[v1alpha1.AnnotationSourcePodManifest]
	if proxypod.IsProxy(pod) || saved || pod.Spec.SchedulerName == v1alpha1.ProxySchedulerName {
		t.Errorf("pod %s/%s was made a proxy: labels %v, schedulerName %q", pod.Namespace, pod.Name, pod.Labels, pod.Spec.SchedulerName)
	}
}

func waitRunning(ctx context.Context, t *testing.T, c *Cluster, ns, name string) {
	t.Helper()
	eventually(ctx, t, fmt.Sprintf("pod %s/%s Running", ns, name), func(ctx context.Context) (bool, string, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase %s on %q", p.Status.Phase, p.Spec.NodeName), nil
	})
}

// The webhook, in cluster1: who becomes a proxy and who does not, the
// saved original, namespace-wide election, Deployments, TLS and the
// configuration the delegator keeps, and what a down webhook does.
func TestWebhook(t *testing.T) {
	c := sandbox.Clusters[0]
	ctx := testContext(t, 4*time.Minute)
	pods := c.Client.CoreV1()

	// The delegator has issued its certificates and registered the webhook.
	var cfg *admissionregistrationv1.MutatingWebhookConfiguration
	eventually(ctx, t, "the webhook configuration with the Secret's CA bundle", func(ctx context.Context) (bool, string, error) {
		var err error
		cfg, err = c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhook.ConfigurationName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		secret, err := pods.Secrets("admiralty").Get(ctx, webhook.SecretName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, w := range cfg.Webhooks {
			if string(w.ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
				return false, "caBundle of " + w.Name + " is not the Secret's ca.crt", nil
			}
		}
		return len(cfg.Webhooks) == 2, fmt.Sprintf("%d webhooks", len(cfg.Webhooks)), nil
	})

	enabled := namespace(t, c, "wh-enabled", enabledLabels)
	plain := namespace(t, c, "wh-plain", nil)

	// The serving certificate reaches new replicas through the Secret's
	// informer; until the webhook answers, a dry run of an elected pod is
	// refused (fail closed).
	eventually(ctx, t, "the webhook answers", func(ctx context.Context) (bool, string, error) {
		p, err := pods.Pods(enabled).Create(ctx, plainPod("probe", electAnnotation), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err.Error(), nil
		}
		return proxypod.IsProxy(p), "not a proxy", nil
	})

	t.Run("an elected pod becomes a proxy whose saved original is the pod as created", func(t *testing.T) {
		// The same pod in a namespace without the label is the reference:
		// defaulted and admitted like the elected one, but not mutated.
		control, err := pods.Pods(plain).Create(ctx, webhookPod("elected", electAnnotation), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNotProxy(t, control)
		proxy, err := pods.Pods(enabled).Create(ctx, webhookPod("elected", electAnnotation), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := withoutAdmission(control.Spec)
		original := checkProxy(t, proxy, &want)
		if original.Name != "elected" || original.Namespace != enabled {
			t.Errorf("saved original is %s/%s, want %s/elected", original.Namespace, original.Name, enabled)
		}
		if diff := cmp.Diff(control.Labels, original.Labels); diff != "" {
			t.Errorf("saved labels (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(control.Annotations, original.Annotations); diff != "" {
			t.Errorf("saved annotations (-want +got):\n%s", diff)
		}
		// The proxy keeps its containers and gets its own token in the
		// source: only the saved original drops them.
		if len(proxy.Spec.Volumes) != 2 {
			t.Errorf("proxy volumes %v, want the user's and the token's", proxy.Spec.Volumes)
		}
	})

	t.Run("a pod that sets schedulerName admiralty-proxy becomes a proxy", func(t *testing.T) {
		p := plainPod("by-scheduler-name", nil)
		p.Spec.SchedulerName = v1alpha1.ProxySchedulerName
		proxy, err := pods.Pods(enabled).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if original := checkProxy(t, proxy, nil); original.Spec.SchedulerName != corev1.DefaultSchedulerName {
			t.Errorf("saved original scheduled by %q, want %q", original.Spec.SchedulerName, corev1.DefaultSchedulerName)
		}
	})

	t.Run("a pod without the annotation in an enabled namespace is untouched and starts", func(t *testing.T) {
		p, err := pods.Pods(enabled).Create(ctx, plainPod("unelected", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNotProxy(t, p)
		waitRunning(ctx, t, c, enabled, p.Name)
	})

	t.Run("an elected pod in a namespace without the label is untouched and starts", func(t *testing.T) {
		p, err := pods.Pods(plain).Create(ctx, plainPod("elected-elsewhere", electAnnotation), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNotProxy(t, p)
		waitRunning(ctx, t, c, plain, p.Name)
	})

	t.Run("an elected pod bound to a node is refused with the reason", func(t *testing.T) {
		p := plainPod("bound", electAnnotation)
		p.Spec.NodeName = c.Context + "-node-0"
		_, err := pods.Pods(enabled).Create(ctx, p, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "cannot become a proxy") {
			t.Fatalf("create = %v, want a refusal saying the pod cannot become a proxy", err)
		}
	})

	t.Run("a namespace annotated elect elects every pod but those that opt out", func(t *testing.T) {
		all := namespace(t, c, "wh-all", enabledLabels)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:""}}}`, v1alpha1.AnnotationElect)
		if _, err := pods.Namespaces().Patch(ctx, all, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		// The delegator's namespace cache follows the annotation.
		eventually(ctx, t, "a pod without annotations becomes a proxy", func(ctx context.Context) (bool, string, error) {
			p, err := pods.Pods(all).Create(ctx, plainPod("elected-by-namespace", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, "", err
			}
			return proxypod.IsProxy(p), "not a proxy yet", nil
		})
		p, err := pods.Pods(all).Create(ctx, plainPod("elected-by-namespace", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkProxy(t, p, nil)
		out, err := pods.Pods(all).Create(ctx, plainPod("opted-out", map[string]string{proxypod.AnnotationNoElect: ""}), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkNotProxy(t, out)
		waitRunning(ctx, t, c, all, out.Name)
	})

	t.Run("a Deployment's pods become proxies", func(t *testing.T) {
		template := webhookPod("web", electAnnotation)
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: template.Labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: template.ObjectMeta, Spec: template.Spec},
			},
		}
		if _, err := c.Client.AppsV1().Deployments(enabled).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var list *corev1.PodList
		eventually(ctx, t, "two pods of the Deployment", func(ctx context.Context) (bool, string, error) {
			var err error
			list, err = pods.Pods(enabled).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, "", err
			}
			return len(list.Items) == 2, fmt.Sprintf("%d pods", len(list.Items)), nil
		})
		for i := range list.Items {
			p := &list.Items[i]
			original := checkProxy(t, p, nil)
			// Named by the API server after admission: the original has
			// the ReplicaSet's generateName, and no owner (the delegate's
			// owner is its chaperon, in the target).
			if original.Name != "" || original.GenerateName == "" || !strings.HasPrefix(p.Name, original.GenerateName) {
				t.Errorf("saved original named %q, generateName %q, for proxy %s", original.Name, original.GenerateName, p.Name)
			}
			if len(original.OwnerReferences) > 0 || original.Labels["pod-template-hash"] == "" {
				t.Errorf("saved original owners %v, labels %v", original.OwnerReferences, original.Labels)
			}
		}
	})

	t.Run("the webhook serves a certificate that the CA bundle trusts and counts what it does", func(t *testing.T) {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
			t.Fatal("caBundle holds no certificate")
		}
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.WebhookPort), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS to the webhook with the caBundle: %v", err)
		}
		_ = conn.Close()
		_, metrics := get(t, c.DelegatorHealth+"/metrics")
		for _, prefix := range []string{`admiralty_webhook_requests_total{result="proxied"}`, `admiralty_webhook_request_duration_seconds_bucket{result="proxied",le="60"}`} {
			if metricLine(metrics, prefix) == "" {
				t.Errorf("no %s in the delegator's metrics", prefix)
			}
		}
	})

	t.Run("a configuration edited by someone else is restored", func(t *testing.T) {
		patch := `[{"op":"replace","path":"/webhooks/0/timeoutSeconds","value":30}]`
		if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, webhook.ConfigurationName, types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(ctx, t, "the timeout restored", func(ctx context.Context) (bool, string, error) {
			got, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhook.ConfigurationName, metav1.GetOptions{})
			if err != nil {
				return false, "", err
			}
			return *got.Webhooks[0].TimeoutSeconds == *cfg.Webhooks[0].TimeoutSeconds, fmt.Sprintf("timeoutSeconds %d", *got.Webhooks[0].TimeoutSeconds), nil
		})
	})

	t.Run("with the webhook down, unrelated pods still start and elected ones are refused", func(t *testing.T) {
		// The delegator's own configuration, pointed at a closed port and
		// confined to one namespace, so that no other test is affected.
		// The API server calls configurations in the order of their names:
		// this one goes first ("a-" < "admiralty"), so it sees pods as
		// created, not as the working webhook made them.
		down := namespace(t, c, "wh-down", enabledLabels)
		broken := &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "a-admiralty-down-" + rand.String(5)},
		}
		for _, w := range cfg.Webhooks {
			w = *w.DeepCopy()
			w.ClientConfig = admissionregistrationv1.WebhookClientConfig{
				URL:      ptr.To(fmt.Sprintf("https://127.0.0.1:%d/mutate-pods", freePort(t))),
				CABundle: w.ClientConfig.CABundle,
			}
			w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{down},
			})
			broken.Webhooks = append(broken.Webhooks, w)
		}
		if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, broken, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), broken.Name, metav1.DeleteOptions{})
		})
		var refusal error
		eventually(ctx, t, "the API server calls the broken webhook", func(ctx context.Context) (bool, string, error) {
			_, refusal = pods.Pods(down).Create(ctx, plainPod("elected", electAnnotation), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return refusal != nil, "elected pod still admitted", nil
		})
		if !strings.Contains(refusal.Error(), webhook.ExplicitWebhookName) {
			t.Errorf("elected pod refused with %q, want the failing webhook named", refusal)
		}
		start := time.Now()
		p, err := pods.Pods(down).Create(ctx, plainPod("unrelated", nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("an unrelated pod is refused while the webhook is down: %v", err)
		}
		t.Logf("unrelated pod admitted in %v with the webhook down", time.Since(start))
		checkNotProxy(t, p)
		waitRunning(ctx, t, c, down, p.Name)
		if _, err := pods.Pods(down).Create(ctx, plainPod("elected", electAnnotation), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("an elected pod was admitted or refused for another reason while its webhook is down: %v", err)
		}
	})
}

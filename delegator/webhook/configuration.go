package webhook

import (
	"fmt"
	"net/url"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/proxypod"
)

const (
	// ConfigurationName is the MutatingWebhookConfiguration the delegator
	// owns.
	ConfigurationName = "admiralty"
	// SecretName holds the webhook's CA and serving certificate, in the
	// delegator's namespace, shared by its replicas.
	SecretName = "admiralty-webhook-tls"
	// Path is where the webhook serves pod admission.
	Path = "/mutate-pods"

	// ExplicitWebhookName admits the pods that ask to be proxies
	// (annotation or schedulerName); it fails closed.
	ExplicitWebhookName = "elect.multicluster.admiralty.io"
	// NamespaceWebhookName admits the other pods of enabled namespaces, for
	// namespace-wide election; it fails open.
	NamespaceWebhookName = "namespace-elect.multicluster.admiralty.io"
)

// Timeouts of the two webhooks. The webhook answers from memory in
// milliseconds; the bound is what a hung delegator costs each pod creation
// that calls it. The namespace-wide webhook is called for every pod of an
// enabled namespace, hence the shorter bound.
const (
	explicitTimeoutSeconds  = 5
	namespaceTimeoutSeconds = 3
)

// CEL conditions on the pod, evaluated by the API server before calling the
// webhook, so that pods that cannot be elected never depend on it. They
// narrow, they never decide: proxypod.Elected has the last word, and they
// must never exclude a pod that it would elect.
var (
	celHasAnnotation = func(key string) string {
		return fmt.Sprintf("(has(object.metadata.annotations) && '%s' in object.metadata.annotations)", key)
	}
	celSchedulerIs = func(name string) string {
		return fmt.Sprintf("(has(object.spec.schedulerName) && object.spec.schedulerName == '%s')", name)
	}
	celExplicit = celHasAnnotation(v1alpha1.AnnotationElect) + " || " + celSchedulerIs(v1alpha1.ProxySchedulerName)

	notCandidate = admissionregistrationv1.MatchCondition{
		Name:       "not-a-candidate",
		Expression: "!" + celSchedulerIs(v1alpha1.CandidateSchedulerName),
	}
	explicitConditions = []admissionregistrationv1.MatchCondition{
		{Name: "explicitly-elected", Expression: celExplicit},
		notCandidate,
	}
	namespaceConditions = []admissionregistrationv1.MatchCondition{
		{Name: "not-explicitly-elected", Expression: "!(" + celExplicit + ")"},
		notCandidate,
		{Name: "not-opted-out", Expression: "!" + celHasAnnotation(proxypod.AnnotationNoElect)},
		{Name: "not-bound-to-a-node", Expression: "(!has(object.spec.nodeName) || object.spec.nodeName == '') && !" +
			celHasAnnotation("kubernetes.io/config.mirror") +
			" && !(has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller && r.kind == 'DaemonSet' && r.apiVersion.startsWith('apps/')))"},
	}
)

// endpoint is how the API server reaches the webhook: the clientConfig
// (without caBundle) and the names the serving certificate must carry.
type endpoint struct {
	clientConfig admissionregistrationv1.WebhookClientConfig
	hosts        []string
}

// endpointOf derives the endpoint from the delegator's flags: the URL when
// one is given, else the Service (port 443), whose name the API server
// checks as NAME.NAMESPACE.svc.
func endpointOf(o *app.Options) (endpoint, error) {
	if o.WebhookURL != "" {
		u, err := url.Parse(o.WebhookURL)
		if err != nil {
			return endpoint{}, fmt.Errorf("--webhook-url: %w", err)
		}
		return endpoint{
			clientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To(o.WebhookURL)},
			hosts:        []string{u.Hostname()},
		}, nil
	}
	ns, name, ok := strings.Cut(o.WebhookService, "/")
	if !ok {
		return endpoint{}, fmt.Errorf("--webhook-service %q: want NAMESPACE/NAME", o.WebhookService)
	}
	return endpoint{
		clientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
			Namespace: ns, Name: name, Path: ptr.To(Path), Port: ptr.To[int32](443),
		}},
		hosts: []string{name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"},
	}, nil
}

// configuration is the MutatingWebhookConfiguration: two webhooks on pod
// creation in enabled namespaces (but kube-system and the delegator's own,
// whose pods must never wait for the delegator), never on proxies or
// delegates.
//
//   - ExplicitWebhookName, for pods that ask to be proxies: failurePolicy
//     Fail. If the webhook is down, such a pod is refused (its controller
//     retries) rather than admitted as an ordinary pod that would run here,
//     unscheduled by Admiralty, without anyone noticing.
//   - NamespaceWebhookName, for every other pod of an enabled namespace,
//     which only a namespace annotated for namespace-wide election makes a
//     proxy (the API server cannot select namespaces by annotation, so the
//     webhook looks): failurePolicy Ignore, so that a down webhook never
//     blocks the pods of namespaces that elect nothing; in a namespace that
//     elects all, pods created while it is down run as ordinary pods.
//
// Every field the API server would default is set, so that what is applied
// is what is read back.
func configuration(ep endpoint, caBundle []byte, delegatorNamespace string) *admissionregistrationv1.MutatingWebhookConfiguration {
	namespaceSelector := &metav1.LabelSelector{
		MatchLabels: map[string]string{v1alpha1.LabelNamespaceEnabled: proxypod.EnabledValue},
		MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn,
			Values: []string{metav1.NamespaceSystem, delegatorNamespace},
		}},
	}
	objectSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: v1alpha1.LabelIsProxy, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}},
		{Key: v1alpha1.LabelParentUID, Operator: metav1.LabelSelectorOpDoesNotExist},
	}}
	webhook := func(name string, policy admissionregistrationv1.FailurePolicyType, timeout int32, conditions []admissionregistrationv1.MatchCondition) admissionregistrationv1.MutatingWebhook {
		cc := ep.clientConfig
		cc.CABundle = caBundle
		return admissionregistrationv1.MutatingWebhook{
			Name:         name,
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy:           ptr.To(policy),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			NamespaceSelector:       namespaceSelector,
			ObjectSelector:          objectSelector,
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(timeout),
			AdmissionReviewVersions: []string{"v1"},
			// A later webhook's changes reach the proxy only: the saved
			// original is what the user asked for, and the target's own
			// webhooks (sidecars...) do their part on the delegate.
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			MatchConditions:    conditions,
		}
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   ConfigurationName,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "admiralty-delegator"},
		},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			webhook(ExplicitWebhookName, admissionregistrationv1.Fail, explicitTimeoutSeconds, explicitConditions),
			webhook(NamespaceWebhookName, admissionregistrationv1.Ignore, namespaceTimeoutSeconds, namespaceConditions),
		},
	}
}

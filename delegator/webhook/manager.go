package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	admissionregistrationv1ac "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/klog/v2"

	"admiralty.io/multicluster-scheduler/delegator/app"
	"admiralty.io/multicluster-scheduler/delegator/controller"
)

// fieldManager owns the configuration's fields (server-side apply).
const fieldManager = "admiralty-delegator"

// maxRecheck bounds the time between two checks of the certificates and
// the configuration, whatever their expiry.
const maxRecheck = time.Hour

// Manager keeps the webhook's Secret (CA and serving certificate) and its
// MutatingWebhookConfiguration. It runs on the leader only: one writer, so
// that two replicas never rotate at once, nor fight over a configuration
// while a rolling update runs two versions with different flags. The other
// replicas only read the Secret (Server). Until a first leader has written
// them there is no configuration either, so nothing calls the webhook.
type Manager struct {
	client     kubernetes.Interface
	namespace  string
	endpoint   endpoint
	policy     certPolicy
	now        func() time.Time
	secrets    corelisters.SecretLister
	factories  []informers.SharedInformerFactory
	controller *controller.Controller
}

// NewManager is the delegator's factory of the Manager (a leader-only
// controller).
func NewManager(_ context.Context, d *app.Delegator) (app.Controller, error) {
	ep, err := endpointOf(d.Options)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		client:    d.Client,
		namespace: d.Options.Namespace,
		endpoint:  ep,
		policy:    defaultCertPolicy,
		now:       time.Now,
	}
	// One object each: the Secret and the configuration, by name (which
	// RBAC can restrict list and watch to).
	secrets := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithNamespace(d.Options.Namespace),
		informers.WithTweakListOptions(byName(SecretName)))
	configs := informers.NewSharedInformerFactoryWithOptions(d.Client, 0,
		informers.WithTweakListOptions(byName(ConfigurationName)))
	m.factories = []informers.SharedInformerFactory{secrets, configs}
	m.secrets = secrets.Core().V1().Secrets().Lister()

	// A single key: everything is reconciled together.
	m.controller = controller.New("webhook-configuration", 1, m.reconcile)
	handler := m.controller.MappedHandler(func(any) []string { return []string{ConfigurationName} })
	secretInformer := secrets.Core().V1().Secrets().Informer()
	configInformer := configs.Admissionregistration().V1().MutatingWebhookConfigurations().Informer()
	_, _ = secretInformer.AddEventHandler(handler)
	_, _ = configInformer.AddEventHandler(handler)
	m.controller.WaitFor(secretInformer.HasSynced, configInformer.HasSynced)
	m.controller.EnqueueKey(ConfigurationName)
	return m, nil
}

func byName(name string) func(*metav1.ListOptions) {
	return func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	}
}

// Name of the control loop.
func (m *Manager) Name() string { return m.controller.Name() }

// Start runs until ctx is done.
func (m *Manager) Start(ctx context.Context) error {
	for _, f := range m.factories {
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	return m.controller.Start(ctx)
}

func (m *Manager) reconcile(ctx context.Context, _ string) (controller.Result, error) {
	logger := klog.FromContext(ctx)
	now := m.now()
	secret, err := m.secrets.Secrets(m.namespace).Get(SecretName)
	if err != nil && !apierrors.IsNotFound(err) {
		return controller.Result{}, err
	}
	var data map[string][]byte
	if secret != nil {
		data = secret.Data
	}
	data, changed, next, err := renewCerts(now, data, m.endpoint.hosts, m.policy)
	if err != nil {
		return controller.Result{}, fmt.Errorf("issuing the webhook's certificates: %w", err)
	}
	if changed {
		// Create, or update at the read resourceVersion: a conflict means
		// the cache was behind, and the next pass starts from the new one.
		if secret == nil {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: m.namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": fieldManager}},
				Type:       corev1.SecretTypeTLS,
				Data:       data,
			}
			_, err = m.client.CoreV1().Secrets(m.namespace).Create(ctx, secret, metav1.CreateOptions{FieldManager: fieldManager})
		} else {
			secret = secret.DeepCopy()
			secret.Data = data
			_, err = m.client.CoreV1().Secrets(m.namespace).Update(ctx, secret, metav1.UpdateOptions{FieldManager: fieldManager})
		}
		if err != nil {
			return controller.Result{}, fmt.Errorf("writing Secret %s/%s: %w", m.namespace, SecretName, err)
		}
		logger.Info("Issued the webhook's certificates", "secret", klog.KObj(secret), "hosts", m.endpoint.hosts, "nextRenewal", next)
	}

	// Server-side apply: a no-op when nothing changed, and it restores what
	// someone else edited (caBundle, selectors) on the next pass.
	ac := &admissionregistrationv1ac.MutatingWebhookConfigurationApplyConfiguration{}
	raw, err := json.Marshal(configuration(m.endpoint, data[keyCACert], m.namespace))
	if err != nil {
		return controller.Result{}, err
	}
	if err := json.Unmarshal(raw, ac); err != nil {
		return controller.Result{}, err
	}
	applied, err := m.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return controller.Result{}, fmt.Errorf("applying MutatingWebhookConfiguration %s: %w", ConfigurationName, err)
	}
	logger.V(4).Info("Applied the webhook configuration", "configuration", klog.KObj(applied), "resourceVersion", applied.ResourceVersion)
	wait := next.Sub(now)
	if wait > maxRecheck {
		wait = maxRecheck
	}
	if wait < time.Second {
		wait = time.Second
	}
	return controller.Result{RequeueAfter: wait}, nil
}

package kubelet

import (
	"context"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
)

// Where kube-apiserver publishes its client CA for the servers it
// delegates to (aggregated API servers read it the same way).
const (
	clientCAConfigMapNamespace = metav1.NamespaceSystem
	clientCAConfigMapName      = "extension-apiserver-authentication"
	clientCAConfigMapKey       = "client-ca-file"
)

// auth authenticates and authorizes callers as a kubelet does in webhook
// mode (cmd/kubelet/app/auth.go BuildAuthn and BuildAuthz, with the
// kubeadm-style `--anonymous-auth=false`): a client certificate signed by
// the cluster's client CA (how the API server calls kubelets when it has
// --kubelet-client-certificate) or a bearer token checked by TokenReview;
// no anonymous access; then a SubjectAccessReview on nodes/proxy of the
// pod's virtual node. The delegator acts with its own identity at the
// target, so whoever passes here gets logs and exec of the delegate: that
// is why the check is the kubelet's, not a weaker one.
type auth struct {
	ca    *dynamiccertificates.ConfigMapCAController
	authn authenticator.Request
	authz authorizer.Authorizer
}

// webhookBackoff is apiserver's DefaultAuthWebhookRetryBackoff (the
// kubelet's), written out to spare the delegator that options package.
func webhookBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
}

func newAuth(client kubernetes.Interface) (*auth, error) {
	ca, err := dynamiccertificates.NewDynamicCAFromConfigMapController("kubelet-client-ca",
		clientCAConfigMapNamespace, clientCAConfigMapName, clientCAConfigMapKey, client)
	if err != nil {
		return nil, err
	}
	// The kubelet's default cache lifetimes (KubeletConfiguration
	// authentication.webhook.cacheTTL, authorization.webhook.cache*TTL).
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                          &apiserver.AnonymousAuthConfig{Enabled: false},
		TokenAccessReviewClient:            client.AuthenticationV1(),
		TokenAccessReviewTimeout:           10 * time.Second,
		WebhookRetryBackoff:                webhookBackoff(),
		CacheTTL:                           2 * time.Minute,
		ClientCertificateCAContentProvider: ca,
	}.New()
	if err != nil {
		return nil, err
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: client.AuthorizationV1(),
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       webhookBackoff(),
	}.New()
	if err != nil {
		return nil, err
	}
	return &auth{ca: ca, authn: authn, authz: authz}, nil
}

// run keeps the client CA up to date (a rotated cluster CA is picked up)
// until ctx is done. A first load that fails is logged by the caller and
// retried here: until it succeeds, client certificates are refused.
func (a *auth) run(ctx context.Context) error {
	err := a.ca.RunOnce(ctx)
	go a.ca.Run(ctx, 1)
	return err
}

// authenticate returns the caller, or nil if it could not be authenticated.
func (a *auth) authenticate(r *http.Request) (user.Info, error) {
	resp, ok, err := a.authn.AuthenticateRequest(r)
	if err != nil || !ok {
		return nil, err
	}
	return resp.User, nil
}

// authorize tells whether attrs are allowed.
func (a *auth) authorize(ctx context.Context, attrs authorizer.Attributes) (bool, string, error) {
	decision, reason, err := a.authz.Authorize(ctx, attrs)
	return decision == authorizer.DecisionAllow, reason, err
}

// Attributes are the authorization attributes of a kubelet request on
// node, as a kubelet makes them for its own node: every path served here is
// the "proxy" subresource (pkg/kubelet/server/auth.go GetRequestAttributes).
func Attributes(u user.Info, method, path, node string) authorizer.AttributesRecord {
	verb := ""
	switch method {
	case http.MethodPost:
		verb = "create"
	case http.MethodGet:
		verb = "get"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	}
	return authorizer.AttributesRecord{
		User:            u,
		Verb:            verb,
		APIVersion:      "v1",
		Resource:        "nodes",
		Subresource:     "proxy",
		Name:            node,
		ResourceRequest: true,
		Path:            path,
	}
}

func forbidden(u user.Info, a authorizer.AttributesRecord, reason string) string {
	msg := fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=%s, subresource=%s)", u.GetName(), a.Verb, a.Resource, a.Subresource)
	if reason != "" {
		msg += ": " + reason
	}
	return msg
}

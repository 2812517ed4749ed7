package targets

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// GetDelegate reads the delegate ns/name in a target with a source's
// credentials. A target lets its sources read a delegate about a second
// after it appears (the delegates Role, delegator/source): Forbidden is
// asked again every 250 ms for up to wait; the last answer is returned.
func GetDelegate(ctx context.Context, kube kubernetes.Interface, ns, name string, wait time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(wait)
	for {
		pod, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsForbidden(err) || !time.Now().Before(deadline) || ctx.Err() != nil {
			return pod, err
		}
		select {
		case <-ctx.Done():
			return pod, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// IsDelegateOf tells whether pod is the delegate of chaperon ch: the pod
// it controls, or, in a self target, the pod it is (SelfChaperons).
func IsDelegateOf(pod *corev1.Pod, ch *v1alpha1.PodChaperon) bool {
	if pod.UID != "" && pod.UID == ch.UID {
		return true
	}
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.UID == ch.UID
}

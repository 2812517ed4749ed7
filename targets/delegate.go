package targets

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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

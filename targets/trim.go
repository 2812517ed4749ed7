package targets

import (
	"k8s.io/apimachinery/pkg/api/meta"
)

// DropManagedFields is an informer transform that drops
// metadata.managedFields, as kube-scheduler does for its pods: caches never
// read them, and they weigh about as much as the rest of the metadata. An
// update sent from a cached copy keeps the object's managed fields (the API
// server takes the live ones when a request has none).
func DropManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil && m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

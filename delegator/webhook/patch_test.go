package webhook

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"app":                             "app",
		"multicluster.admiralty.io/elect": "multicluster.admiralty.io~1elect",
		"a~b/c~/":                         "a~0b~1c~0~1",
		"":                                "",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// The patch replaces what changed two levels deep, with keys escaped, and
// removes what is gone.
func TestJSONPatch(t *testing.T) {
	before := map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{"a/b": "1"}, "name": "p"},
		"spec":     map[string]any{"schedulerName": "default-scheduler", "nodeName": ""},
		"status":   map[string]any{},
	}
	after := map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{"a/b": "1", "c~d/e": "2"}, "name": "p"},
		"spec":     map[string]any{"schedulerName": "admiralty-proxy"},
		"kind":     "Pod",
	}
	data, err := jsonPatch(before, after)
	if err != nil {
		t.Fatal(err)
	}
	var got []patchOp
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := []patchOp{
		{Op: "add", Path: "/kind", Value: json.RawMessage(`"Pod"`)},
		{Op: "add", Path: "/metadata/annotations", Value: json.RawMessage(`{"a/b":"1","c~d/e":"2"}`)},
		{Op: "remove", Path: "/spec/nodeName"},
		{Op: "add", Path: "/spec/schedulerName", Value: json.RawMessage(`"admiralty-proxy"`)},
		{Op: "remove", Path: "/status"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jsonPatch (-want +got):\n%s", diff)
	}
}

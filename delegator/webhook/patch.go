package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// patchOp is one operation of a JSON Patch (RFC 6902).
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// jsonPatch is the JSON Patch from before to after, two levels deep: each
// member of a top-level object (metadata.labels, spec.tolerations...) that
// differs is replaced whole ("add" replaces an existing member), each
// member gone is removed. Coarse on purpose: the API server applies it to
// the very object it sent, and whole-member replacement cannot misplace an
// element of a list the way index-based list operations can.
func jsonPatch(before, after any) ([]byte, error) {
	b, err := members(before)
	if err != nil {
		return nil, err
	}
	a, err := members(after)
	if err != nil {
		return nil, err
	}
	ops := []patchOp{}
	for _, k := range sortedKeys(b, a) {
		bv, inB := b[k]
		av, inA := a[k]
		switch {
		case !inA:
			ops = append(ops, patchOp{Op: "remove", Path: "/" + escape(k)})
		case !inB:
			ops = append(ops, patchOp{Op: "add", Path: "/" + escape(k), Value: av})
		case bytes.Equal(bv, av):
		default:
			bm, errB := members(bv)
			am, errA := members(av)
			if errB != nil || errA != nil {
				// Not both objects: replace the value.
				ops = append(ops, patchOp{Op: "add", Path: "/" + escape(k), Value: av})
				continue
			}
			for _, m := range sortedKeys(bm, am) {
				path := "/" + escape(k) + "/" + escape(m)
				bmv, inBM := bm[m]
				amv, inAM := am[m]
				switch {
				case !inAM:
					ops = append(ops, patchOp{Op: "remove", Path: path})
				case !inBM || !bytes.Equal(bmv, amv):
					ops = append(ops, patchOp{Op: "add", Path: path, Value: amv})
				}
			}
		}
	}
	return json.Marshal(ops)
}

var errNotObject = errors.New("not a JSON object")

// members is v as a JSON object's members; an error if it is not one.
func members(v any) (map[string]json.RawMessage, error) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errNotObject
	}
	return m, nil
}

func sortedKeys(a, b map[string]json.RawMessage) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// pointerEscaper escapes JSON Pointer reference tokens. Built once: a
// Replacer builds a 256-entry table, which per call was most of the
// webhook's allocations.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escape escapes a JSON Pointer reference token (RFC 6901).
func escape(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return pointerEscaper.Replace(s)
}

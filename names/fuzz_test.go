package names

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzFit: whatever the names, Fit keeps short ones, cuts long ones to the
// limit, keeps a valid DNS name valid, and never maps two different names
// to one. Seeds in testdata/fuzz/FuzzFit; run with
// go test ./names -run '^$' -fuzz FuzzFit.
func FuzzFit(f *testing.F) {
	f.Add("admiralty-cluster-c1", "admiralty-cluster-c2")
	f.Add(strings.Repeat("a", 70), strings.Repeat("a", 71))
	f.Add(strings.Repeat("a", 52)+"-.", strings.Repeat("a", 52)+".-")
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, max := range []int{MaxLabel, MaxSubdomain} {
			fa, fb := Fit(a, max), Fit(b, max)
			if len(fa) > max {
				t.Fatalf("Fit(%q, %d) = %q: %d characters", a, max, fa, len(fa))
			}
			if len(a) <= max && fa != a {
				t.Fatalf("Fit(%q, %d) = %q, want it unchanged", a, max, fa)
			}
			if a != b && fa == fb {
				t.Fatalf("Fit(%q) == Fit(%q) == %q", a, b, fa)
			}
			if max == MaxSubdomain && len(validation.IsDNS1123Subdomain(a)) == 0 {
				if errs := validation.IsDNS1123Subdomain(fa); len(errs) > 0 {
					t.Fatalf("Fit(%q) = %q: %v", a, fa, errs)
				}
			}
			if max == MaxLabel && len(validation.IsValidLabelValue(a)) == 0 {
				if errs := validation.IsValidLabelValue(fa); len(errs) > 0 {
					t.Fatalf("Fit(%q) = %q is not a label value: %v", a, fa, errs)
				}
			}
		}
	})
}

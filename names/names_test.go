package names

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestFit(t *testing.T) {
	long := strings.Repeat("a", 70)
	cases := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{name: "a short name is kept as is", in: "admiralty-cluster-c1", max: MaxLabel, want: "admiralty-cluster-c1"},
		{name: "a name of exactly the limit is kept as is", in: strings.Repeat("b", 63), max: MaxLabel, want: strings.Repeat("b", 63)},
		{name: "a long name is cut and hashed to the limit", in: long, max: MaxLabel, want: strings.Repeat("a", 52) + "-" + "6bd5e50348"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Fit(tc.in, tc.max)
			if len(got) > tc.max {
				t.Errorf("Fit() = %q, %d characters, more than %d", got, len(got), tc.max)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("Fit() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFitNeverCollidesAndStaysValid(t *testing.T) {
	a := strings.Repeat("x", 60) + "-namespace-one"
	b := strings.Repeat("x", 60) + "-namespace-two"
	if Fit(a, MaxLabel) == Fit(b, MaxLabel) {
		t.Fatalf("two different long names fit to the same %q", Fit(a, MaxLabel))
	}
	// A cut that falls right after a dash must not leave "--".
	dashy := strings.Repeat("ab-", 30)
	got := Fit(dashy, MaxLabel)
	if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
		t.Errorf("Fit(%q) = %q is not a DNS label: %v", dashy, got, errs)
	}
}

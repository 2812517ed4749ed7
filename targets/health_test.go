package targets

import (
	"errors"
	"fmt"
	"testing"
)

func TestHealthTransitions(t *testing.T) {
	tg := &Target{}
	if tg.Unreachable() {
		t.Fatal("a target never checked is not unreachable")
	}
	down := errors.New("connection refused")
	steps := []struct {
		err         error
		changed     bool
		unreachable bool
	}{
		{nil, true, false},  // first check: a change
		{nil, false, false}, // still answering
		{down, true, true},
		{down, false, true}, // still down: Since stays
		{nil, true, false},
	}
	for i, s := range steps {
		before := tg.Health().Since
		changed := tg.setHealth(s.err)
		h := tg.Health()
		if changed != s.changed || tg.Unreachable() != s.unreachable || h.Err != s.err {
			t.Fatalf("step %d: changed %v, unreachable %v, err %v; want %v, %v, %v", i, changed, tg.Unreachable(), h.Err, s.changed, s.unreachable, s.err)
		}
		if !changed && !h.Since.Equal(before) {
			t.Fatalf("step %d: Since moved without a change", i)
		}
	}
}

func TestReasonOf(t *testing.T) {
	if got := ReasonOf(fmt.Errorf("%w: namespace %q", ErrNamespaceNotFound, "x")); got != ReasonNamespaceNotFound {
		t.Errorf("ReasonOf(namespace missing) = %s", got)
	}
	if got := ReasonOf(errors.New("dial tcp: connection refused")); got != ReasonUnreachable {
		t.Errorf("ReasonOf(refused) = %s", got)
	}
}

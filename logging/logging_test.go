package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-logr/zapr"
	"go.uber.org/zap/zapcore"
)

func TestValidateRejectsUnknownFormat(t *testing.T) {
	o := &Options{Format: "xml"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Fatalf("Validate() = %v, want an error naming the bad format", err)
	}
}

func TestVerbosityGatesVLines(t *testing.T) {
	cases := []struct {
		name      string
		verbosity int
		wantV4    bool
	}{
		{name: "verbosity 0 hides V(4) lines", verbosity: 0, wantV4: false},
		{name: "verbosity 4 shows V(4) lines", verbosity: 4, wantV4: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			o := &Options{Format: FormatJSON, Verbosity: tc.verbosity}
			logger := zapr.NewLoggerWithOptions(o.zap(zapcore.AddSync(&buf)), zapr.LogInfoLevel("v"))
			logger.Info("always", "podName", "p")
			logger.V(4).Info("detail")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			var first map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
				t.Fatalf("first line is not JSON: %v: %q", err, lines[0])
			}
			if first["msg"] != "always" || first["podName"] != "p" {
				t.Errorf("first line = %v, want msg=always podName=p", first)
			}
			if got := len(lines) == 2; got != tc.wantV4 {
				t.Errorf("V(4) line written = %v, want %v (output %q)", got, tc.wantV4, buf.String())
			}
		})
	}
}

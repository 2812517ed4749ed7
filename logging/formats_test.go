package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"
	logsapi "k8s.io/component-base/logs/api/v1"
)

// The json format that the scheduler's --logging-format selects is this
// package's zap logger, at the configured verbosity, which the runtime
// control changes.
func TestFactory(t *testing.T) {
	var buf bytes.Buffer
	f := factory{format: FormatJSON, out: zapcore.AddSync(&buf)}
	logger, ctl := f.Create(logsapi.LoggingConfiguration{Verbosity: 2}, logsapi.LoggingOptions{})
	logger.V(2).Info("shown", "pod", "ns/p")
	logger.V(3).Info("hidden")
	if err := ctl.SetVerbosityLevel(3); err != nil {
		t.Fatal(err)
	}
	logger.V(3).Info("shown after -v 3")
	ctl.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %q", len(lines), buf.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %v: %q", err, lines[0])
	}
	if first["msg"] != "shown" || first["pod"] != "ns/p" || first["v"] != float64(2) {
		t.Errorf("first line %v, want msg=shown pod=ns/p v=2", first)
	}
	if !strings.Contains(lines[1], "shown after -v 3") {
		t.Errorf("second line %q", lines[1])
	}
}

// Both formats register with component-base, once.
func TestRegisterFormats(t *testing.T) {
	RegisterFormats()
	RegisterFormats()
	for _, f := range []string{FormatJSON, FormatConsole} {
		c := logsapi.NewLoggingConfiguration()
		c.Format = f
		if errs := logsapi.Validate(c, nil, nil); len(errs) > 0 {
			t.Errorf("format %s: %v", f, errs)
		}
	}
}

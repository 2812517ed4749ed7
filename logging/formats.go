package logging

import (
	"fmt"
	"os"
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	logsapi "k8s.io/component-base/logs/api/v1"
)

var registerOnce sync.Once

// RegisterFormats makes this package's zap logger the json and console
// formats of the component-base logging options (--logging-format), which
// kube-scheduler-admiralty's upstream command line takes: with either, its
// log lines, klog's included (component-base routes klog to the logger it
// creates), are the delegator's. --logging-format=text (the default) stays
// klog's own. Call it before the command parses its flags.
func RegisterFormats() {
	registerOnce.Do(func() {
		for _, f := range []string{FormatJSON, FormatConsole} {
			if err := logsapi.RegisterLogFormat(f, factory{format: f}, logsapi.LoggingBetaOptions); err != nil {
				panic(fmt.Sprintf("registering log format %s: %v", f, err))
			}
		}
	})
}

type factory struct {
	format string
	out    zapcore.WriteSyncer // nil: stderr
}

func (f factory) Create(c logsapi.LoggingConfiguration, _ logsapi.LoggingOptions) (logr.Logger, logsapi.RuntimeControl) {
	o := &Options{Format: f.format, Verbosity: int(c.Verbosity)}
	level := zap.NewAtomicLevelAt(zapcore.Level(-o.Verbosity))
	out := f.out
	if out == nil {
		out = zapcore.Lock(os.Stderr)
	}
	z := o.zapAt(out, level)
	return zapr.NewLoggerWithOptions(z, zapr.LogInfoLevel("v")), logsapi.RuntimeControl{
		Flush: func() { _ = z.Sync() },
		SetVerbosityLevel: func(v uint32) error {
			level.SetLevel(zapcore.Level(-int(v)))
			return nil
		},
	}
}

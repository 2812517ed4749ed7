// Package logging builds the one logger that both binaries use: zap, seen
// through logr, with klog (and so every upstream Kubernetes package) routed
// to the same sink. Keys are lowerCamel and objects are logged with klog.KObj.
package logging

import (
	"fmt"
	"os"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// Formats that --log-format accepts.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options are the logging flags.
type Options struct {
	// Format is json (one object per line, for log pipelines) or console
	// (human readable, for a terminal).
	Format string
	// Verbosity is the klog-style level: logr's V(n) lines are written when
	// n <= Verbosity.
	Verbosity int
}

// NewOptions returns the defaults: JSON at verbosity 0.
func NewOptions() *Options {
	return &Options{Format: FormatJSON}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", o.Format, "Log format: json or console.")
	fs.IntVarP(&o.Verbosity, "v", "v", o.Verbosity, "Log verbosity: V(n) lines are written for n up to this value.")
}

// Validate checks the flag values.
func (o *Options) Validate() error {
	if o.Format != FormatJSON && o.Format != FormatConsole {
		return fmt.Errorf("--log-format must be %q or %q, not %q", FormatJSON, FormatConsole, o.Format)
	}
	if o.Verbosity < 0 || o.Verbosity > 127 {
		return fmt.Errorf("-v must be between 0 and 127, not %d", o.Verbosity)
	}
	return nil
}

// Setup builds the zap logger, installs it as klog's backend and returns it
// with a flush function to call before the process exits.
func (o *Options) Setup() (logr.Logger, func(), error) {
	if err := o.Validate(); err != nil {
		return logr.Discard(), func() {}, err
	}
	z := o.zap(zapcore.Lock(os.Stderr))
	logger := zapr.NewLoggerWithOptions(z, zapr.LogInfoLevel("v"))
	klog.SetLoggerWithOptions(logger, klog.ContextualLogger(true))
	return logger, func() { _ = z.Sync() }, nil
}

func (o *Options) zap(out zapcore.WriteSyncer) *zap.Logger {
	// logr's V(n) is zap level -n, so verbosity v enables levels down to -v.
	return o.zapAt(out, zap.NewAtomicLevelAt(zapcore.Level(-o.Verbosity)))
}

func (o *Options) zapAt(out zapcore.WriteSyncer, level zap.AtomicLevel) *zap.Logger {
	var enc zapcore.Encoder
	if o.Format == FormatConsole {
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	} else {
		cfg := zap.NewProductionEncoderConfig()
		cfg.TimeKey = "ts"
		cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	}
	return zap.New(zapcore.NewCore(enc, out, level), zap.AddCaller(), zap.ErrorOutput(out))
}

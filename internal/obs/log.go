// Package obs is launchready's observability plumbing: JSON logging through a
// redaction layer, Prometheus metrics, and the health endpoints.
package obs

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/launchready/launchready/internal/redact"
)

// NewLogger returns a JSON logger whose every message and attribute passes
// through redact before it is written: secrets registered by config, credential
// and card shapes, and the values of sensitive keys never reach the output.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	if w == nil {
		w = os.Stderr
	}
	return slog.New(&redactHandler{next: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})})
}

// Component returns a logger tagged with the stage or part that logs.
func Component(l *slog.Logger, name string) *slog.Logger { return l.With("component", name) }

type redactHandler struct{ next slog.Handler }

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redact.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrubAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = scrubAttr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(clean)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name)}
}

func scrubAttr(a slog.Attr) slog.Attr {
	if redact.SensitiveKey(a.Key) {
		return slog.String(a.Key, redact.Mask)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redact.String(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		clean := make([]slog.Attr, len(attrs))
		for i, g := range attrs {
			clean[i] = scrubAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}
	case slog.KindAny:
		// Errors, Stringers and structs are rendered to text first, so a
		// secret hidden in an error chain is scrubbed like any string.
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, redact.String(err.Error()))
		}
		return slog.String(a.Key, redact.String(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

// Logger is slog.Logger, named here so commands need only this package.
type Logger = slog.Logger

// SetDefault makes l slog's default logger.
func SetDefault(l *slog.Logger) { slog.SetDefault(l) }

package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// result builds the record of one action (or read, noop, skip) of e.
func (w *Worker) result(e *schemas.Entitlement, action, target, status string, o Outcome, err error, start time.Time) schemas.SinkResult {
	r := schemas.SinkResult{
		V: 1, CustomerID: e.CustomerID, Email: e.Email, Provider: w.p.Name(), Action: action, Target: target,
		Status: status, HTTPStatus: o.HTTPStatus, Attempts: o.Attempts, EntitlementVersion: e.Version, At: w.opt.Now().UTC(),
		DurationMS: float64(time.Since(start).Microseconds()) / 1000,
	}
	r.ActionID = fmt.Sprintf("%s|%d|%s|%s|%s", e.CustomerID, e.Version, w.p.Name(), action, target)
	if err != nil {
		msg := err.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
		r.Error = msg
		var se *httpx.StatusError
		if errors.As(err, &se) && r.HTTPStatus == 0 {
			r.HTTPStatus = se.Status
		}
	}
	return r
}

func (w *Worker) deadLetter(key, reason string, record []byte) schemas.DeadLetter {
	return schemas.DeadLetter{V: 1, Stage: w.stage, Topic: w.cfg.Topic("entitlements"), Key: key, Reason: reason, Record: json.RawMessage(record), At: w.opt.Now().UTC()}
}

// write makes results and dead letters durable. It uses its own deadline,
// not the caller's: work that reached the provider is recorded even while
// the process shuts down.
func (w *Worker) write(results []schemas.SinkResult, dead []schemas.DeadLetter) error {
	msgs := make([]kafka.Message, 0, len(results)+len(dead))
	for _, r := range results {
		m, err := kafka.JSON(w.cfg.Topic("sink.results"), r.CustomerID, EnvelopeSinkResult, r)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	for _, d := range dead {
		if !json.Valid(d.Record) {
			d.Record = nil
		}
		m, err := kafka.JSON(w.cfg.Topic("dlq"), d.Key, EnvelopeDeadLetter, d)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.out.Write(ctx, msgs...); err != nil {
		return fmt.Errorf("%s: record results: %w", w.stage, err)
	}
	return nil
}

package sinks

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/launchready/launchready/schemas"
)

// syncRun is one sync of one customer: its results and dead letters.
type syncRun struct {
	w       *Worker
	e       *schemas.Entitlement
	raw     []byte
	results []schemas.SinkResult
	dead    []schemas.DeadLetter
}

func (r *syncRun) rec(action, target, status string, o Outcome, err error, start time.Time) {
	r.results = append(r.results, r.w.result(r.e, action, target, status, o, err, start))
	actions.WithLabelValues(r.w.p.Name(), action, status).Inc()
}

// failed records a failed call: a dead letter when the failure is
// permanent (it reports true: move on), an error result otherwise.
func (r *syncRun) failed(ctx context.Context, action, target string, o Outcome, err error, start time.Time) bool {
	if fatal, permanent := classify(err); permanent && !fatal {
		r.rec(action, target, schemas.SinkDLQ, o, err, start)
		reason := strings.TrimSpace(fmt.Sprintf("%s %s %s", r.w.p.Name(), action, target)) + ": " + err.Error()
		r.dead = append(r.dead, r.w.deadLetter(r.e.CustomerID, reason, r.raw))
		r.w.st.dead.Add(1)
		return true
	}
	if ctx.Err() == nil {
		r.rec(action, target, schemas.SinkError, o, err, start)
	}
	return false
}

// push applies the diff of st and t, in rounds: a create changes what the
// provider holds, so what follows it is diffed again against its answer.
// In a dry run it records the actions and assumes they succeeded. It
// reports whether anything was written.
func (r *syncRun) push(ctx context.Context, st *State, t Target) (bool, error) {
	w, wrote := r.w, false
	for round := 0; round < 4; round++ {
		acts := Diff(*st, t)
		again := false
		for _, a := range acts {
			name := a.Kind
			if a.Kind == ActCreate {
				name = w.p.CreateAction()
			}
			if w.opt.DryRun {
				r.rec(name, a.Target(), schemas.SinkDryRun, Outcome{}, nil, time.Now())
				if a.Kind == ActCreate {
					st.AssumeCreated(a, t)
					again = true
					break
				}
				st.Assume(a)
				continue
			}
			start := time.Now()
			o, err := w.p.Apply(ctx, r.e, st, a)
			if err != nil {
				if !r.failed(ctx, name, a.Target(), o, err, start) {
					return wrote, err
				}
				if a.Kind == ActCreate {
					return wrote, nil // nothing else can be applied without the customer
				}
				continue
			}
			if !o.Refreshed {
				st.Assume(a)
			}
			target := a.Target()
			if a.Kind == ActCreate {
				target = st.ID
			}
			r.rec(name, target, schemas.SinkOK, o, nil, start)
			w.st.actions.Add(1)
			w.st.changes.Add(int64(a.Changes))
			wrote = true
			if a.Kind == ActCreate {
				again = true
				break
			}
		}
		if !again {
			break
		}
	}
	return wrote, nil
}

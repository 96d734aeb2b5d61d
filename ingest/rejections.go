package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// rejectionLog counts the deliveries ingest refuses (or cannot store) and
// writes the counts to lr.ingest.rejections, so the audit trail can report
// rejected webhooks next to received ones. Counts are aggregated per
// provider, reason and status and flushed about once a second: a flood of
// bad requests costs a few records, not one per request.
//
// Nothing counted is lost while Kafka is down: the records that failed are
// written again, with their record ids, until Kafka takes them (the audit
// counts a record id once), and new counts accumulate meanwhile. What is
// lost is at most the last interval's counts if the process dies.
type rejectionLog struct {
	w        writer
	topic    string
	instance string
	log      *slog.Logger

	mu       sync.Mutex
	pending  map[rejectionKey]*schemas.Rejection
	seq      int64
	inflight []schemas.Rejection // taken from pending, not yet acknowledged
	flushMu  sync.Mutex          // one flush at a time
}

type rejectionKey struct {
	provider, reason string
	status           int
}

func newRejectionLog(w writer, topic string, log *slog.Logger) *rejectionLog {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &rejectionLog{
		w: w, topic: topic, log: log, pending: map[rejectionKey]*schemas.Rejection{},
		instance: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b)),
	}
}

// note counts one refused delivery.
func (l *rejectionLog) note(provider, reason string, status int, requestID string, at time.Time) {
	at = at.UTC()
	k := rejectionKey{provider, reason, status}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.pending[k]
	if r == nil {
		r = &schemas.Rejection{V: schemas.RejectionVersion, Provider: provider, Reason: reason, HTTPStatus: status, FirstAt: at, LastAt: at, Instance: l.instance}
		l.pending[k] = r
	}
	r.Count++
	if at.Before(r.FirstAt) {
		r.FirstAt = at
	}
	if at.After(r.LastAt) {
		r.LastAt = at
	}
	if len(r.RequestIDs) < schemas.MaxRejectionRequestIDs && requestID != "" {
		r.RequestIDs = append(r.RequestIDs, requestID)
	}
}

// flush writes what was counted. After a failure the same records (same ids)
// are written again by the next flush, and the counts since wait for them.
func (l *rejectionLog) flush(ctx context.Context) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	if len(l.inflight) == 0 {
		keys := make([]rejectionKey, 0, len(l.pending))
		for k := range l.pending {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := keys[i], keys[j]
			return a.provider+"/"+a.reason+"/"+strconv.Itoa(a.status) < b.provider+"/"+b.reason+"/"+strconv.Itoa(b.status)
		})
		for _, k := range keys {
			l.seq++
			r := *l.pending[k]
			r.RecordID = l.instance + "-" + strconv.FormatInt(l.seq, 10)
			l.inflight = append(l.inflight, r)
		}
		clear(l.pending)
	}
	batch := l.inflight
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, 0, len(batch))
	for i := range batch {
		m, err := kafka.JSON(l.topic, batch[i].Provider, "rejection/1", batch[i])
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if err := l.w.Write(ctx, msgs...); err != nil {
		return fmt.Errorf("rejection counts not written (kept for the next attempt): %w", err)
	}
	l.mu.Lock()
	l.inflight = nil
	l.mu.Unlock()
	return nil
}

// run flushes every interval until ctx ends, then once more.
func (l *rejectionLog) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := l.flush(fctx); err != nil {
				l.log.Warn("rejection counts lost at shutdown", "err", err)
			}
			return
		case <-t.C:
		}
		err := l.flush(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			l.log.WarnContext(ctx, "writing rejection counts failed; retrying", "err", err)
		case err == nil && failing:
			failing = false
			l.log.InfoContext(ctx, "rejection counts written again")
		}
	}
}

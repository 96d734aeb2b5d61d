package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// TestRejectionCountsSurviveAKafkaOutage: while Kafka refuses the writes the
// counted records are retried with the same ids and new counts wait; once it
// takes them, every refusal is counted exactly once (per record id, as the
// audit dedupes).
func TestRejectionCountsSurviveAKafkaOutage(t *testing.T) {
	down := true
	w := &fakeWriter{fail: func([]kafka.Message) error {
		if down {
			return fmt.Errorf("%w: broker gone", kafka.ErrUnavailable)
		}
		return nil
	}}
	l := newRejectionLog(w, "lr.ingest.rejections", discardLog())
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		l.note("stripe", "signature_mismatch", 401, fmt.Sprint("req", i), at.Add(time.Duration(i)*time.Second))
	}
	l.note("kit", "bad_json", 400, "reqk", at)
	if err := l.flush(ctx); !errors.Is(err, kafka.ErrUnavailable) {
		t.Fatalf("flush while down: %v", err)
	}
	for i := 0; i < 12; i++ { // more request ids than a record keeps
		l.note("stripe", "signature_mismatch", 401, fmt.Sprint("later", i), at.Add(time.Minute))
	}
	if err := l.flush(ctx); err == nil {
		t.Fatal("flush while down succeeded")
	}
	down = false
	if err := l.flush(ctx); err != nil { // the first records, same ids
		t.Fatal(err)
	}
	if err := l.flush(ctx); err != nil { // the counts since
		t.Fatal(err)
	}
	if err := l.flush(ctx); err != nil { // nothing left
		t.Fatal(err)
	}
	byID := map[string]schemas.Rejection{}
	for _, m := range w.msgs {
		var r schemas.Rejection
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != r.Provider || len(r.RequestIDs) > schemas.MaxRejectionRequestIDs {
			t.Errorf("record %s keyed %q", m.Value, m.Key)
		}
		byID[r.RecordID] = r
	}
	if len(w.msgs) != 3 || len(byID) != 3 {
		t.Fatalf("%d records written with %d ids, want 3 and 3", len(w.msgs), len(byID))
	}
	total := map[string]int64{}
	for _, r := range byID {
		total[r.Provider+"/"+r.Reason] += r.Count
	}
	if total["stripe/signature_mismatch"] != 15 || total["kit/bad_json"] != 1 {
		t.Fatalf("counts %v, want 15 stripe and 1 kit", total)
	}
}

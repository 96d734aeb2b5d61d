package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// writer is the Kafka side of ingest; *kafka.Producer implements it.
type writer interface {
	// Write blocks until every message is acknowledged by all in-sync
	// replicas, or fails with an error wrapping kafka.ErrUnavailable (some of
	// the messages may then be stored). Not idempotent.
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// dedupStore is the duplicate window; *Dedup implements it.
type dedupStore interface {
	// Claim serialises holders of the same keys within the process. Blocks.
	Claim(ctx context.Context, keys []string) (release func(), err error)
	// Lookup returns first-seen times of the keys known within the window.
	Lookup(ctx context.Context, keys []string) (map[string]time.Time, error)
	// Record stores sightings durably. Blocks until committed.
	Record(ctx context.Context, seen []Seen) error
}

// store is the one path every raw event takes into Kafka — webhooks, Circle
// polls and pushes, and the Stripe backfill — so all of them share the same
// dedup keys and the same guarantees:
//
//  1. claim the events' identities (concurrent copies wait for each other);
//  2. look them up in the dedup window and flag the ones seen before
//     (Duplicate, FirstSeenAt) — they are still written, so the duplicate
//     rate can be measured downstream;
//  3. write every record to Kafka and wait for acks=all;
//  4. only then record the sightings in the dedup store (for webhooks in the
//     background, after the answer, while still holding the claim);
//  5. report success once Kafka acknowledged (the receiver answers 2xx).
//
// The order of 3 and 4 is the safe one. A crash between them leaves a record
// in Kafka that the window does not know: its re-delivery is stored again,
// unflagged — a duplicate downstream recognises by event id, never a loss.
// Recording first would, on a failed Kafka write, make the provider's retry
// look like a duplicate of a record that was never stored.
//
// Dedup store failures never fail a write: a failed lookup stores the events
// unflagged, a failed record only weakens flagging of later re-deliveries.
type store struct {
	w            writer
	d            dedupStore
	topic        func(name string) string
	log          *slog.Logger
	writeTimeout time.Duration
	// async records sightings after put returned (the receiver's answer
	// does not wait for the dedup store); the claim on the keys is held
	// until the sighting is committed, so a re-delivery to this process
	// still waits and is flagged. pending tracks those records for Flush.
	async   bool
	pending tracker
}

// ProducerOptions are the producer settings ingest is tuned and measured
// with. The producer keeps one produce request in flight per partition and
// cuts a batch when its timer fires; under load a produce round trip takes
// longer than the default 2 ms, so batches that small queue up behind each
// other. A 10 ms timer lets concurrent requests fill shared batches and
// costs a quiet request at most 10 ms.
var ProducerOptions = kafka.WriterOptions{BatchTimeout: 10 * time.Millisecond}

// lookupTimeout bounds the wait for the dedup window's answer.
const lookupTimeout = 2 * time.Second

func newStore(w writer, d dedupStore, topic func(string) string, log *slog.Logger, writeTimeout time.Duration) *store {
	return &store{w: w, d: d, topic: topic, log: log, writeTimeout: writeTimeout}
}

// put stores evs (one provider's) and returns how many were duplicates. An
// error wraps kafka.ErrUnavailable (or is ctx's): the records may not all be
// in Kafka and the input must not be acknowledged. Blocks.
func (s *store) put(ctx context.Context, evs []schemas.RawEvent) (dups int, err error) {
	if len(evs) == 0 {
		return 0, nil
	}
	provider := evs[0].Provider
	// evKeys[i] is event i's identity; firstAt[i], when set, means an
	// earlier event of the same request carries it (a delivery may repeat
	// an event): the later one is a duplicate of it.
	evKeys := make([]string, len(evs))
	keys := make([]string, 0, len(evs))
	var firstAt map[int]time.Time
	var index map[string]int
	if len(evs) > 1 {
		index = make(map[string]int, len(evs))
	}
	for i := range evs {
		k := evs[i].DedupKey()
		evKeys[i] = k
		if index == nil {
			keys = append(keys, k)
			continue
		}
		if j, ok := index[k]; ok {
			if firstAt == nil {
				firstAt = map[int]time.Time{}
			}
			firstAt[i] = evs[j].ReceivedAt
			continue
		}
		index[k] = i
		keys = append(keys, k)
	}
	release, err := s.d.Claim(ctx, keys)
	if err != nil {
		return 0, err
	}
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()

	// A slow or absent state database must not hold the provider up: past
	// lookupTimeout the events are stored unflagged.
	lctx, lcancel := context.WithTimeout(ctx, lookupTimeout)
	seen, err := s.d.Lookup(lctx, keys)
	lcancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		mDedupErrors.WithLabelValues("lookup").Inc()
		s.log.WarnContext(ctx, "dedup lookup failed; storing events unflagged", "provider", provider, "events", len(evs), "err", err)
		seen = nil
	}
	msgs := make([]kafka.Message, len(evs))
	sightings := make([]Seen, len(evs))
	for i := range evs {
		ev := &evs[i]
		ev.V = schemas.RawVersion
		k := evKeys[i]
		if at, ok := seen[k]; ok {
			ev.Duplicate, ev.FirstSeenAt = true, &at
		} else if at, ok := firstAt[i]; ok {
			ev.Duplicate, ev.FirstSeenAt = true, &at
		}
		if ev.Duplicate {
			dups++
		}
		key := ev.ObjectID
		if key == "" {
			key = ev.EventID
		}
		msgs[i], err = encodeRaw(s.topic("raw."+ev.Provider), key, ev)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", kafka.ErrUnavailable, err)
		}
		sightings[i] = Seen{Key: k, At: ev.ReceivedAt}
	}

	// Concurrent requests share produce requests inside the producer, which
	// batches per partition; a request waits for its own records only.
	wctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
	start := time.Now()
	err = s.w.Write(wctx, msgs...)
	cancel()
	mKafkaWrite.WithLabelValues(provider).Observe(time.Since(start).Seconds())
	if err != nil {
		if !errors.Is(err, kafka.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", kafka.ErrUnavailable, err)
		}
		// Some records of a multi-record request may be stored; record
		// those so the provider's retry flags them.
		var we kgo.WriteErrors
		if errors.As(err, &we) && len(we) == len(sightings) {
			var ok []Seen
			for i, e := range we {
				if e == nil {
					ok = append(ok, sightings[i])
				}
			}
			s.recordSightings(ctx, provider, ok)
		}
		return 0, err
	}
	for i := range evs {
		mRecords.WithLabelValues(provider, evs[i].Source).Inc()
		if evs[i].Duplicate {
			mDuplicates.WithLabelValues(provider, evs[i].Source).Inc()
		}
	}
	if s.async && s.pending.tryAdd() {
		handedOff = true
		go func() {
			defer s.pending.done()
			defer release()
			s.recordSightings(ctx, provider, sightings)
		}()
		return dups, nil
	}
	s.recordSightings(ctx, provider, sightings)
	return dups, nil
}

// flush makes put record sightings before returning from now on, then
// waits until those being recorded in the background are committed, or ctx
// ends.
func (s *store) flush(ctx context.Context) error {
	s.pending.close()
	return s.pending.wait(ctx)
}

// tracker counts work in flight and lets a caller wait for none. Once
// closed it takes no more.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

// tryAdd counts one more unless the tracker is closed.
func (t *tracker) tryAdd() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	if t.n--; t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.zero == nil {
		t.zero = make(chan struct{})
	}
	ch := t.zero
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordSightings records under a deadline of its own: the records are in
// Kafka, and the caller's context ending (a client hanging up) must not skip
// the bookkeeping.
func (s *store) recordSightings(ctx context.Context, provider string, seen []Seen) {
	if len(seen) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.d.Record(rctx, seen); err != nil {
		mDedupErrors.WithLabelValues("record").Inc()
		s.log.WarnContext(ctx, "dedup record failed; a re-delivery may go unflagged", "provider", provider, "events", len(seen), "err", err)
	}
}

// rawEnvelope is the lr-envelope header value of raw records.
var rawEnvelope = "raw/" + strconv.Itoa(schemas.RawVersion)

// encodeRaw builds the record of ev with its body spliced in byte for byte
// as the provider sent it: json.Marshal would compact the body and escape
// <, > and &, so the bytes a provider signed could no longer be checked
// against the record. ev.Body must be valid JSON (every parser checks).
func encodeRaw(topic, key string, ev *schemas.RawEvent) (kafka.Message, error) {
	body := ev.Body
	ev.Body = nil
	m, err := kafka.JSON(topic, key, rawEnvelope, ev)
	ev.Body = body
	if err != nil {
		return m, err
	}
	const tail = `"body":null}`
	if !bytes.HasSuffix(m.Value, []byte(tail)) || len(body) == 0 {
		return kafka.JSON(topic, key, rawEnvelope, ev)
	}
	v := make([]byte, 0, len(m.Value)+len(body))
	v = append(v, m.Value[:len(m.Value)-len("null}")]...)
	v = append(v, body...)
	m.Value = append(v, '}')
	return m, nil
}

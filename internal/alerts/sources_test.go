package alerts

import (
	"context"
	"fmt"
	"testing"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/internal/testenv"
)

// The backlog of a consumer group on the real Kafka: records after its
// committed offset, found by the group's prefix.
func TestKafkaBacklog(t *testing.T) {
	t.Parallel()
	cfg, _ := testenv.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := cfg.Topic("decisions")
	var msgs []kafka.Message
	for i := 0; i < 30; i++ {
		msgs = append(msgs, kafka.Message{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("{}")})
	}
	prod := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	defer prod.Close()
	if err := prod.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	ends, err := kafka.NewClient(cfg.KafkaBrokers).EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	p, end := 0, int64(0)
	for part, e := range ends {
		if e > end {
			p, end = part, e
		}
	}
	group := cfg.TopicPrefix + "reconcile"
	cl := &kgo.Client{Addr: kgo.TCP(cfg.KafkaBrokers...), Timeout: 10 * time.Second}
	res, err := cl.OffsetCommit(ctx, &kgo.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kgo.OffsetCommit{topic: {{Partition: p, Offset: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, parts := range res.Topics {
		for _, r := range parts {
			if r.Error != nil {
				t.Fatal(r.Error)
			}
		}
	}
	lags, err := NewKafkaBacklog(cfg.KafkaBrokers, cfg.TopicPrefix).Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lags[group] != end-2 {
		t.Fatalf("backlog %v, want %s: %d", lags, group, end-2)
	}
	for g := range lags {
		if len(g) < len(cfg.TopicPrefix) || g[:len(cfg.TopicPrefix)] != cfg.TopicPrefix {
			t.Fatalf("group %s of another prefix reported", g)
		}
	}
}

// The lag of a real logical replication slot grows with WAL it has not
// confirmed.
func TestPostgresSlotLag(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	slot := "lr_alerts_t" + testenv.ID()
	if _, err := pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		t.Fatal(err)
	}
	// Dropped before the pool closes (defers run last-in first-out): a slot
	// left behind would hold the stack's WAL forever.
	defer func() {
		if _, err := pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot); err != nil {
			t.Errorf("drop slot %s: %v", slot, err)
		}
	}()
	if _, err := pool.Exec(ctx, "CREATE TEMP TABLE lag_filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g"); err != nil {
		t.Fatal(err)
	}
	lags, err := (&PostgresSlotLag{Pool: pool, Slots: []string{slot}}).SlotLag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 1 || lags[slot] <= 0 {
		t.Fatalf("lags %v, want %s above 0", lags, slot)
	}
}

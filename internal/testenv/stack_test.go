package testenv

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

// The stack is real: a message makes a round trip through a topic created on
// the broker, Postgres creates a logical replication slot, and ClickHouse
// stores and returns a row.
func TestStackServicesAreReal(t *testing.T) {
	t.Parallel()
	cfg, pool := Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("kafka round trip", func(t *testing.T) {
		topic := cfg.Topic("raw.stripe")
		p := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
		defer p.Close()
		want := "hello-" + ID()
		if err := p.Write(ctx, kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte(want)}); err != nil {
			t.Fatal(err)
		}
		r := kgo.NewReader(kgo.ReaderConfig{Brokers: cfg.KafkaBrokers, Topic: topic, Partition: partitionOf(t, cfg.KafkaPartitions, "k"), MaxWait: 100 * time.Millisecond})
		defer r.Close()
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) != want {
			t.Fatalf("read %q, want %q", m.Value, want)
		}
	})

	t.Run("postgres logical slot", func(t *testing.T) {
		app, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		slot := "lr_t_" + ID()
		if _, err := app.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
			t.Fatalf("create slot: %v", err)
		}
		defer app.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot)
		var plugin string
		if err := app.QueryRow(ctx, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&plugin); err != nil || plugin != "pgoutput" {
			t.Fatalf("slot plugin %q, err %v", plugin, err)
		}
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM lr_seen_events").Scan(&n); err != nil {
			t.Fatalf("state database not migrated: %v", err)
		}
	})

	t.Run("clickhouse write and read", func(t *testing.T) {
		conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.Exec(ctx, "CREATE TABLE probe (d Date, s String) ENGINE = MergeTree() PARTITION BY toYYYYMM(d) ORDER BY s"); err != nil {
			t.Fatal(err)
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO probe (d, s)")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(time.Now(), "row-1"); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT s FROM probe").Scan(&s); err != nil || s != "row-1" {
			t.Fatalf("read %q, err %v", s, err)
		}
	})
}

// /readyz is ready only while Kafka, Postgres and ClickHouse answer, and says
// which one does not.
func TestReadyzNamesTheServiceThatIsDown(t *testing.T) {
	t.Parallel()
	cfg := Config(t)
	k := PrivateKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ch, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	h := obs.NewHealth()
	h.Add("kafka", app.KafkaCheck([]string{k.Addr}))
	h.Add("postgres", app.PostgresCheck(pool, "state database"))
	h.Add("clickhouse", app.ClickHouseCheck(ch))
	srv := httptest.NewServer(h.Mux())
	defer srv.Close()

	get := func() (int, map[string]any) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := get(); code != 200 {
		t.Fatalf("readyz %d with every service up: %v", code, body)
	}
	k.Stop()
	code, body := get()
	if code != 503 {
		t.Fatalf("readyz %d with kafka down", code)
	}
	checks := body["checks"].(map[string]any)
	if checks["kafka"] == "ok" || checks["postgres"] != "ok" || checks["clickhouse"] != "ok" {
		t.Fatalf("readyz does not single out kafka: %v", checks)
	}
}

func partitionOf(t *testing.T, n int, key string) int {
	t.Helper()
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return (&kgo.Murmur2Balancer{Consistent: true}).Balance(kgo.Message{Key: []byte(key)}, parts...)
}

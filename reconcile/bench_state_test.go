package reconcile

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
)

// benchInputs is a realistic load as Kafka records: histories of many
// people, a fifth delivered twice, shuffled.
func benchInputs(b *testing.B, histories, offset int64) ([]kafka.Message, []*Fact) {
	facts, in := load(b, histories, offset)
	msgs := make([]kafka.Message, len(in))
	cfg := &config.Config{TopicPrefix: "lr."}
	for i, x := range in {
		msgs[i] = kafka.Message{Topic: cfg.Topic(x.topic), Key: []byte(x.key), Value: x.value}
	}
	return msgs, facts
}

func decoderFor(cfg *config.Config) *Reconciler {
	r := &Reconciler{cfg: cfg, set: DefaultSettings(), t: topicNames{stripe: cfg.Topic("raw.stripe"), kit: cfg.Topic("raw.kit"),
		circle: cfg.Topic("raw.circle"), sinks: cfg.Topic("sink.results"), cdc: map[string]bool{}}}
	for _, tp := range DefaultSettings().CDCTopics() {
		r.t.cdc[cfg.Topic(tp)] = true
	}
	return r
}

// BenchmarkReconcileDecode: records/s through the loop's decoder (JSON of
// realistic Stripe, Kit, Circle, CDC and sink records), one core.
func BenchmarkReconcileDecode(b *testing.B) {
	msgs, _ := benchInputs(b, 2000, 500000)
	r := decoderFor(&config.Config{TopicPrefix: "lr."})
	var bytes int
	for _, m := range msgs {
		bytes += len(m.Value)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := range msgs {
			r.decode(&msgs[j])
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(len(msgs)*b.N)/el, "records/s")
	b.ReportMetric(float64(bytes)/float64(len(msgs)), "bytes/record")
}

// BenchmarkReconcileState: facts/s through State.Apply (identity,
// entitlement verdict and decisions), in memory.
func BenchmarkReconcileState(b *testing.B) {
	_, facts := benchInputs(b, 2000, 600000)
	m := exampleMapping(b)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		s := NewState(m, time.Now)
		for _, f := range facts {
			cp := *f
			cp.Links = append([]ID(nil), f.Links...)
			s.Apply(&cp)
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(len(facts)*b.N)/el, "facts/s")
}

// BenchmarkReconcileEncode: fact-log records/s encoded.
func BenchmarkReconcileEncode(b *testing.B) {
	_, facts := benchInputs(b, 2000, 700000)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for _, f := range facts {
			if _, err := json.Marshal(SeenEvent{V: 1, Key: f.Key, Fact: f}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(facts)*b.N)/time.Since(start).Seconds(), "records/s")
}

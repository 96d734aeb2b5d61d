package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
)

// Metrics, per provider. Requests are counted once in received; each either
// ends rejected (by reason), unavailable (Kafka did not take it: 503) or
// stored, and every stored record is counted in records (by source) and,
// when it was seen before, in duplicates.
var (
	mReceived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_received_total", Help: "Webhook requests received, by provider.",
	}, []string{"provider"})
	mVerified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_verified_total", Help: "Webhook requests whose signature or shared secret verified (or accepted unverified by setting), by provider and verification.",
	}, []string{"provider", "verification"})
	mRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_rejected_total", Help: "Webhook requests refused, by provider and reason; none of them is stored.",
	}, []string{"provider", "reason"})
	mUnavailable = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_unavailable_total", Help: "Requests answered 503 because Kafka did not acknowledge their records (the provider retries).",
	}, []string{"provider"})
	mRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_records_total", Help: "Raw event records acknowledged by Kafka, by provider and source (webhook, push, poll, backfill).",
	}, []string{"provider", "source"})
	mDuplicates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_duplicates_total", Help: "Records whose event id was seen before within the dedup window (stored, flagged duplicate), by provider and source.",
	}, []string{"provider", "source"})
	mKafkaWrite = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_ingest_kafka_write_seconds", Help: "Time until Kafka acknowledged (acks=all) a request's records, by provider.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"provider"})
	mRequest = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_ingest_request_seconds", Help: "Webhook request latency, by provider and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"provider", "code"})
	mDedupErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_dedup_errors_total", Help: "Dedup store failures (lookup: a duplicate may go unflagged; record: a later re-delivery may go unflagged). Records are never lost by them.",
	}, []string{"op"})
	mDedupBatch = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_ingest_dedup_batch_keys", Help: "Keys per dedup store statement (group commit of concurrent requests).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	}, []string{"op"})
	mDedupWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_ingest_dedup_seconds", Help: "Time a caller waited for a dedup lookup or record (its share of a group commit).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"op"})
	mDedupPruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "launchready_ingest_dedup_pruned_total", Help: "Dedup entries deleted after leaving the window.",
	})

	mPollPages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "launchready_ingest_circle_poll_pages_total", Help: "Circle member list pages read by the poller.",
	})
	mPollMembers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_circle_poll_members_total", Help: "Circle members read by the poller: changed (emitted) or unchanged (state key already recorded).",
	}, []string{"result"})
	mPollScans = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_circle_poll_scans_total", Help: "Circle poller scans by result (ok, error, budget).",
	}, []string{"result"})
	mPollHighWater = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "launchready_ingest_circle_poll_high_water_seconds", Help: "Newest Circle member updated_at acknowledged by Kafka (unix seconds).",
	})
	mPollInterval = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "launchready_ingest_circle_poll_interval_seconds", Help: "Wait before the next Circle scan, stretched to keep within the monthly quota.",
	})
	mBackfillEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_ingest_backfill_events_total", Help: "Events read by a backfill, by provider and result (new, duplicate, invalid).",
	}, []string{"provider", "result"})
)

func init() {
	obs.Registry.MustRegister(mReceived, mVerified, mRejected, mUnavailable, mRecords, mDuplicates,
		mKafkaWrite, mRequest, mDedupErrors, mDedupBatch, mDedupWait, mDedupPruned,
		mPollPages, mPollMembers, mPollScans, mPollHighWater, mPollInterval, mBackfillEvents)
}

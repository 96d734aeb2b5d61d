package schemas

import "time"

// Topic describes one topic the pipeline owns. Name is relative to the
// configured prefix ("lr." by default): "raw.stripe" is lr.raw.stripe.
type Topic struct {
	Name string
	// Compact: the topic holds keyed state (latest record per key wins).
	Compact bool
	// Retention for delete-policy topics; 0 keeps the broker default.
	Retention time.Duration
	// Envelope is the record type in the topic, for docs and the audit writer.
	Envelope string
}

// Topics is every topic `launchready migrate` creates, besides the CDC topics
// (lr.cdc.<schema>.<table>), which the CDC stage creates per published table.
var Topics = []Topic{
	{Name: "raw.stripe", Retention: 30 * 24 * time.Hour, Envelope: "RawEvent"},
	{Name: "raw.kit", Retention: 30 * 24 * time.Hour, Envelope: "RawEvent"},
	{Name: "raw.circle", Retention: 30 * 24 * time.Hour, Envelope: "RawEvent"},
	{Name: "identity", Compact: true, Envelope: "Identity"},
	{Name: "entitlements", Compact: true, Envelope: "Entitlement"},
	{Name: "decisions", Retention: 90 * 24 * time.Hour, Envelope: "Decision"},
	{Name: "mismatches", Compact: true, Envelope: "Mismatch"},
	{Name: "sink.results", Retention: 30 * 24 * time.Hour, Envelope: "SinkResult"},
	{Name: "dlq", Retention: 90 * 24 * time.Hour, Envelope: "DeadLetter"},
	// Counts of webhook deliveries ingest refused (their bodies are not kept).
	{Name: "ingest.rejections", Retention: 30 * 24 * time.Hour, Envelope: "Rejection"},
	// The reconciler's own state: provider event ids it has applied, keyed by
	// dedup key, so duplicates are recognised across restarts.
	{Name: "reconcile.seen", Compact: true, Envelope: "SeenEvent"},
}

// CDCTopic is the relative topic name of a table's changes.
func CDCTopic(schema, table string) string { return "cdc." + schema + "." + table }

// Package schemas holds the records that travel between stages: the Go types,
// the JSON Schema documents that describe them (schemas/json/*.schema.json,
// kept in sync by a test), the topic list, and the ClickHouse and Postgres DDL.
package schemas

import (
	"encoding/json"
	"time"
)

// Envelope versions. A consumer refuses a record whose major version it does
// not know rather than guess at its fields.
const (
	RawVersion         = 1
	CDCVersion         = 1
	EntitlementVersion = 1
	RejectionVersion   = 1
)

// HeaderEnvelope is the Kafka header naming a record's envelope kind and
// version, e.g. "raw/1", "cdc/1".
const HeaderEnvelope = "lr-envelope"

// Providers.
const (
	ProviderStripe = "stripe"
	ProviderKit    = "kit"
	ProviderCircle = "circle"
)

// How a raw event came in.
const (
	SourceWebhook  = "webhook"
	SourcePoll     = "poll"
	SourceBackfill = "backfill"
	SourcePush     = "push"
)

// Verification results of a raw event.
const (
	VerifiedSignature    = "signature"     // HMAC signature checked (Stripe, Kit)
	VerifiedSharedSecret = "shared_secret" // Circle workflow push
	VerifiedAPI          = "api"           // fetched by us from the provider's API with our credentials
	VerifiedNone         = "unverified"    // legacy Kit bodies, accepted only behind a setting
)

// RawEvent is one provider event in lr.raw.<provider>, keyed by ObjectID (the
// provider object whose events must stay in order: Stripe customer, Kit
// subscriber, Circle member), or by EventID when the event names no object.
type RawEvent struct {
	V            int       `json:"v"`
	Provider     string    `json:"provider"`
	EventID      string    `json:"event_id"` // evt_…, Kit event UUID, or a synthetic key (Circle polls, legacy Kit)
	Type         string    `json:"type"`
	ObjectID     string    `json:"object_id,omitempty"`
	ProviderTime time.Time `json:"provider_time"` // the provider's own timestamp (Stripe created, Kit created, Circle updated_at)
	ReceivedAt   time.Time `json:"received_at"`
	Source       string    `json:"source"`
	Verification string    `json:"verification"`
	RequestID    string    `json:"request_id,omitempty"`
	// Duplicate is true when EventID was seen before within the dedup window;
	// the record is still written so the duplicate rate can be measured.
	Duplicate bool `json:"duplicate"`
	// FirstSeenAt is when the original of a duplicate was received.
	FirstSeenAt *time.Time `json:"first_seen_at,omitempty"`
	// Body is the provider's event exactly as received (for Kit, the one event
	// of the delivery; for Circle, the member object).
	Body json.RawMessage `json:"body"`
}

// DedupKey is the identity of a raw event across re-deliveries.
func (e *RawEvent) DedupKey() string { return e.Provider + ":" + e.EventID }

// CDC operations, as Debezium names them.
const (
	OpCreate = "c"
	OpUpdate = "u"
	OpDelete = "d"
	OpRead   = "r" // snapshot row
)

// Column describes one column of a CDC change.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"` // Postgres type name, e.g. text, int8, timestamptz
	Key  bool   `json:"key,omitempty"`
}

// CDCSource places a change in the WAL.
type CDCSource struct {
	LSN        string    `json:"lsn"`        // of the change, e.g. 0/16B3748 (pg_lsn text form)
	CommitLSN  string    `json:"commit_lsn"` // of its transaction's commit
	XID        uint32    `json:"xid,omitempty"`
	CommitTime time.Time `json:"commit_time"`
	Snapshot   bool      `json:"snapshot,omitempty"` // true for op r rows
	Slot       string    `json:"slot,omitempty"`
}

// Change is one row change in lr.cdc.<schema>.<table>, keyed by the JSON of Key.
type Change struct {
	V       int            `json:"v"`
	Op      string         `json:"op"`
	Schema  string         `json:"schema"`
	Table   string         `json:"table"`
	Key     map[string]any `json:"key"`
	Before  map[string]any `json:"before,omitempty"`
	After   map[string]any `json:"after,omitempty"`
	Columns []Column       `json:"columns"`
	// Unchanged lists TOASTed columns whose value the WAL did not carry (the
	// value did not change); they are absent from After, never null.
	Unchanged []string  `json:"unchanged,omitempty"`
	Source    CDCSource `json:"source"`
}

// DedupKey identifies a change across re-deliveries after a restart. The
// LSN alone is not enough: every row of a snapshot, and every row of one
// COPY, shares one; the primary key tells them apart.
func (c *Change) DedupKey() string {
	key, _ := json.Marshal(c.Key) // map keys marshal sorted: stable
	return "cdc:" + c.Schema + "." + c.Table + ":" + c.Source.LSN + ":" + c.Op + ":" + string(key)
}

// Entitlement statuses.
const (
	StatusNone     = "none"
	StatusActive   = "active"
	StatusPastDue  = "past_due"
	StatusCanceled = "canceled"
	StatusRefunded = "refunded"
	StatusDisputed = "disputed"
)

// Identity is one canonical customer in lr.identity (compacted, keyed by CustomerID).
type Identity struct {
	V          int       `json:"v"`
	CustomerID string    `json:"customer_id"`
	UserID     string    `json:"user_id,omitempty"` // the app's internal user id
	Email      string    `json:"email,omitempty"`   // normalised: trimmed, lower-case
	Emails     []string  `json:"emails,omitempty"`  // every normalised email ever linked
	Stripe     []string  `json:"stripe_customer_ids,omitempty"`
	Circle     []string  `json:"circle_member_ids,omitempty"`
	Kit        []string  `json:"kit_subscriber_ids,omitempty"`
	Sessions   []string  `json:"chat_session_ids,omitempty"`
	MergedInto string    `json:"merged_into,omitempty"` // set on a record that lost a merge
	Version    int64     `json:"version"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Entitlement is one customer's access in lr.entitlements (compacted, keyed by CustomerID).
type Entitlement struct {
	V                int        `json:"v"`
	CustomerID       string     `json:"customer_id"`
	Email            string     `json:"email,omitempty"`
	UserID           string     `json:"user_id,omitempty"`
	Plan             string     `json:"plan,omitempty"`
	Status           string     `json:"status"`
	Access           bool       `json:"access"`
	CurrentPeriodEnd *time.Time `json:"current_period_end,omitempty"`
	GraceUntil       *time.Time `json:"grace_until,omitempty"`
	// Flagged asks a person to look (disputes, refunds needing follow-up).
	Flagged        bool      `json:"flagged,omitempty"`
	FlagReason     string    `json:"flag_reason,omitempty"`
	SourceEventIDs []string  `json:"source_event_ids"`
	Version        int64     `json:"version"`
	UpdatedAt      time.Time `json:"updated_at"`
	// LastEventAt is the provider time of the newest event that shaped this
	// state: the watermark that keeps late events from moving it backwards.
	LastEventAt time.Time `json:"last_event_at"`
	// IngestedAt is when the newest causing event was received by ingest, for
	// ingest-to-entitlement latency.
	IngestedAt time.Time `json:"ingested_at"`
	// Kit and Circle ids known for this customer, so sinks need not look them up.
	CircleMemberIDs  []string `json:"circle_member_ids,omitempty"`
	KitSubscriberIDs []string `json:"kit_subscriber_ids,omitempty"`
	Deleted          bool     `json:"deleted,omitempty"` // merged away: sinks leave it alone
}

// Decision kinds.
const (
	DecisionEntitlement = "entitlement"
	DecisionLink        = "identity.link"
	DecisionMerge       = "identity.merge"
	DecisionEmailChange = "identity.email_change"
	DecisionDuplicate   = "duplicate"
)

// Decision explains one change in lr.decisions (keyed by CustomerID): the "why".
type Decision struct {
	V            int             `json:"v"`
	DecisionID   string          `json:"decision_id"` // deterministic: same input, same id
	CustomerID   string          `json:"customer_id"`
	Kind         string          `json:"kind"`
	Rule         string          `json:"rule"` // e.g. "charge.refunded: full refund revokes access"
	Before       json.RawMessage `json:"before,omitempty"`
	After        json.RawMessage `json:"after,omitempty"`
	CausingIDs   []string        `json:"causing_event_ids"`
	Flagged      bool            `json:"flagged,omitempty"`
	At           time.Time       `json:"at"`
	ProviderTime time.Time       `json:"provider_time"`
}

// Mismatch kinds.
const (
	MismatchPaidNoAccess     = "paid_no_circle_access"
	MismatchAccessNotPaid    = "circle_access_not_paid"
	MismatchPaidTaggedLead   = "paid_tagged_lead"
	MismatchRevokedStillTag  = "revoked_still_customer_tagged"
	MismatchMissingIn        = "missing_in_system"
	MismatchDuplicateRecords = "duplicate_records"
)

// Mismatch is one finding in lr.mismatches (keyed by CustomerID): opened when a
// downstream system disagrees with the desired state, closed when it agrees.
type Mismatch struct {
	V          int       `json:"v"`
	MismatchID string    `json:"mismatch_id"` // deterministic: customer|kind|system
	CustomerID string    `json:"customer_id"`
	Kind       string    `json:"kind"`
	System     string    `json:"system"` // circle, kit, stripe, app
	State      string    `json:"state"`  // open or closed
	Detail     string    `json:"detail"`
	At         time.Time `json:"at"`
}

// Sink result statuses.
const (
	SinkOK      = "ok"
	SinkError   = "error"
	SinkDryRun  = "dry_run"
	SinkNoop    = "noop"
	SinkDLQ     = "dlq"
	SinkSkipped = "skipped"
)

// SinkResult is one action a sink took (or would take) in lr.sink.results.
type SinkResult struct {
	V                  int       `json:"v"`
	ActionID           string    `json:"action_id"` // deterministic: customer|version|provider|action|target
	CustomerID         string    `json:"customer_id"`
	Email              string    `json:"email,omitempty"`
	Provider           string    `json:"provider"`
	Action             string    `json:"action"` // tag, untag, add_access_group, remove_access_group, set_fields, upsert_subscriber, …
	Target             string    `json:"target,omitempty"`
	Status             string    `json:"status"`
	HTTPStatus         int       `json:"http_status,omitempty"`
	Error              string    `json:"error,omitempty"`
	Attempts           int       `json:"attempts,omitempty"`
	DurationMS         float64   `json:"duration_ms,omitempty"`
	EntitlementVersion int64     `json:"entitlement_version"`
	At                 time.Time `json:"at"`
}

// DeadLetter is a record a stage could not handle, in lr.dlq.
type DeadLetter struct {
	V      int             `json:"v"`
	Stage  string          `json:"stage"`
	Topic  string          `json:"topic,omitempty"`
	Key    string          `json:"key,omitempty"`
	Reason string          `json:"reason"`
	Record json.RawMessage `json:"record,omitempty"`
	At     time.Time       `json:"at"`
}

// Rejection counts webhook deliveries ingest refused or could not store, in
// lr.ingest.rejections: one record per provider, reason and HTTP status for
// each interval (about a second) in which any arrived, so a flood of bad
// requests makes a handful of records. The deliveries' bodies and headers
// are not kept: they are unverified. RecordID is unique per record; a record
// written twice (a retry after an unclear failure) has the same RecordID, and
// the audit counts it once.
type Rejection struct {
	V          int       `json:"v"`
	RecordID   string    `json:"record_id"`
	Provider   string    `json:"provider"`
	Reason     string    `json:"reason"` // bad_signature, stale_timestamp, too_large, malformed, unavailable, …
	HTTPStatus int       `json:"http_status"`
	Count      int64     `json:"count"`
	FirstAt    time.Time `json:"first_at"`
	LastAt     time.Time `json:"last_at"`
	// RequestIDs are the first few deliveries' request ids (the same id is in
	// the answer and in ingest's log line), at most MaxRejectionRequestIDs.
	RequestIDs []string `json:"request_ids,omitempty"`
	Instance   string   `json:"instance"`
}

// MaxRejectionRequestIDs bounds Rejection.RequestIDs.
const MaxRejectionRequestIDs = 10

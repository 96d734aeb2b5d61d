package reconcile

import (
	"strconv"
	"strings"

	"github.com/launchready/launchready/schemas"
)

// SinkKey is the dedup key of a sink result: one attempt's outcome of one
// action (a retry of the same action is a new observation).
func SinkKey(r *schemas.SinkResult) string {
	return "sink:" + r.ActionID + ":" + r.Status + ":" + strconv.Itoa(r.Attempts)
}

// FactFromSink turns a sink result into an observation of what Circle or Kit
// holds for the customer the sink acted for. The sinks push only differences
// from the provider's current state, so an action that failed or was only
// planned (dry run) shows the provider held the opposite; an action that
// succeeded or found nothing to do shows the target state.
func FactFromSink(r *schemas.SinkResult) *Fact {
	if r.ActionID == "" || (r.Provider != schemas.ProviderCircle && r.Provider != schemas.ProviderKit) {
		return nil
	}
	var after bool
	switch r.Status {
	case schemas.SinkOK, schemas.SinkNoop:
		after = true
	case schemas.SinkDryRun, schemas.SinkError, schemas.SinkDLQ:
		after = false
	default:
		return nil
	}
	f := &Fact{Key: SinkKey(r), Source: SourceSink, Type: r.Provider + "." + r.Action + ":" + r.Status, EventID: r.ActionID, At: r.At.UTC()}
	o := &Observe{System: r.Provider, Customer: r.CustomerID}
	kind, added := sinkAction(r.Action)
	switch {
	case kind != "":
		h := Holding{Kind: kind, Present: added == after}
		if id, err := strconv.ParseInt(r.Target, 10, 64); err == nil {
			h.ID = id
		} else {
			h.Name = r.Target
		}
		o.Holds = []Holding{h}
	case after && isCreate(r.Action):
		// The provider now has a record for the customer; a numeric target
		// is its id, linked to the customer when the fact is applied.
		if _, err := strconv.ParseInt(r.Target, 10, 64); err != nil {
			return nil
		}
		o.Record = r.Target
	default:
		return nil
	}
	o.Email = r.Email
	f.Observe = o
	if len(f.Links) == 0 && r.CustomerID == "" && NormEmail(r.Email) == "" {
		return nil
	}
	return f
}

// sinkAction reads an action name: the holding kind it changes and whether
// it adds (true) or removes it.
func sinkAction(a string) (kind string, added bool) {
	a = strings.ToLower(a)
	remove := strings.HasPrefix(a, "untag") || strings.HasPrefix(a, "remove")
	switch {
	case strings.Contains(a, "access_group"), strings.Contains(a, "group"):
		return HoldGroup, !remove
	case strings.Contains(a, "tag"):
		return HoldTag, !remove
	}
	return "", false
}

func isCreate(a string) bool {
	a = strings.ToLower(a)
	return strings.HasPrefix(a, "upsert") || strings.HasPrefix(a, "create") || strings.HasPrefix(a, "invite")
}

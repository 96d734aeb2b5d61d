package audit

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTimeline renders a timeline as a table for people.
func WriteTimeline(w io.Writer, r *TimelineResult) error {
	bw := &errWriter{w: w}
	fmt.Fprintf(bw, "customer: %s", r.Query)
	if len(r.CustomerIDs) > 0 {
		fmt.Fprintf(bw, "  (canonical id %s)", strings.Join(r.CustomerIDs, ", "))
	} else {
		fmt.Fprint(bw, "  (no identity record links it)")
	}
	fmt.Fprintln(bw)
	if len(r.Keys) > 1 {
		fmt.Fprintf(bw, "keys: %s\n", strings.Join(r.Keys, ", "))
	}
	if r.Truncated {
		fmt.Fprintf(bw, "(older entries left out: showing the latest %d)\n", len(r.Entries))
	}
	fmt.Fprintln(bw)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tKIND\tSOURCE\tWHAT\tID\tSTATUS\tDETAIL")
	for _, e := range r.Entries {
		kind := e.Kind
		if e.Duplicate {
			kind += " [DUP]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format("2006-01-02 15:04:05.000"), kind,
			cell(e.Source), cell(e.What), cell(e.ID), cell(e.Status), cell(e.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Entries) == 0 {
		fmt.Fprintln(bw, "(nothing recorded)")
	}
	return bw.err
}

// WriteStats renders stats as tables for people.
func WriteStats(w io.Writer, s *StatsResult) error {
	bw := &errWriter{w: w}
	fmt.Fprintf(bw, "window: %s → %s (%s)\n\n", formatTime(s.Since), formatTime(s.Until), s.Until.Sub(s.Since).Round(1e9))
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PROVIDER\tRECEIVED\tDUPLICATES\tDUP RATE\tWEBHOOKS\tREJECTED\tFAILURE RATE\t")
	for _, p := range s.Providers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\t\n", p.Provider, p.Received, p.Duplicates, pct(p.DuplicateRate), p.Webhooks, p.Rejected, pct(p.WebhookFailureRate))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Providers) == 0 {
		fmt.Fprintln(bw, "(no event received)")
	}
	for _, p := range s.Providers {
		if p.Rejected == 0 {
			continue
		}
		reasons := make([]string, 0, len(p.RejectedByReason))
		for r := range p.RejectedByReason {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = r + "=" + strconv.FormatInt(p.RejectedByReason[r], 10)
		}
		fmt.Fprintf(bw, "rejected %s: %s\n", p.Provider, strings.Join(parts, " "))
	}
	m := s.Mismatches
	fmt.Fprintf(bw, "\nmismatches: %d open / %d customers = %s (customers with one open: %d); %d opened, %d closed in the window\n",
		m.Open, m.Customers, pct(m.Rate), m.CustomersOpen, m.Opened, m.Closed)
	kinds := make([]string, 0, len(m.OpenByKind))
	for k := range m.OpenByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(bw, "  %-32s %d\n", k, m.OpenByKind[k])
	}
	l := s.Latency
	if l.P50MS == nil {
		fmt.Fprintf(bw, "\ningest → entitlement latency: n/a (no entitlement with an ingest time)\n")
	} else {
		fmt.Fprintf(bw, "\ningest → entitlement latency: p50 %s, p95 %s (%d states)\n", ms(*l.P50MS), ms(*l.P95MS), l.Count)
	}
	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SINK\tSUCCEEDED\tFAILED\tBY STATUS\t")
	for _, sk := range s.Sinks {
		statuses := make([]string, 0, len(sk.ByStatus))
		for st, n := range sk.ByStatus {
			statuses = append(statuses, st+"="+strconv.FormatInt(n, 10))
		}
		sort.Strings(statuses)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", sk.Provider, sk.Succeeded, sk.Failed, strings.Join(statuses, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Sinks) == 0 {
		fmt.Fprintln(bw, "(no sink action)")
	}
	if len(s.DeadLetters) > 0 {
		stages := make([]string, 0, len(s.DeadLetters))
		for st, n := range s.DeadLetters {
			stages = append(stages, st+"="+strconv.FormatInt(n, 10))
		}
		sort.Strings(stages)
		fmt.Fprintf(bw, "\ndead letters: %s\n", strings.Join(stages, " "))
	}
	return bw.err
}

// WriteWhy renders the answer for people: the paragraph, then its evidence.
func WriteWhy(w io.Writer, a *Answer) error {
	bw := &errWriter{w: w}
	fmt.Fprintln(bw, a.Text)
	if len(a.Causes) > 0 {
		fmt.Fprintln(bw, "\ncausing records:")
		for _, c := range a.Causes {
			fmt.Fprintf(bw, "  %s  %s %s %s  %s\n", c.At.UTC().Format("2006-01-02 15:04:05.000"), c.Source, c.What, c.ID, c.Detail)
		}
	}
	return bw.err
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ").Replace(s)
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

func ms(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
}

// errWriter keeps the first write error so rendering code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

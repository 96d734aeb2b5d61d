package cdc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
)

// Each refusal is one line, marked ErrSetup (not retried), and names the fix.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		fix  string
	}{
		{"wal_level", walLevelError("replica"), "ALTER SYSTEM SET wal_level = logical"},
		{"privilege", privilegeError("app", false), `ALTER ROLE "app" WITH REPLICATION`},
		{"busy slot", slotBusyError("launchready", 4242), "pg_terminate_backend(4242)"},
		{"publication", publicationMissingError("launchready", []string{"public.users", "app.plans"}), `ALTER PUBLICATION "launchready" ADD TABLE "public"."users", "app"."plans"`},
		{"lost slot", lostSlotError("launchready"), "--resnapshot"},
		{"foreign slot", checkSlot(slotInfo{Exists: true, Plugin: "wal2json", Database: "app"}, "launchready", "app"), "choose another LR_CDC_SLOT"},
		{"wal lost", checkSlot(slotInfo{Exists: true, Plugin: "pgoutput", Database: "app", WALStatus: "lost"}, "launchready", "app"), "--resnapshot"},
		{"hba", classifyConnectError(&pgconn.PgError{Code: "28000", Message: "no pg_hba.conf entry for replication connection"}), "pg_hba.conf"},
		{"no senders", classifyConnectError(&pgconn.PgError{Code: "53300", Message: "number of requested standby connections exceeds max_wal_senders"}), "max_wal_senders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, ErrSetup) {
				t.Fatalf("%v is not ErrSetup", tc.err)
			}
			msg := tc.err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.fix) {
				t.Errorf("message %q: want one line naming %q", msg, tc.fix)
			}
		})
	}
	for _, ok := range []error{walLevelError("logical"), privilegeError("app", true),
		checkSlot(slotInfo{}, "s", "app"), checkSlot(slotInfo{Exists: true, Plugin: "pgoutput", Database: "app", WALStatus: "reserved"}, "s", "app")} {
		if ok != nil {
			t.Errorf("unexpected refusal: %v", ok)
		}
	}
	if err := classifyConnectError(errors.New("connection refused")); errors.Is(err, ErrSetup) {
		t.Error("a network error was taken for a setup error")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		slot   string
		tables []string
		ok     bool
	}{
		{"defaults", "launchready", nil, true},
		{"tables", "launchready", []string{"users", "app.plans"}, true},
		{"bad slot", "Launch-Ready", nil, false},
		{"bad table", "launchready", []string{"a.b.c"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.CDCSlot, cfg.CDCTables = tc.slot, tc.tables
			env := &app.Env{Cfg: cfg, Log: quietLog(), Health: obs.NewHealth()}
			c, err := New(env, Options{})
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v", err)
			}
			if err == nil && len(tc.tables) > 0 && c.tables[0] != "public.users" {
				t.Errorf("tables %v", c.tables)
			}
		})
	}
}

func TestSnapshotRouteNeedsOpsToken(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: quietLog(), Health: health, Mux: health.Mux()}
	if _, err := New(env, Options{}); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	env.Mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/cdc/snapshot?table=public.users", nil))
	if w.Code != http.StatusForbidden {
		t.Errorf("without LR_OPS_TOKEN: %d", w.Code)
	}
	if ready, _ := health.Result(context.Background()); ready {
		t.Error("ready before Run")
	}
}

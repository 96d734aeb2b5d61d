package cdc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// runUntilError runs a stage and returns what Run returned.
func (f *fixture) runUntilError(opt Options) error {
	f.t.Helper()
	r := f.start(opt)
	select {
	case err := <-r.done:
		close(r.done)
		return err
	case <-time.After(30 * time.Second):
		f.t.Fatal("cdc kept running")
		return nil
	}
}

func assertSetupError(t *testing.T, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, ErrSetup) {
		t.Fatalf("got %v, want a setup error", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("not one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%q does not say %q", msg, w)
		}
	}
}

func TestRefusesUserWithoutReplication(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tb := f.counterTable("priv", 0)
	f.tablesSetting(tb)
	role := "lr_t" + f.id + "_norepl"
	f.exec(`CREATE ROLE ` + role + ` LOGIN NOREPLICATION`)
	t.Cleanup(func() {
		_, _ = f.app.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
	})
	f.cfg.PostgresURL = strings.Replace(f.cfg.PostgresURL, "postgres@", role+"@", 1)
	assertSetupError(t, f.runUntilError(Options{}), "REPLICATION", "ALTER ROLE "+quoteIdent(role))
}

func TestRefusesPublicationWithoutTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, b := f.counterTable("a", 0), f.counterTable("b", 0)
	f.exec(`CREATE PUBLICATION ` + quoteIdent(f.cfg.CDCPublication) + ` FOR TABLE ` + a)
	f.tablesSetting(a, b)
	assertSetupError(t, f.runUntilError(Options{}), "lacks public."+b, "ALTER PUBLICATION", "ADD TABLE")

	f.tablesSetting(a, "missing_"+f.id)
	assertSetupError(t, f.runUntilError(Options{}), "does not exist")
}

func TestRefusesBusySlot(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tb := f.counterTable("busy", 0)
	f.tablesSetting(tb)
	first := f.start(Options{})
	first.waitStreaming(t)
	assertSetupError(t, f.runUntilError(Options{SlotBusyWait: 300 * time.Millisecond}), "is in use by process", "pg_terminate_backend(")
	// The first one is undisturbed.
	if ready, detail := first.env.Health.Result(context.Background()); !ready {
		t.Errorf("first stage not ready: %v", detail)
	}
}

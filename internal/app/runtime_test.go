package app

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestTuneRuntimeKeepsAnExplicitGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	t.Setenv("GOGC", "150")
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetGCPercent(150)
	if got := TuneRuntime(); got != 150 {
		t.Fatalf("TuneRuntime with GOGC=150 = %d", got)
	}
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("GC percent changed to %d despite GOGC=150", got)
	}
}

func TestTuneRuntimeDefaults(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	// t.Setenv then unsetting is not possible; clear both for this test.
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	unsetenv(t, "GOGC")
	unsetenv(t, "GOMEMLIMIT")
	debug.SetMemoryLimit(1 << 62)
	if got := TuneRuntime(); got != DefaultGCPercent {
		t.Fatalf("TuneRuntime = %d, want %d", got, DefaultGCPercent)
	}
	if got := debug.SetGCPercent(DefaultGCPercent); got != DefaultGCPercent {
		t.Fatalf("GC percent is %d, want %d", got, DefaultGCPercent)
	}
	total := memAvailable()
	if total <= 0 || total > memTotal() {
		t.Fatalf("memory available %d, machine %d", total, memTotal())
	}
	if got := debug.SetMemoryLimit(-1); got != total/2 {
		t.Fatalf("memory limit %d, want half of %d", got, total)
	}
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}

package app

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the garbage collector's target the binary uses when
// GOGC is not set. The stages keep small live heaps (customer state, a batch
// or two) and allocate fast (every record is decoded and re-encoded), so
// Go's default of 100 collects several times a second and costs about a
// tenth of the reconciler's CPU; 400 trades memory for that time.
const DefaultGCPercent = 400

// TuneRuntime applies DefaultGCPercent unless GOGC is set, and, unless
// GOMEMLIMIT is set, a soft memory limit of half the memory the process may
// use (its cgroup's limit in a container, else the machine's) so the larger
// GC target cannot grow the heap past what there is. It returns the GC
// percent in effect.
func TuneRuntime() int {
	pct := -1
	if v, ok := os.LookupEnv("GOGC"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			pct = n
		}
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		pct = DefaultGCPercent
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		if total := memAvailable(); total > 0 {
			debug.SetMemoryLimit(total / 2)
		}
	}
	return pct
}

// memAvailable is the memory the process may use: the cgroup's limit when
// one is set below the machine's memory, else the machine's.
func memAvailable() int64 {
	total := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (total == 0 || n < total) {
				return n
			}
		}
	}
	return total
}

// memTotal is the machine's memory in bytes from /proc/meminfo (0 when
// unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 2 && fields[1] == "kB" {
				if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}

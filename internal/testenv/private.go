package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Private is a service instance of a test's own, in a temporary stack folder
// on free ports, that the test may stop and start (to prove that nothing is
// lost while Kafka or ClickHouse is down) without disturbing other tests.
type Private struct {
	t       testing.TB
	service string
	dir     string
	env     []string
	// Addr is host:port of the instance's client port.
	Addr string
}

// PrivateKafka starts a single-node Kafka broker of the test's own, using the
// jars of the shared stack. It is removed when the test ends.
func PrivateKafka(t testing.TB) *Private {
	t.Helper()
	port, ctl := freePort(t), freePort(t)
	p := newPrivate(t, "kafka", []string{
		fmt.Sprintf("LR_STACK_KAFKA_PORT=%d", port),
		fmt.Sprintf("LR_STACK_KAFKA_CONTROLLER_PORT=%d", ctl),
		"LR_STACK_KAFKA_LIBS=" + filepath.Join(stackDir(), "kafka", "libs"),
		"LR_STACK_KAFKA_HEAP=512m",
	})
	p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	p.Start()
	return p
}

// PrivateClickHouse starts a ClickHouse server of the test's own.
func PrivateClickHouse(t testing.TB) *Private {
	t.Helper()
	port, httpPort := freePort(t), freePort(t)
	p := newPrivate(t, "clickhouse", []string{
		fmt.Sprintf("LR_STACK_CH_PORT=%d", port),
		fmt.Sprintf("LR_STACK_CH_HTTP_PORT=%d", httpPort),
	})
	p.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	p.Start()
	return p
}

func newPrivate(t testing.TB, service string, env []string) *Private {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	dir, err := os.MkdirTemp("", "lr-private-"+service+"-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Private{t: t, service: service, dir: dir, env: append(env, "LR_STACK_DIR="+dir)}
	t.Cleanup(func() {
		p.run("down")
		os.RemoveAll(dir)
	})
	return p
}

// Start starts (or restarts) the instance and waits until it answers.
func (p *Private) Start() {
	p.t.Helper()
	if out, err := p.run("up"); err != nil {
		p.t.Fatalf("testenv: private %s did not start: %v\n%s", p.service, err, out)
	}
}

// Stop stops the instance; its data is kept for the next Start.
func (p *Private) Stop() {
	p.t.Helper()
	if out, err := p.run("down"); err != nil {
		p.t.Fatalf("testenv: private %s did not stop: %v\n%s", p.service, err, out)
	}
}

func (p *Private) run(verb string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(Root(), "scripts", "stack.sh"), verb, p.service)
	cmd.Env = append(os.Environ(), p.env...)
	return cmd.CombinedOutput()
}

func stackDir() string {
	if d := os.Getenv("LR_STACK_DIR"); d != "" {
		return d
	}
	return filepath.Join(Root(), ".stack")
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

package obs

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/launchready/launchready/internal/config"
)

// A secret set in config must never reach a log line: not as a value, not
// inside an error chain, not in the message, not under a sensitive key.
func TestSecretFromConfigNeverLogged(t *testing.T) {
	t.Parallel()
	const secret = "whsec_Sup3rS3cretValue42xyz"
	const kitKey = "kit-api-key-0123456789"
	env := map[string]string{"LR_STRIPE_WEBHOOK_SECRET": secret, "LR_KIT_API_KEY": kitKey}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := Component(NewLogger(&buf, "debug"), "test")
	wrapped := fmt.Errorf("post https://x/?key=%s: %w", kitKey, errors.New("refused"))
	log.Error("verify failed with "+secret, "err", wrapped)
	log.Info("config", "cfg", cfg, "stripe", cfg.StripeWebhookSecret, "raw", cfg.StripeWebhookSecret.Reveal())
	log.With("authorization", "Bearer abc").Info("header", "Authorization", "Bearer "+kitKey)
	log.Warn("group", slog.Group("req", "api_key", kitKey, "note", "key is "+kitKey))
	log.Info("card", "number", "4242 4242 4242 4242", "ts_ms", "1732900000000")

	out := buf.String()
	for _, leaked := range []string{secret, kitKey, "4242 4242 4242 4242", "Bearer abc"} {
		if strings.Contains(out, leaked) {
			t.Errorf("log output contains %q:\n%s", leaked, out)
		}
	}
	if !strings.Contains(out, "1732900000000") {
		t.Errorf("a millisecond timestamp was scrubbed as if it were a card number:\n%s", out)
	}
	if !strings.Contains(out, `"component":"test"`) {
		t.Errorf("component attribute missing:\n%s", out)
	}
	if strings.Count(out, "\n") != 5 {
		t.Errorf("want 5 log lines, got:\n%s", out)
	}
}

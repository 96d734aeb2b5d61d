package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/launchready/launchready/internal/config"
)

func init() {
	register("settings", "print every setting (LR_* variable, flag, default) as a Markdown table", runSettings)
}

func runSettings(_ context.Context, _ []string) error {
	w := os.Stdout
	fmt.Fprintln(w, "| variable | default | flag | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range config.Settings() {
		help := s.Help
		if s.Secret {
			help += " (secret: never logged)"
		}
		fmt.Fprintf(w, "| `%s` | `%s` | `--%s` | %s |\n", s.Env, s.Default, s.Flag, strings.ReplaceAll(help, "|", "\\|"))
	}
	return nil
}

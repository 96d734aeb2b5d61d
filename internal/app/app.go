// Package app is what every stage is given when it starts: configuration,
// logger, health checks and the shared HTTP mux. `launchready run` builds one
// Env and hands it to every stage; a stage run alone gets its own.
package app

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
)

// Env is a stage's environment. A stage registers its HTTP routes on Mux and
// its readiness checks on Health in its constructor, before the server starts.
type Env struct {
	Cfg    *config.Config
	Log    *slog.Logger
	Health *obs.Health
	Mux    *http.ServeMux
}

// Stage is one long-running part of the pipeline.
type Stage interface {
	// Name is the stage's component name in logs and metrics.
	Name() string
	// Run blocks until ctx ends or the stage fails. On ctx end it stops
	// reading, drains, flushes and acknowledges what is durable, then returns
	// nil. It is called once.
	Run(ctx context.Context) error
}

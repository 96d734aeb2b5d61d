package reconcile

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Settings names where the app database keeps its users and chatbot
// sessions. They are read from the environment (SettingsFromEnv):
//
//	LR_APP_USERS_TABLE           schema.table of the app's users      (public.users)
//	LR_APP_USERS_ID_COLUMN       its internal user id column          (id)
//	LR_APP_USERS_EMAIL_COLUMN    its email column                     (email)
//	LR_APP_SESSIONS_TABLE        schema.table of chatbot sessions     (public.chat_sessions; "-" disables)
//	LR_APP_SESSIONS_ID_COLUMN    the session id column                (id)
//	LR_APP_SESSIONS_USER_COLUMN  the column holding the user id       (user_id)
//	LR_RECONCILE_SWEEP           how often grace periods are re-checked (1m)
type Settings struct {
	UsersTable, UsersIDColumn, UsersEmailColumn         string
	SessionsTable, SessionsIDColumn, SessionsUserColumn string
	// Sweep is how often customers in a grace period are re-evaluated, so
	// access ends when the grace period does even without a new event.
	Sweep time.Duration
}

// DefaultSettings are the settings when no variable is set.
func DefaultSettings() Settings {
	return Settings{
		UsersTable: "public.users", UsersIDColumn: "id", UsersEmailColumn: "email",
		SessionsTable: "public.chat_sessions", SessionsIDColumn: "id", SessionsUserColumn: "user_id",
		Sweep: time.Minute,
	}
}

// SettingsFromEnv reads Settings from the process environment.
func SettingsFromEnv() (Settings, error) { return SettingsFrom(os.LookupEnv) }

// SettingsFrom reads Settings through lookup, for tests.
func SettingsFrom(lookup func(string) (string, bool)) (Settings, error) {
	s := DefaultSettings()
	for env, dst := range map[string]*string{
		"LR_APP_USERS_TABLE":          &s.UsersTable,
		"LR_APP_USERS_ID_COLUMN":      &s.UsersIDColumn,
		"LR_APP_USERS_EMAIL_COLUMN":   &s.UsersEmailColumn,
		"LR_APP_SESSIONS_TABLE":       &s.SessionsTable,
		"LR_APP_SESSIONS_ID_COLUMN":   &s.SessionsIDColumn,
		"LR_APP_SESSIONS_USER_COLUMN": &s.SessionsUserColumn,
	} {
		if v, ok := lookup(env); ok && strings.TrimSpace(v) != "" {
			*dst = strings.TrimSpace(v)
		}
	}
	if s.SessionsTable == "-" {
		s.SessionsTable = ""
	}
	if v, ok := lookup("LR_RECONCILE_SWEEP"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, fmt.Errorf("LR_RECONCILE_SWEEP: not a positive duration: %q", v)
		}
		s.Sweep = d
	}
	return s, s.Validate()
}

// Validate checks the table names are schema.table.
func (s Settings) Validate() error {
	var errs []error
	for env, t := range map[string]string{"LR_APP_USERS_TABLE": s.UsersTable, "LR_APP_SESSIONS_TABLE": s.SessionsTable} {
		if t == "" && env == "LR_APP_SESSIONS_TABLE" {
			continue
		}
		if sc, tb, ok := strings.Cut(t, "."); !ok || sc == "" || tb == "" || strings.Contains(tb, ".") {
			errs = append(errs, fmt.Errorf("%s: must be schema.table, got %q", env, t))
		}
	}
	return errors.Join(errs...)
}

// CDCTopics returns the relative CDC topic names of the configured tables.
func (s Settings) CDCTopics() []string {
	var out []string
	for _, t := range []string{s.UsersTable, s.SessionsTable} {
		if sc, tb, ok := strings.Cut(t, "."); ok {
			out = append(out, "cdc."+sc+"."+tb)
		}
	}
	return out
}

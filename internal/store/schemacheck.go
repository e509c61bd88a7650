package store

import (
	"context"
	"fmt"
	"strings"
)

// pipelineTables are the tables Insert and Quarantine write.
var pipelineTables = []string{"patient_records", "sync_conflicts", "sync_quarantine", "poller_control"}

// CheckSchema verifies, without changing anything, that every schema
// version this binary knows is recorded as applied and that the tables the
// pipeline writes are there. Migrate normally ensures both; this catches a
// database someone restored, truncated or dropped a table in, at start
// instead of at the first insert. Newer versions are fine (rolling deploy).
func (s *Store) CheckSchema(ctx context.Context) error {
	applied := map[int]bool{}
	rows, err := s.DB.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return wrap("check schema: read versions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return wrap("check schema: read versions", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return wrap("check schema: read versions", err)
	}
	for _, m := range migrations {
		if !applied[m.version] {
			return fmt.Errorf("store: schema version %d (%s) is not applied; this binary needs version %d", m.version, m.name, SchemaVersion())
		}
	}
	// From the catalogue, not the tables themselves: a table locked by a
	// long job (LOCK TABLES, an ALTER) must not stop a worker from
	// starting; its inserts then wait and retry like any other.
	present := map[string]bool{}
	trows, err := s.DB.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
	if err != nil {
		return wrap("check schema: list tables", err)
	}
	defer trows.Close()
	for trows.Next() {
		var name string
		if err := trows.Scan(&name); err != nil {
			return wrap("check schema: list tables", err)
		}
		present[strings.ToLower(name)] = true
	}
	if err := trows.Err(); err != nil {
		return wrap("check schema: list tables", err)
	}
	for _, table := range pipelineTables {
		if !present[table] {
			return fmt.Errorf("store: check schema: table %s is missing", table)
		}
	}
	return nil
}

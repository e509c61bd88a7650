package store

import (
	"context"
	"database/sql"
	"errors"
)

// SetPollersStopped records whether the operator wants the pipeline
// (topic, group) stopped. Workers do not start its pollers while it is.
func (s *Store) SetPollersStopped(ctx context.Context, topic, group string, stopped bool) error {
	_, err := s.DB.ExecContext(ctx, `INSERT INTO poller_control (topic, consumer_group, stopped) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE stopped = VALUES(stopped)`, topic, group, stopped)
	return wrap("set poller stop intent", err)
}

// PollersStopped reports the operator's stop intent for (topic, group);
// a pipeline never stopped has no row and is not stopped.
func (s *Store) PollersStopped(ctx context.Context, topic, group string) (bool, error) {
	var stopped bool
	err := s.DB.QueryRowContext(ctx, `SELECT stopped FROM poller_control WHERE topic = ? AND consumer_group = ?`, topic, group).Scan(&stopped)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return stopped, wrap("read poller stop intent", err)
}

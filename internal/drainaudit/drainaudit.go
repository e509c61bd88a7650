// Package drainaudit compares what a drain left in the database with what
// was published: every key one row, every other version of it a conflict,
// nothing stored twice, nothing stored that nobody published. The chaos
// tests and the production rehearsal's drill judge a drain with it, from
// outside the workers (rows only), so they keep working whatever shape the
// workflows take inside.
package drainaudit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Result is what the database holds for the published messages.
type Result struct {
	RowsExpected int // distinct keys among the well-formed messages
	RowsStored   int
	Conflicts    int // rows in sync_conflicts
	// Doubled counts versions stored more than once (as row or conflict)
	// and versions nobody published.
	Doubled int
	// Lost counts published versions found neither as row nor conflict.
	Lost int
	// BadExpected is how many messages are malformed and must be
	// quarantined.
	BadExpected int
	// Unknown names a few keys holding versions nobody published.
	Unknown []string
}

// Audit reads patient_records and sync_conflicts for the keys starting
// with keyPrefix ("" = every row) and compares them with msgs, the
// messages as published (malformed ones included).
func Audit(ctx context.Context, db *sql.DB, msgs []syncevent.OutMessage, keyPrefix string) (Result, error) {
	var r Result
	want := map[string]map[string]bool{}
	for i, m := range msgs {
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) {
			r.BadExpected++
			continue
		}
		ev, err := syncevent.Parse(m.Key, fmt.Sprint("m", i), m.Body)
		if err != nil {
			return r, fmt.Errorf("drainaudit: the generator's well-formed message %d does not parse: %w", i, err)
		}
		if want[m.Key] == nil {
			want[m.Key] = map[string]bool{}
		}
		want[m.Key][ev.Hash] = true
	}
	r.RowsExpected = len(want)

	got := map[string]map[string]int{}
	scan := func(table string) (int, error) {
		// The prefix is the drill's own random string; LIKE's wildcards
		// are escaped all the same.
		esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(keyPrefix)
		rows, err := db.QueryContext(ctx, "SELECT local_record_id, payload_hash FROM "+table+" WHERE local_record_id LIKE ?", esc+"%")
		if err != nil {
			return 0, fmt.Errorf("drainaudit: read %s: %w", table, err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var k, h string
			if err := rows.Scan(&k, &h); err != nil {
				return 0, fmt.Errorf("drainaudit: read %s: %w", table, err)
			}
			if got[k] == nil {
				got[k] = map[string]int{}
			}
			got[k][h]++
			n++
		}
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("drainaudit: read %s: %w", table, err)
		}
		return n, nil
	}
	var err error
	if r.RowsStored, err = scan("patient_records"); err != nil {
		return r, err
	}
	if r.Conflicts, err = scan("sync_conflicts"); err != nil {
		return r, err
	}
	for k, hs := range got {
		for h, n := range hs {
			if n > 1 {
				r.Doubled++
			}
			if !want[k][h] {
				r.Doubled++
				if len(r.Unknown) < 10 {
					r.Unknown = append(r.Unknown, k)
				}
			}
		}
	}
	for k, hs := range want {
		for h := range hs {
			if got[k][h] == 0 {
				r.Lost++
			}
		}
	}
	return r, nil
}

// Quarantined counts the distinct messages in sync_quarantine.
func Quarantined(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(DISTINCT message_id) FROM sync_quarantine").Scan(&n); err != nil {
		return 0, fmt.Errorf("drainaudit: count quarantine: %w", err)
	}
	return n, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

func conflictsCommand() *command {
	return &command{
		name:    "conflicts",
		summary: "list, show or resolve same-key/different-payload conflicts",
		about: `A conflict is a message whose key was already stored with another payload.
The stored record is left as it was and the incoming version waits in
sync_conflicts until an operator keeps one of the two. Resolving runs a
workflow (audited in Temporal) whose one database transaction either keeps
the stored record or replaces it with the incoming version, keeping the
replaced version in sync_conflicts. Resolving twice is a no-op.`,
		actions: []*command{
			tableListing[conflictItem]{
				summary:  "list conflicts (open ones by default)",
				synopsis: "conflicts list [--status S|all] [--key KEY] [--limit N] [--after ID] [--json]",
				about:    "Lists conflicts, oldest first. Payloads are never shown here.",
				what:     "conflicts",
				statuses: []string{store.ConflictOpen, store.ConflictResolvedKeepExisting, store.ConflictResolvedIncoming, "all"},
				none:     "no conflicts",
				header:   "ID\tKEY\tSTATUS\tMESSAGE ID\tRECEIVED AT\tINCOMING\tSTORED WHEN SEEN\tRESOLVED AT",
				fetch:    listConflicts,
				id:       func(c conflictItem) int64 { return c.ID },
				row: func(c conflictItem) string {
					return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s", c.ID, c.Key, c.Status, orDash(c.MessageID),
						fmtTime(c.ReceivedAt), short(c.IncomingHash), short(c.StoredHash), fmtTime(c.ResolvedAt))
				},
			}.command(),
			{
				name: "show", summary: "show a key's stored record and its conflicting versions",
				synopsis: "conflicts show KEY [--show-payload]",
				about:    "Shows a key's stored record and every conflicting version. Patient data is masked unless --show-payload.",
				needs:    needStore, args: exactly(1, "KEY"), patientData: true,
				run: conflictsShow,
			},
			{
				name: "resolve", summary: "settle a key's conflict: --keep existing or --keep incoming",
				synopsis: "conflicts resolve KEY --keep existing|incoming [--id N]",
				about: `
Settles a conflict of KEY with a ResolveConflictWorkflow (ID
resolve-conflict-<KEY>-<ID>). --keep existing leaves the stored record;
--keep incoming replaces it with the conflicting version in one
transaction, keeping the replaced version in sync_conflicts. When KEY has
several open conflicts, --id names one. A conflict already resolved is left
as it is (no-op).`,
				needs: needTemporal | needStore, args: exactly(1, "KEY"),
				setup: func(fs *flags) runFunc {
					var keep string
					fs.enumVar(&keep, "keep", "`WHICH` version to keep: existing or incoming", contract.KeepExisting, contract.KeepIncoming)
					id := fs.Int64("id", 0, "the conflict to resolve, when the key has several open ones")
					timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the resolution")
					fs.check(func([]string) error {
						if keep == "" {
							return usagef("--keep must be existing or incoming")
						}
						return nil
					})
					return func(ctx context.Context, e *env, args []string) error {
						return conflictsResolve(ctx, e, args[0], keep, *id, *timeout)
					}
				},
			},
		},
	}
}

// conflictItem is one row of `conflicts list --json`.
type conflictItem struct {
	ID           int64     `json:"id"`
	Key          string    `json:"key"`
	Status       string    `json:"status"`
	MessageID    string    `json:"messageId"`
	ReceivedAt   time.Time `json:"receivedAt"`
	IncomingHash string    `json:"incomingHash"`
	// StoredHash is the stored record's hash when the conflict was seen.
	StoredHash string    `json:"storedHash"`
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
}

func listConflicts(ctx context.Context, st *store.Store, f pageFilter) ([]conflictItem, error) {
	rows, err := st.ListConflicts(ctx, store.ConflictFilter{Status: f.storeStatus(), Key: f.key, AfterID: f.after, Limit: f.limit, WithoutPayload: true})
	return mapAll(rows, func(c store.ConflictRow) conflictItem {
		return conflictItem{
			ID: c.ID, Key: c.Key, Status: c.Status, MessageID: c.MessageID, ReceivedAt: c.ReceivedAt,
			IncomingHash: c.Hash, StoredHash: c.ExistingHash, ResolvedAt: c.ResolvedAt,
		}
	}), err
}

func conflictsShow(ctx context.Context, e *env, args []string) error {
	key, show := args[0], e.showPayload
	row, ok, err := e.st.Record(ctx, key)
	if err != nil {
		return err
	}
	cs, err := e.st.Conflicts(ctx, key)
	if err != nil {
		return err
	}
	if !ok && len(cs) == 0 {
		return fmt.Errorf("key %s has no stored record and no conflicts", key)
	}
	printRow(e, row, ok, show)
	printConflicts(e, cs, show)
	if ok {
		printConflictDiffs(e, row, cs, show)
	}
	return nil
}

// printConflictDiffs shows, for each open conflict, the fields that differ
// from the stored record and which version the device wrote first.
func printConflictDiffs(e *env, row store.Row, cs []store.ConflictRow, show bool) {
	for _, c := range cs {
		if c.Status != store.ConflictOpen {
			continue
		}
		e.printf("conflict #%d against the stored record:\n", c.ID)
		e.printf("  first by device timestamp: %s\n", firstByDevice(row.DeviceTime, deviceTime(row.Key, c.Payload)))
		changes, err := diffJSON(row.Payload, c.Payload)
		if err != nil {
			e.printf("  fields: cannot compare (%v)\n", err)
			continue
		}
		if len(changes) == 0 {
			e.printf("  fields: none differ (the payloads differ only in form)\n")
			continue
		}
		e.table(func(tw io.Writer) {
			fmt.Fprintf(tw, "  FIELD\tSTORED\tINCOMING\n")
			for _, ch := range changes {
				fmt.Fprintf(tw, "  %s\t%s\t%s\n", ch.Path, renderLeaf(ch.Stored, ch.InStored, show), renderLeaf(ch.Incoming, ch.InIncome, show))
			}
		})
	}
	if !show {
		e.printf("(values masked; --show-payload shows them)\n")
	}
}

func printRow(e *env, r store.Row, ok, show bool) {
	if !ok {
		e.printf("stored record: none\n")
		return
	}
	e.printf("stored record:\n")
	e.printf("  id:          %d\n", r.ID)
	e.printf("  message id:  %s\n", orDash(r.MessageID))
	e.printf("  patient id:  %s\n", maskField(r.PatientID, show))
	e.printf("  notes:       %s\n", maskField(r.Notes, show))
	e.printf("  device time: %s\n", fmtTime(r.DeviceTime))
	e.printf("  hash:        %s\n", r.Hash)
	e.printf("  created at:  %s\n", fmtTime(r.CreatedAt))
	e.printf("  updated at:  %s\n", fmtTime(r.UpdatedAt))
	e.printf("  payload:     %s\n", maskBody(r.Payload, show))
}

func printConflicts(e *env, cs []store.ConflictRow, show bool) {
	if !e.section("conflicts", len(cs)) {
		return
	}
	for _, c := range cs {
		e.printf("  #%d %s  message %s  received %s  resolved %s\n", c.ID, c.Status, orDash(c.MessageID), fmtTime(c.ReceivedAt), fmtTime(c.ResolvedAt))
		e.printf("     incoming hash %s, stored hash when seen %s\n", c.Hash, c.ExistingHash)
		e.printf("     payload: %s\n", maskBody(c.Payload, show))
	}
}

func conflictsResolve(ctx context.Context, e *env, key, keep string, id int64, timeout time.Duration) error {
	target, err := pickConflict(ctx, e, key, id)
	if err != nil || target == nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	run, err := e.tc.ExecuteWorkflow(wctx, client.StartWorkflowOptions{
		ID:                       contract.ResolveConflictWorkflowID(key, target.ID),
		TaskQueue:                e.cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, contract.ResolveConflictWorkflowName, contract.ResolveConflictInput{Key: key, ConflictID: target.ID, Keep: keep})
	if err != nil {
		return fmt.Errorf("start resolution: %w", err)
	}
	e.progress("resolving conflict %d of key %s (keep %s): workflow %s run %s", target.ID, key, keep, run.GetID(), run.GetRunID())
	var res contract.ResolveConflictResult
	if err := run.Get(wctx, &res); err != nil {
		if wctx.Err() != nil {
			return fmt.Errorf("no result after %s; the workflow %s goes on (is a worker running?)", timeout, run.GetID())
		}
		return fmt.Errorf("resolution failed: %w", err)
	}
	if !res.Changed {
		e.printf("conflict %d of key %s was already %s; nothing changed\n", res.ConflictID, key, res.Status)
		if wantStatus(keep) != res.Status {
			return errors.New("it was resolved the other way; a resolved conflict is not reopened")
		}
		return nil
	}
	e.printf("conflict %d of key %s: %s\n", res.ConflictID, key, res.Status)
	if res.ReplacedHash != "" && res.Status == store.ConflictResolvedIncoming {
		e.printf("the replaced version (hash %s) is kept in sync_conflicts\n", short(res.ReplacedHash))
	}
	return nil
}

// pickConflict finds the conflict to resolve: the one --id names, or the
// key's only open one. nil without an error: nothing is open, said.
func pickConflict(ctx context.Context, e *env, key string, id int64) (*store.ConflictRow, error) {
	cs, err := e.st.Conflicts(ctx, key)
	if err != nil {
		return nil, err
	}
	var open []store.ConflictRow
	for i, c := range cs {
		if id != 0 && c.ID == id {
			return &cs[i], nil
		}
		if c.Status == store.ConflictOpen {
			open = append(open, c)
		}
	}
	switch {
	case id != 0:
		return nil, fmt.Errorf("key %s has no conflict %d", key, id)
	case len(open) == 0:
		e.printf("key %s has no open conflict; nothing to resolve\n", key)
		return nil, nil
	case len(open) > 1:
		for _, c := range open {
			e.progress("  --id %d  (message %s, received %s)", c.ID, orDash(c.MessageID), fmtTime(c.ReceivedAt))
		}
		return nil, usagef("key %s has %d open conflicts (listed above); name one with --id", key, len(open))
	}
	return &open[0], nil
}

func wantStatus(keep string) string {
	if keep == contract.KeepIncoming {
		return store.ConflictResolvedIncoming
	}
	return store.ConflictResolvedKeepExisting
}

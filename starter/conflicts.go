package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

const conflictsAbout = `A conflict is a message whose key was already stored with another payload.
The stored record is left as it was and the incoming version waits in
sync_conflicts until an operator keeps one of the two. Resolving runs a
workflow (audited in Temporal) whose one database transaction either keeps
the stored record or replaces it with the incoming version, keeping the
replaced version in sync_conflicts. Resolving twice is a no-op.`

func runConflicts(ctx context.Context, e *env, args []string) int {
	return dispatch(ctx, e, "conflicts", conflictsAbout, []action{
		{"list", "list conflicts (open ones by default)", conflictsList},
		{"show", "show a key's stored record and its conflicting versions", conflictsShow},
		{"resolve", "settle a key's conflict: --keep existing or --keep incoming", conflictsResolve},
	}, args)
}

func conflictsList(ctx context.Context, e *env, args []string) int {
	fs := newFlags("conflicts list", "conflicts list [--status S|all] [--key KEY] [--limit N]",
		"Lists conflicts, oldest first. Payloads are never shown here.")
	status := fs.String("status", store.ConflictOpen, "`status` to list: open, resolved_keep_existing, resolved_incoming or all")
	key := fs.String("key", "", "only conflicts of this `KEY`")
	limit := fs.Int("limit", 100, "at most `N` conflicts")
	after := fs.Int64("after", 0, "only conflicts with an ID above this (paging)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	switch *status {
	case "all":
		*status = ""
	case store.ConflictOpen, store.ConflictResolvedKeepExisting, store.ConflictResolvedIncoming:
	default:
		return usageError(e, fs, "unknown --status %q", *status)
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	rows, err := st.ListConflicts(ctx, store.ConflictFilter{Status: *status, Key: *key, AfterID: *after, Limit: *limit, WithoutPayload: true})
	if err != nil {
		return e.fail("%v", err)
	}
	if len(rows) == 0 {
		e.printf("no conflicts\n")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tKEY\tSTATUS\tMESSAGE ID\tRECEIVED AT\tINCOMING\tSTORED WHEN SEEN\tRESOLVED AT\n")
	for _, c := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Key, c.Status, orDash(c.MessageID),
			fmtTime(c.ReceivedAt), short(c.Hash), short(c.ExistingHash), fmtTime(c.ResolvedAt))
	}
	tw.Flush()
	if len(rows) == *limit {
		e.progress("(first %d conflicts; --after %d shows more)", *limit, rows[len(rows)-1].ID)
	}
	return exitOK
}

func conflictsShow(ctx context.Context, e *env, args []string) int {
	fs := newFlags("conflicts show", "conflicts show KEY [--show-payload]",
		"Shows a key's stored record and every conflicting version. Patient data is masked unless --show-payload.")
	show := fs.Bool("show-payload", false, "print payloads and patient fields (patient data)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(e, fs, "want exactly one KEY")
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	key := pos[0]
	row, ok, err := st.Record(ctx, key)
	if err != nil {
		return e.fail("%v", err)
	}
	cs, err := st.Conflicts(ctx, key)
	if err != nil {
		return e.fail("%v", err)
	}
	if !ok && len(cs) == 0 {
		return e.fail("key %s has no stored record and no conflicts", key)
	}
	printRow(e, row, ok, *show)
	printConflicts(e, cs, *show)
	if ok {
		printConflictDiffs(e, row, cs, *show)
	}
	return exitOK
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
		tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  FIELD\tSTORED\tINCOMING\n")
		for _, ch := range changes {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", ch.Path, renderLeaf(ch.Stored, ch.InStored, show), renderLeaf(ch.Incoming, ch.InIncome, show))
		}
		tw.Flush()
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
	if len(cs) == 0 {
		e.printf("conflicts: none\n")
		return
	}
	e.printf("conflicts:\n")
	for _, c := range cs {
		e.printf("  #%d %s  message %s  received %s  resolved %s\n", c.ID, c.Status, orDash(c.MessageID), fmtTime(c.ReceivedAt), fmtTime(c.ResolvedAt))
		e.printf("     incoming hash %s, stored hash when seen %s\n", c.Hash, c.ExistingHash)
		e.printf("     payload: %s\n", maskBody(c.Payload, show))
	}
}

func conflictsResolve(ctx context.Context, e *env, args []string) int {
	fs := newFlags("conflicts resolve", "conflicts resolve KEY --keep existing|incoming [--id N]", `
Settles a conflict of KEY with a ResolveConflictWorkflow (ID
resolve-conflict-<KEY>-<ID>). --keep existing leaves the stored record;
--keep incoming replaces it with the conflicting version in one
transaction, keeping the replaced version in sync_conflicts. When KEY has
several open conflicts, --id names one. A conflict already resolved is left
as it is (no-op).`)
	keep := fs.String("keep", "", "`WHICH` version to keep: existing or incoming")
	id := fs.Int64("id", 0, "the conflict to resolve, when the key has several open ones")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the resolution")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(e, fs, "want exactly one KEY")
	}
	if *keep != contract.KeepExisting && *keep != contract.KeepIncoming {
		return usageError(e, fs, "--keep must be existing or incoming")
	}
	key := pos[0]
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	cs, err := st.Conflicts(ctx, key)
	if err != nil {
		return e.fail("%v", err)
	}
	var target *store.ConflictRow
	var open []store.ConflictRow
	for i, c := range cs {
		if *id != 0 && c.ID == *id {
			target = &cs[i]
		}
		if c.Status == store.ConflictOpen {
			open = append(open, c)
		}
	}
	switch {
	case *id != 0 && target == nil:
		return e.fail("key %s has no conflict %d", key, *id)
	case *id == 0 && len(open) == 0:
		e.printf("key %s has no open conflict; nothing to resolve\n", key)
		return exitOK
	case *id == 0 && len(open) > 1:
		e.progress("key %s has %d open conflicts; name one with --id:", key, len(open))
		for _, c := range open {
			e.progress("  --id %d  (message %s, received %s)", c.ID, orDash(c.MessageID), fmtTime(c.ReceivedAt))
		}
		return exitUsage
	case *id == 0:
		target = &open[0]
	}

	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	run, err := tc.ExecuteWorkflow(wctx, client.StartWorkflowOptions{
		ID:                       contract.ResolveConflictWorkflowID(key, target.ID),
		TaskQueue:                cfg.Temporal.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, contract.ResolveConflictWorkflowName, contract.ResolveConflictInput{Key: key, ConflictID: target.ID, Keep: *keep})
	if err != nil {
		return e.fail("start resolution: %v", err)
	}
	e.progress("resolving conflict %d of key %s (keep %s): workflow %s run %s", target.ID, key, *keep, run.GetID(), run.GetRunID())
	var res contract.ResolveConflictResult
	if err := run.Get(wctx, &res); err != nil {
		if wctx.Err() != nil {
			return e.fail("no result after %s; the workflow %s goes on (is a worker running?)", *timeout, run.GetID())
		}
		return e.fail("resolution failed: %v", err)
	}
	if !res.Changed {
		e.printf("conflict %d of key %s was already %s; nothing changed\n", res.ConflictID, key, res.Status)
		if wantStatus(*keep) != res.Status {
			e.progress("it was resolved the other way; a resolved conflict is not reopened")
			return exitFailure
		}
		return exitOK
	}
	e.printf("conflict %d of key %s: %s\n", res.ConflictID, key, res.Status)
	if res.ReplacedHash != "" && res.Status == store.ConflictResolvedIncoming {
		e.printf("the replaced version (hash %s) is kept in sync_conflicts\n", short(res.ReplacedHash))
	}
	return exitOK
}

func wantStatus(keep string) string {
	if keep == contract.KeepIncoming {
		return store.ConflictResolvedIncoming
	}
	return store.ConflictResolvedKeepExisting
}

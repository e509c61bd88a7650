package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

const quarantineAbout = `Quarantined messages are those that can never be stored as they are
(malformed, rejected by the database). They keep their raw body, reason and
message ID. Replay one after a code or data fix (its body may have been
corrected in sync_quarantine), or discard it with a reason. Rows are never
deleted: status and reason record what was decided.`

func runQuarantine(ctx context.Context, e *env, args []string) int {
	return dispatch(ctx, e, "quarantine", quarantineAbout, []action{
		{"list", "list quarantined messages (patient data never shown)", quarantineList},
		{"show", "show one quarantined message; --show-payload reveals its body", quarantineShow},
		{"replay", "replay messages through the record workflow and mark them replayed", quarantineReplay},
		{"discard", "mark messages discarded, with a reason", quarantineDiscard},
	}, args)
}

func quarantineList(ctx context.Context, e *env, args []string) int {
	fs := newFlags("quarantine list", "quarantine list [--status S] [--key KEY] [--limit N]",
		"Lists quarantine rows, oldest first: ID, status, reason, key, message ID and time.")
	status := fs.String("status", "", "only rows with this `status`: quarantined, replay_requested, replayed or discarded")
	key := fs.String("key", "", "only rows for this `KEY`")
	limit := fs.Int("limit", 100, "at most `N` rows")
	after := fs.Int64("after", 0, "only rows with an ID above this (paging)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	switch *status {
	case "", store.QuarantineQuarantined, store.QuarantineReplayRequested, store.QuarantineReplayed, store.QuarantineDiscarded:
	default:
		return usageError(e, fs, "unknown --status %q", *status)
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	rows, err := st.ListQuarantine(ctx, store.QuarantineFilter{Status: *status, Key: *key, AfterID: *after, Limit: *limit, WithoutBody: true})
	if err != nil {
		return e.fail("%v", err)
	}
	if len(rows) == 0 {
		e.printf("no quarantined messages\n")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tSTATUS\tREASON\tKEY\tMESSAGE ID\tQUARANTINED AT\tDELIVERIES\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\n", r.ID, r.Status, r.Reason, orDash(r.Key), orDash(r.MessageID), fmtTime(r.QuarantinedAt), r.ConsumedTimes)
	}
	tw.Flush()
	if len(rows) == *limit {
		e.progress("(first %d rows; --after %d shows more)", *limit, rows[len(rows)-1].ID)
	}
	return exitOK
}

func quarantineShow(ctx context.Context, e *env, args []string) int {
	fs := newFlags("quarantine show", "quarantine show ID [--show-payload]",
		"Shows one quarantine row. The body holds patient data: it is masked unless --show-payload.")
	show := fs.Bool("show-payload", false, "print the raw body (patient data)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(e, fs, "want exactly one ID")
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return usageError(e, fs, "ID %q is not a number", pos[0])
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	r, err := st.QuarantineByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return e.fail("no quarantine row %d", id)
	}
	if err != nil {
		return e.fail("%v", err)
	}
	e.printf("id:             %d\n", r.ID)
	e.printf("status:         %s\n", r.Status)
	e.printf("status reason:  %s\n", orDash(r.StatusReason))
	e.printf("updated at:     %s\n", fmtTime(r.UpdatedAt))
	e.printf("reason:         %s\n", r.Reason)
	e.printf("detail:         %s\n", orDash(r.Detail))
	e.printf("key:            %s\n", orDash(r.Key))
	e.printf("message id:     %s\n", orDash(r.MessageID))
	e.printf("tag:            %s\n", orDash(r.Tag))
	e.printf("deliveries:     %d\n", r.ConsumedTimes)
	e.printf("quarantined at: %s\n", fmtTime(r.QuarantinedAt))
	if *show {
		e.printf("body (%d bytes): %s\n", len(r.Body), r.Body)
	} else {
		e.printf("body: %s\n", maskBody(r.Body, false))
	}
	return exitOK
}

func quarantineReplay(ctx context.Context, e *env, args []string) int {
	fs := newFlags("quarantine replay", "quarantine replay ID... [--detach] [--timeout D]", `
Replays quarantine rows through the record workflow, with their current body
(fix it first, or deploy the code fix). Each row is marked replay_requested,
then a ReplayQuarantineWorkflow (ID replay-quarantine-<ID>) runs the record
workflow and marks the row replayed when the record lands, or quarantined
again (with the new reason) when it does not. Replaying a replayed or
discarded row is a no-op. A row marked replay_requested whose replay could
not run is picked up by 'starter reconcile'.`)
	detach := fs.Bool("detach", false, "start the replays and return without waiting")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the replays")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return usageError(e, fs, "%v", err)
	}
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	tc, err := e.temporal(ctx)
	if err != nil {
		return e.fail("%v", err)
	}

	failed := false
	type started struct {
		id  int64
		key string
		run client.WorkflowRun
	}
	var runs []started
	for _, id := range ids {
		// Refused before the row is marked: a key the row cannot
		// reproduce exactly would replay the record under another ID.
		if cur, err := st.QuarantineByID(ctx, id); err == nil && cur.Key != "" && cur.Status == store.QuarantineQuarantined {
			if _, exact := cur.ExactKey(); !exact {
				e.progress("quarantine %d: only a cut or altered copy of its key was kept (the row predates full keys), so replay cannot reproduce it; discard it instead", id)
				failed = true
				continue
			}
		}
		r, changed, err := st.RequestReplay(ctx, id, "replay requested by "+operator()+" with starter")
		if errors.Is(err, store.ErrNotFound) {
			e.progress("quarantine %d: no such row", id)
			failed = true
			continue
		}
		if err != nil {
			return e.fail("%v", err)
		}
		if !changed {
			e.printf("quarantine %d: already %s; nothing to replay\n", id, r.Status)
			continue
		}
		if r.Key == "" {
			e.progress("quarantine %d: the message has no key, so it cannot be replayed; discard it instead", id)
			failed = true
			continue
		}
		run, err := tc.ExecuteWorkflow(ctx, activities.ReplayStartOptions(cfg.Temporal.TaskQueue, id),
			contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: id})
		if err != nil {
			e.progress("quarantine %d: start replay: %v (the row stays replay_requested; 'starter reconcile' retries it)", id, err)
			failed = true
			continue
		}
		e.progress("quarantine %d (key %s): replay started, workflow %s run %s", id, r.Key, run.GetID(), run.GetRunID())
		runs = append(runs, started{id, r.Key, run})
	}
	if *detach {
		if failed {
			return exitFailure
		}
		return exitOK
	}

	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	for i, s := range runs {
		e.progress("waiting for replay %d of %d (quarantine %d)...", i+1, len(runs), s.id)
		var res contract.ReplayQuarantineResult
		if err := s.run.Get(wctx, &res); err != nil {
			if wctx.Err() != nil {
				e.progress("quarantine %d: still replaying (workflow %s); check later with 'starter quarantine show %d'", s.id, s.run.GetID(), s.id)
			} else {
				e.progress("quarantine %d: replay failed: %v", s.id, err)
			}
			failed = true
			continue
		}
		switch {
		case res.AlreadyDone:
			e.printf("quarantine %d: already %s; nothing replayed\n", s.id, res.Status)
		case res.Status == store.QuarantineReplayed:
			e.printf("quarantine %d (key %s): %s, marked replayed (record workflow %s)\n", s.id, res.Key, res.Outcome, res.RecordWorkflowID)
		default:
			e.printf("quarantine %d (key %s): quarantined again (%s); status %s\n", s.id, res.Key, orDash(res.Reason), res.Status)
			failed = true
		}
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

func quarantineDiscard(ctx context.Context, e *env, args []string) int {
	fs := newFlags("quarantine discard", "quarantine discard ID... --reason TEXT",
		"Marks quarantine rows discarded: they are kept, with the reason, and never replayed. A replayed row cannot be discarded.")
	reason := fs.String("reason", "", "why the messages are discarded (required; no patient data)")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	ids, err := parseIDs(pos)
	if err != nil {
		return usageError(e, fs, "%v", err)
	}
	if *reason == "" {
		return usageError(e, fs, "--reason is required")
	}
	st, err := e.store(ctx)
	if err != nil {
		return e.fail("%v", err)
	}
	failed := false
	note := fmt.Sprintf("discarded by %s: %s", operator(), *reason)
	for _, id := range ids {
		r, changed, err := st.Discard(ctx, id, note)
		switch {
		case errors.Is(err, store.ErrNotFound):
			e.progress("quarantine %d: no such row", id)
			failed = true
		case errors.Is(err, store.ErrWrongState):
			e.progress("quarantine %d: already replayed; its record is stored, so it cannot be discarded", id)
			failed = true
		case err != nil:
			return e.fail("%v", err)
		case !changed:
			e.printf("quarantine %d: already discarded (%s)\n", id, r.StatusReason)
		default:
			e.printf("quarantine %d: discarded\n", id)
		}
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

func parseIDs(args []string) ([]int64, error) {
	if len(args) == 0 {
		return nil, errors.New("want at least one ID")
	}
	ids := make([]int64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseInt(a, 10, 64)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("ID %q is not a positive number", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// operator names who ran the command, for status reasons.
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "an operator"
}

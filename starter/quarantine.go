package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/store"
)

func quarantineCommand() *command {
	return &command{
		name:    "quarantine",
		summary: "list, show, replay or discard quarantined messages",
		about: `Quarantined messages are those that can never be stored as they are
(malformed, rejected by the database). They keep their raw body, reason and
message ID. Replay one after a code or data fix (its body may have been
corrected in sync_quarantine), or discard it with a reason. Rows are never
deleted: status and reason record what was decided.`,
		actions: []*command{
			tableListing[quarantineItem]{
				summary:  "list quarantined messages (patient data never shown)",
				synopsis: "quarantine list [--status S|all] [--key KEY] [--limit N] [--after ID] [--json]",
				about:    "Lists quarantine rows, oldest first: ID, status, reason, key, message ID and time.",
				what:     "rows",
				statuses: []string{"all", store.QuarantineQuarantined, store.QuarantineReplayRequested, store.QuarantineReplayed, store.QuarantineDiscarded},
				none:     "no quarantined messages",
				header:   "ID\tSTATUS\tREASON\tKEY\tMESSAGE ID\tQUARANTINED AT\tDELIVERIES",
				fetch:    listQuarantine,
				id:       func(q quarantineItem) int64 { return q.ID },
				row: func(r quarantineItem) string {
					return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%d", r.ID, r.Status, r.Reason, orDash(r.Key), orDash(r.MessageID), fmtTime(r.QuarantinedAt), r.Deliveries)
				},
			}.command(),
			{
				name: "show", summary: "show one quarantined message; --show-payload reveals its body",
				synopsis: "quarantine show ID [--show-payload]",
				about:    "Shows one quarantine row. The body holds patient data: it is masked unless --show-payload.",
				needs:    needStore, args: exactly(1, "ID"), patientData: true,
				setup: func(fs *flags) runFunc {
					var ids []int64
					fs.check(parseIDsInto(&ids))
					return func(ctx context.Context, e *env, _ []string) error { return quarantineShow(ctx, e, ids[0]) }
				},
			},
			{
				name: "replay", summary: "replay messages through the record workflow and mark them replayed",
				synopsis: "quarantine replay ID... [--detach] [--timeout D]",
				about: `
Replays quarantine rows through the record workflow, with their current body
(fix it first, or deploy the code fix). Each row is marked replay_requested,
then a ReplayQuarantineWorkflow (ID replay-quarantine-<ID>) runs the record
workflow and marks the row replayed when the record lands, or quarantined
again (with the new reason) when it does not. Replaying a replayed or
discarded row is a no-op. A row marked replay_requested whose replay could
not run is picked up by 'starter reconcile'.`,
				needs: needTemporal | needStore, args: atLeast(1, "ID"),
				setup: func(fs *flags) runFunc {
					detach := fs.Bool("detach", false, "start the replays and return without waiting")
					timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the replays")
					var ids []int64
					fs.check(parseIDsInto(&ids))
					return func(ctx context.Context, e *env, _ []string) error {
						return quarantineReplay(ctx, e, ids, *detach, *timeout)
					}
				},
			},
			{
				name: "discard", summary: "mark messages discarded, with a reason",
				synopsis: "quarantine discard ID... --reason TEXT",
				about:    "Marks quarantine rows discarded: they are kept, with the reason, and never replayed. A replayed row cannot be discarded.",
				needs:    needStore, args: atLeast(1, "ID"),
				setup: func(fs *flags) runFunc {
					reason := fs.String("reason", "", "why the messages are discarded (required; no patient data)")
					var ids []int64
					fs.check(parseIDsInto(&ids))
					fs.check(func([]string) error {
						if *reason == "" {
							return usagef("--reason is required")
						}
						return nil
					})
					return func(ctx context.Context, e *env, _ []string) error { return quarantineDiscard(ctx, e, ids, *reason) }
				},
			},
		},
	}
}

// quarantineItem is one row of `quarantine list --json`.
type quarantineItem struct {
	ID            int64     `json:"id"`
	Status        string    `json:"status"`
	StatusReason  string    `json:"statusReason,omitempty"`
	UpdatedAt     time.Time `json:"updatedAt,omitzero"`
	Reason        string    `json:"reason"`
	Key           string    `json:"key"` // empty: a keyless message
	MessageID     string    `json:"messageId"`
	QuarantinedAt time.Time `json:"quarantinedAt"`
	Deliveries    int64     `json:"deliveries"`
}

func listQuarantine(ctx context.Context, st *store.Store, f pageFilter) ([]quarantineItem, error) {
	rows, err := st.ListQuarantine(ctx, store.QuarantineFilter{Status: f.storeStatus(), Key: f.key, AfterID: f.after, Limit: f.limit, WithoutBody: true})
	return mapAll(rows, func(r store.QuarantineItem) quarantineItem {
		return quarantineItem{
			ID: r.ID, Status: r.Status, StatusReason: r.StatusReason, UpdatedAt: r.UpdatedAt, Reason: r.Reason,
			Key: r.Key, MessageID: r.MessageID, QuarantinedAt: r.QuarantinedAt, Deliveries: r.ConsumedTimes,
		}
	}), err
}

func quarantineShow(ctx context.Context, e *env, id int64) error {
	r, err := e.st.QuarantineByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no quarantine row %d", id)
	}
	if err != nil {
		return err
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
	if e.showPayload {
		e.printf("body (%d bytes): %s\n", len(r.Body), r.Body)
	} else {
		e.printf("body: %s\n", maskBody(r.Body, false))
	}
	return nil
}

// startedReplay is a replay workflow started for a quarantine row.
type startedReplay struct {
	id  int64
	key string
	run client.WorkflowRun
}

func quarantineReplay(ctx context.Context, e *env, ids []int64, detach bool, timeout time.Duration) error {
	runs, failed, err := startReplays(ctx, e, ids)
	if err != nil {
		return err
	}
	if !detach {
		failed += waitReplays(ctx, e, runs, timeout)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d rows not replayed (see above)", failed, len(ids))
	}
	return nil
}

// startReplays marks each row replay_requested and starts its replay
// workflow. failed counts the rows that could not be started; err is a
// database failure that ends the command.
func startReplays(ctx context.Context, e *env, ids []int64) (runs []startedReplay, failed int, err error) {
	for _, id := range ids {
		// Refused before the row is marked: a key the row cannot
		// reproduce exactly would replay the record under another ID.
		if cur, err := e.st.QuarantineByID(ctx, id); err == nil && cur.Key != "" && cur.Status == store.QuarantineQuarantined {
			if _, exact := cur.ExactKey(); !exact {
				e.progress("quarantine %d: only a cut or altered copy of its key was kept (the row predates full keys), so replay cannot reproduce it; discard it instead", id)
				failed++
				continue
			}
		}
		r, changed, err := e.st.RequestReplay(ctx, id, "replay requested by "+operator()+" with starter")
		if errors.Is(err, store.ErrNotFound) {
			e.progress("quarantine %d: no such row", id)
			failed++
			continue
		}
		if err != nil {
			return runs, failed, err
		}
		if !changed {
			e.printf("quarantine %d: already %s; nothing to replay\n", id, r.Status)
			continue
		}
		if r.Key == "" {
			e.progress("quarantine %d: the message has no key, so it cannot be replayed; discard it instead", id)
			failed++
			continue
		}
		run, err := e.tc.ExecuteWorkflow(ctx, activities.ReplayStartOptions(e.cfg.Temporal.TaskQueue, id),
			contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: id})
		if err != nil {
			e.progress("quarantine %d: start replay: %v (the row stays replay_requested; 'starter reconcile' retries it)", id, err)
			failed++
			continue
		}
		e.progress("quarantine %d (key %s): replay started, workflow %s run %s", id, r.Key, run.GetID(), run.GetRunID())
		runs = append(runs, startedReplay{id, r.Key, run})
	}
	return runs, failed, nil
}

// waitReplays waits for the replays and returns how many did not land.
func waitReplays(ctx context.Context, e *env, runs []startedReplay, timeout time.Duration) (failed int) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
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
			failed++
			continue
		}
		switch {
		case res.AlreadyDone:
			e.printf("quarantine %d: already %s; nothing replayed\n", s.id, res.Status)
		case res.Status == store.QuarantineReplayed:
			e.printf("quarantine %d (key %s): %s, marked replayed (record workflow %s)\n", s.id, res.Key, res.Outcome, res.RecordWorkflowID)
		default:
			e.printf("quarantine %d (key %s): quarantined again (%s); status %s\n", s.id, res.Key, orDash(res.Reason), res.Status)
			failed++
		}
	}
	return failed
}

func quarantineDiscard(ctx context.Context, e *env, ids []int64, reason string) error {
	failed := 0
	note := fmt.Sprintf("discarded by %s: %s", operator(), reason)
	for _, id := range ids {
		r, changed, err := e.st.Discard(ctx, id, note)
		switch {
		case errors.Is(err, store.ErrNotFound):
			e.progress("quarantine %d: no such row", id)
			failed++
		case errors.Is(err, store.ErrWrongState):
			e.progress("quarantine %d: already replayed; its record is stored, so it cannot be discarded", id)
			failed++
		case err != nil:
			return err
		case !changed:
			e.printf("quarantine %d: already discarded (%s)\n", id, r.StatusReason)
		default:
			e.printf("quarantine %d: discarded\n", id)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d rows not discarded (see above)", failed, len(ids))
	}
	return nil
}

// parseIDsInto is a check that reads the positional arguments as
// quarantine IDs.
func parseIDsInto(ids *[]int64) func([]string) error {
	return func(args []string) error {
		var err error
		*ids, err = parseIDs(args)
		return err
	}
}

// operator names who ran the command, for status reasons.
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "an operator"
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

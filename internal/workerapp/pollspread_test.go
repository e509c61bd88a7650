package workerapp

import (
	"context"
	"slices"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testwait"
	"github.com/syncbridge/syncbridge/workflows"
)

// runningPolls maps each poller index to the identity of the worker its
// started Poll activity runs on; a poller between runs (or whose poll is
// still scheduled) is left out.
func (p *pipe) runningPolls() map[int]string {
	p.t.Helper()
	cfg := p.config()
	out := map[int]string{}
	for i := 0; i < cfg.Pipeline.Pollers; i++ {
		d, err := p.env.Client.DescribeWorkflowExecution(context.Background(), contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i), "")
		if err != nil {
			continue // not started yet
		}
		for _, a := range d.GetPendingActivities() {
			if a.GetActivityType().GetName() == pollActivityName && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
				out[i] = a.GetLastWorkerIdentity()
			}
		}
	}
	return out
}

// pollQueues lists the task queues a poller's latest run scheduled its
// polls on, in order, and counts the polls that timed out waiting to
// start.
func (p *pipe) pollQueues(index int) (queues []string, unstarted int) {
	p.t.Helper()
	cfg := p.config()
	for _, ev := range p.history(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, index)) {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			queues = append(queues, a.GetTaskQueue().GetName())
		}
		if a := ev.GetActivityTaskTimedOutEventAttributes(); a != nil &&
			a.GetFailure().GetTimeoutFailureInfo().GetTimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
			unstarted++
		}
	}
	return queues, unstarted
}

// Three workers, three pollers: each worker runs exactly one poll, and
// keeps doing so as the polls end and are scheduled again (every 8 s
// here): a restarted poll goes back to the only worker with a free poll
// slot. Workers start one after another, as in a rolling start, and every
// worker's keeper ensures the pollers, so the first polls may be placed
// before the last worker is up; the spread must hold from the first full
// round of restarts on. The drain's work follows: every worker polls
// messages.
func TestPollsSpreadOverWorkers(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, map[string]string{"SYNCBRIDGE_POLLERS": "3"})
	const runFor = 8 * time.Second
	var ws []*running
	names := []string{"spread-w1", "spread-w2", "spread-w3"}
	for _, id := range names {
		ws = append(ws, p.worker(Options{Identity: id, PollRunFor: runFor}))
	}
	spread := func(m map[int]string) bool {
		if len(m) != 3 {
			return false
		}
		var got []string
		for _, id := range m {
			got = append(got, id)
		}
		slices.Sort(got)
		return slices.Equal(got, names)
	}
	testwait.Until(t, 2*time.Minute, "one poll on each worker", func() bool { return spread(p.runningPolls()) })
	// Two more rounds of restarts: whenever all three run on the poll
	// queue, they run on three workers. A poll that missed a slot by a
	// hiccup (its worker's poller slow to come back for longer than
	// PollQueueWait, as on a saturated CI machine) runs its next run on the
	// main task queue, where it may share a worker; such samples are
	// counted apart, and the spread must come back after them.
	mainQueueLatest := func() []int {
		var on []int
		for i := 0; i < 3; i++ {
			if queues, _ := p.pollQueues(i); len(queues) > 0 && queues[len(queues)-1] == p.env.TaskQueue {
				on = append(on, i)
			}
		}
		return on
	}
	// A sample that shares a worker with no poller on the main queue may
	// be a race between the describe and the history reads (a run ending
	// in between); one that persists for three samples is the bug.
	samples, fallbacks, unexplained := 0, 0, 0
	for end := time.Now().Add(2*runFor + 4*time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		m := p.runningPolls()
		if len(m) != 3 {
			continue
		}
		if spread(m) {
			samples++
			unexplained = 0
			continue
		}
		if on := mainQueueLatest(); len(on) > 0 {
			fallbacks++
			unexplained = 0
			t.Logf("polls running on %v while pollers %v poll on the main task queue", m, on)
			continue
		}
		if unexplained++; unexplained == 3 {
			t.Fatalf("polls running on %v, all on the poll queue, in three samples in a row: want one on each of %v", m, names)
		}
		t.Logf("polls running on %v, none on the main task queue: sampling again", m)
	}
	if samples < 5 || fallbacks > samples {
		t.Fatalf("%d samples had all three polls running on three workers, %d shared a worker after a missed slot", samples, fallbacks)
	}
	testwait.Until(t, 2*runFor+time.Minute, "every poller's latest poll on the poll queue, after a restart within its run", func() bool {
		for i := 0; i < 3; i++ {
			if queues, _ := p.pollQueues(i); len(queues) < 2 || queues[len(queues)-1] != contract.PollTaskQueue(p.env.TaskQueue) {
				return false
			}
		}
		return true
	})

	msgs := generate(syncevent.GenOptions{Count: 600, Seed: 19, KeyPrefix: "spread-"})
	ids := p.publish(msgs)
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))
	for i, w := range ws {
		if n := metricSum(t, w.metricsAddr, "syncbridge_messages_polled_total"); n == 0 {
			t.Errorf("worker %s polled no message", names[i])
		} else {
			t.Logf("worker %s polled %.0f messages", names[i], n)
		}
	}
	for _, w := range ws {
		if err := w.stop(); err != nil {
			t.Fatalf("worker stop: %v", err)
		}
	}
	cfg := p.config()
	p.replayLive(contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "poller_poll_queue.json")
}

// One worker, two pollers: the worker's single poll-queue slot takes one
// poll; the other waits workflows.PollQueueWait, its run continues as new
// and the new run polls on the main task queue first, so the lone worker
// runs both, as before the poll queue.
func TestLoneWorkerRunsEveryPoll(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute}, map[string]string{"SYNCBRIDGE_POLLERS": "2"})
	w := p.worker(Options{Identity: "lone-w1", PollRunFor: 8 * time.Second})
	testwait.Until(t, 4*workflows.PollQueueWait+time.Minute, "both polls running on the worker", func() bool {
		m := p.runningPolls()
		return len(m) == 2 && m[0] == "lone-w1" && m[1] == "lone-w1"
	})
	// The poller whose poll moved: its run polls on the main task queue
	// first, and the run before it ended at a poll that never started.
	cfg := p.config()
	var id, mainFirst, timedOut string
	for i := 0; i < 2 && mainFirst == ""; i++ {
		wid := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i)
		d, err := p.env.Client.DescribeWorkflowExecution(context.Background(), wid, "")
		if err != nil {
			t.Fatal(err)
		}
		run := d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
		evs := p.runHistory(wid, run)
		var queues []string
		for _, ev := range evs {
			if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
				queues = append(queues, a.GetTaskQueue().GetName())
			}
		}
		t.Logf("poller %d: latest run scheduled its polls on %v", i, queues)
		if len(queues) > 0 && queues[0] == p.env.TaskQueue {
			id, mainFirst = wid, run
			timedOut = evs[0].GetWorkflowExecutionStartedEventAttributes().GetContinuedExecutionRunId()
		}
	}
	if id == "" {
		t.Fatal("no poller polls on the main task queue, yet one worker runs two")
	}
	if timedOut == "" {
		t.Fatal("the poller on the main task queue did not continue from an earlier run")
	}
	var unstarted int
	for _, ev := range p.runHistory(id, timedOut) {
		if a := ev.GetActivityTaskTimedOutEventAttributes(); a != nil &&
			a.GetFailure().GetTimeoutFailureInfo().GetTimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
			unstarted++
		}
	}
	if unstarted != 1 {
		t.Fatalf("the run before the main-queue one has %d polls that never started, want 1", unstarted)
	}

	msgs := generate(syncevent.GenOptions{Count: 100, Seed: 20, KeyPrefix: "lone-"})
	ids := p.publish(msgs)
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))
	// Let the main-queue run go on to its next poll, offered on the poll
	// queue again, so its recorded history shows both.
	testwait.Until(t, time.Minute, "the main-queue run's second poll", func() bool {
		n := 0
		for _, ev := range p.runHistory(id, mainFirst) {
			if ev.GetActivityTaskScheduledEventAttributes() != nil {
				n++
			}
		}
		return n >= 2
	})
	if err := w.stop(); err != nil {
		t.Fatalf("worker stop: %v", err)
	}
	p.replayRun(id, timedOut, "poller_poll_queue_timeout.json")
	p.replayRun(id, mainFirst, "poller_poll_queue_main_first.json")
}

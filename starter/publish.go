package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func publishCommand() *command {
	return &command{
		name:     "publish",
		summary:  "publish realistic sync events to the broker, as edge devices do",
		synopsis: "publish [--count N] [--dup-rate R] [--bad-rate R] [flags]",
		about: `
Publishes realistic clinic sync events to ROCKETMQ_TOPIC through the
RocketMQ HTTP API (the emulator or a real endpoint), as edge devices do:
invented patients and notes, the timestamp styles devices send, republished
records (duplicates and changed versions) and malformed messages in the
proportions asked for. For demos, load tests and the benchmark. The same
--seed and --key-prefix publish the same batch again.`,
		needs: needBroker,
		setup: func(fs *flags) runFunc {
			var f publishFlags
			fs.IntVar(&f.count, "count", 100, "messages to publish")
			fs.Float64Var(&f.dupRate, "dup-rate", 0.1, "share (0..1) of messages re-publishing an earlier key with the same content")
			fs.Float64Var(&f.changedRate, "changed-rate", 0, "share (0..1) of messages re-publishing an earlier key with changed content (conflicts)")
			fs.Float64Var(&f.badRate, "bad-rate", 0.05, "share (0..1) of malformed messages (they end in quarantine)")
			fs.Int64Var(&f.seed, "seed", 0, "generator seed; 0 picks one from the clock (printed)")
			fs.StringVar(&f.keyPrefix, "key-prefix", "", "prefix of every key; empty picks one from the clock, so runs do not collide")
			fs.Float64Var(&f.rate, "rate", 0, "messages per second; 0 = as fast as the broker takes them")
			fs.check(f.check)
			return func(ctx context.Context, e *env, _ []string) error { return publish(ctx, e, f) }
		},
	}
}

type publishFlags struct {
	count                         int
	dupRate, changedRate, badRate float64 // shares of count
	seed                          int64
	keyPrefix                     string
	rate                          float64 // messages per second; 0 = unpaced
}

func (f *publishFlags) check([]string) error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"dup-rate", f.dupRate}, {"changed-rate", f.changedRate}, {"bad-rate", f.badRate}} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return usagef("--%s must be between 0 and 1", r.name)
		}
	}
	if f.dupRate+f.changedRate+f.badRate > 1 {
		return usagef("--dup-rate, --changed-rate and --bad-rate add up to more than 1")
	}
	if f.count <= 0 || f.rate < 0 {
		return usagef("--count must be positive and --rate not negative")
	}
	return nil
}

// publishProgressEvery is how often publish reports progress.
var publishProgressEvery = 2 * time.Second

func publish(ctx context.Context, e *env, f publishFlags) error {
	now := time.Now()
	if f.seed == 0 {
		f.seed = now.UnixNano()
	}
	if f.keyPrefix == "" {
		f.keyPrefix = fmt.Sprintf("pub%d-", now.Unix())
	}

	opts := genOptions(f.count, f.dupRate, f.changedRate, f.badRate, f.seed, f.keyPrefix)
	msgs := syncevent.Generate(opts)
	newN, dupN, changedN, badN := syncevent.GenCounts(opts)
	e.progress("publishing %d messages to %s (new %d, duplicate %d, changed %d, malformed %d; seed %d, key prefix %q)",
		len(msgs), e.cfg.MQ.Topic, newN, dupN, changedN, badN, f.seed, f.keyPrefix)

	var interval time.Duration
	if f.rate > 0 {
		interval = time.Duration(float64(time.Second) / f.rate)
	}
	start := time.Now()
	lastReport := start
	published, failed, skipped := 0, 0, 0
	var firstErr error
	for i, m := range msgs {
		if m.Kind == syncevent.KindBadPrefix+syncevent.ReasonInvalidUTF8 {
			// The HTTP API's XML cannot carry invalid UTF-8: the SDK
			// would replace the bytes and send a different message.
			skipped++
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if interval > 0 {
			if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		if _, err := e.mq.Publish(ctx, m.Key, m.Tag, m.Body); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
		} else {
			published++
		}
		if time.Since(lastReport) >= publishProgressEvery {
			lastReport = time.Now()
			e.progress("published %d of %d (%.0f/s), %d failed", published, len(msgs), float64(published)/time.Since(start).Seconds(), failed)
		}
	}
	took := time.Since(start)
	e.printf("published %d messages in %s (%.0f/s); %d failed; %d skipped (invalid UTF-8 cannot cross the HTTP API)\n",
		published, took.Round(time.Millisecond), float64(published)/math.Max(took.Seconds(), 1e-9), failed, skipped)
	e.printf("seed %d, key prefix %s\n", f.seed, f.keyPrefix)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %d messages", published)
	}
	if failed > 0 {
		return fmt.Errorf("%d publishes failed; first: %s", failed, strings.TrimSpace(firstErr.Error()))
	}
	return nil
}

// genOptions turns the operator's shares of the whole batch into the
// generator's: DistinctKeys first versions, the rest of the valid messages
// republishes, ChangedRate of them changed.
func genOptions(count int, dupRate, changedRate, badRate float64, seed int64, prefix string) syncevent.GenOptions {
	bad := int(math.Round(badRate * float64(count)))
	good := count - bad
	repub := min(int(math.Round((dupRate+changedRate)*float64(count))), max(good-1, 0))
	o := syncevent.GenOptions{
		Count: count, BadRate: badRate, Seed: seed, KeyPrefix: prefix,
		DistinctKeys: max(good-repub, 1),
	}
	if dupRate+changedRate > 0 {
		o.ChangedRate = changedRate / (dupRate + changedRate)
	}
	return o
}

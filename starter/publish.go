package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// publishProgressEvery is how often publish reports progress.
var publishProgressEvery = 2 * time.Second

func runPublish(ctx context.Context, e *env, args []string) int {
	fs := newFlags("publish", "publish [--count N] [--dup-rate R] [--bad-rate R] [flags]", `
Publishes realistic clinic sync events to ROCKETMQ_TOPIC through the
RocketMQ HTTP API (the emulator or a real endpoint), as edge devices do:
invented patients and notes, the timestamp styles devices send, republished
records (duplicates and changed versions) and malformed messages in the
proportions asked for. For demos, load tests and the benchmark. The same
--seed and --key-prefix publish the same batch again.`)
	count := fs.Int("count", 100, "messages to publish")
	dupRate := fs.Float64("dup-rate", 0.1, "share (0..1) of messages re-publishing an earlier key with the same content")
	changedRate := fs.Float64("changed-rate", 0, "share (0..1) of messages re-publishing an earlier key with changed content (conflicts)")
	badRate := fs.Float64("bad-rate", 0.05, "share (0..1) of malformed messages (they end in quarantine)")
	seed := fs.Int64("seed", 0, "generator seed; 0 picks one from the clock (printed)")
	keyPrefix := fs.String("key-prefix", "", "prefix of every key; empty picks one from the clock, so runs do not collide")
	rate := fs.Float64("rate", 0, "messages per second; 0 = as fast as the broker takes them")
	pos, code, done := parse(e, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return usageError(e, fs, "unexpected argument %q", pos[0])
	}
	for name, v := range map[string]float64{"dup-rate": *dupRate, "changed-rate": *changedRate, "bad-rate": *badRate} {
		if v < 0 || v > 1 || math.IsNaN(v) {
			return usageError(e, fs, "--%s must be between 0 and 1", name)
		}
	}
	if *dupRate+*changedRate+*badRate > 1 {
		return usageError(e, fs, "--dup-rate, --changed-rate and --bad-rate add up to more than 1")
	}
	if *count <= 0 || *rate < 0 {
		return usageError(e, fs, "--count must be positive and --rate not negative")
	}
	cfg, err := e.config()
	if err != nil {
		return e.fail("%v", err)
	}
	now := time.Now()
	if *seed == 0 {
		*seed = now.UnixNano()
	}
	if *keyPrefix == "" {
		*keyPrefix = fmt.Sprintf("pub%d-", now.Unix())
	}

	opts := genOptions(*count, *dupRate, *changedRate, *badRate, *seed, *keyPrefix)
	msgs := syncevent.Generate(opts)
	newN, dupN, changedN, badN := syncevent.GenCounts(opts)
	prod := mqclient.NewProducer(mqclient.Endpoint{
		URL: cfg.MQ.Endpoint, AccessKey: cfg.MQ.AccessKey, SecretKey: cfg.MQ.SecretKey, InstanceID: cfg.MQ.InstanceID,
	}, cfg.MQ.Topic)
	e.progress("publishing %d messages to %s (new %d, duplicate %d, changed %d, malformed %d; seed %d, key prefix %q)",
		len(msgs), cfg.MQ.Topic, newN, dupN, changedN, badN, *seed, *keyPrefix)

	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
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
		if _, err := prod.Publish(ctx, m.Key, m.Tag, m.Body); err != nil {
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
	e.printf("seed %d, key prefix %s\n", *seed, *keyPrefix)
	if ctx.Err() != nil {
		return e.fail("interrupted after %d messages", published)
	}
	if failed > 0 {
		return e.fail("%d publishes failed; first: %s", failed, strings.TrimSpace(firstErr.Error()))
	}
	return exitOK
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

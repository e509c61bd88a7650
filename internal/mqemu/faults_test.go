package mqemu

import (
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	good := []struct {
		spec string
		want Faults
	}{
		{"", Faults{}},
		{"dup=0.1,expire=0.05,error=0.01,latency=20ms", Faults{DuplicateRate: 0.1, ExpireRate: 0.05, ErrorRate: 0.01, Latency: 20 * time.Millisecond}},
		{" duplicate = 1 , latency=1s ", Faults{DuplicateRate: 1, Latency: time.Second}},
		{"error=0", Faults{}},
	}
	for _, tc := range good {
		got, err := ParseFaults(tc.spec)
		if err != nil || got != tc.want {
			t.Errorf("ParseFaults(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
		}
		// String prints what ParseFaults reads back.
		if tc.want != (Faults{}) {
			again, err := ParseFaults(got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q via %q: %+v, %v", tc.spec, got.String(), again, err)
			}
		}
	}
	if s := (Faults{}).String(); s != "none" {
		t.Errorf("zero Faults prints %q", s)
	}
	bad := map[string]string{
		"dup=1.5":           "between 0 and 1",
		"expire=-0.1":       "between 0 and 1",
		"error=lots":        "between 0 and 1",
		"dup=NaN":           "between 0 and 1",
		"latency=fast":      "duration",
		"latency=-1ms":      "non-negative",
		"dup":               "key=value",
		"dup=":              "key=value",
		"slow=1":            "unknown fault",
		"dup=0.1,dup=0.2":   "twice",
		"dup=0.1;error=0.2": "between 0 and 1",
	}
	for spec, want := range bad {
		if _, err := ParseFaults(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFaults(%q) error %v, want one mentioning %q", spec, err, want)
		}
	}
	env := map[string]string{FaultsEnv: "dup=0.5"}
	if f, err := FaultsFromEnv(func(k string) string { return env[k] }); err != nil || f.DuplicateRate != 0.5 {
		t.Errorf("FaultsFromEnv: %+v %v", f, err)
	}
	env[FaultsEnv] = "bogus"
	if _, err := FaultsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), FaultsEnv) {
		t.Errorf("FaultsFromEnv(bogus) error %v", err)
	}
}

// publishPattern publishes n messages one after another and records which
// ones got the injected 500.
func publishPattern(t *testing.T, seed int64, n int) string {
	t.Helper()
	h := newHarness(t, Config{Seed: seed, Faults: Faults{ErrorRate: 0.5}})
	p := h.producer(testTopic)
	var b strings.Builder
	stored := 0
	for range n {
		_, err := p.PublishMessage(mq.PublishMessageRequest{MessageBody: "x"})
		switch {
		case err == nil:
			b.WriteByte('.')
			stored++
		case strings.Contains(err.Error(), "InternalError") && sdkCode(err) == 101:
			b.WriteByte('E')
		default:
			t.Fatalf("publish: %v", err)
		}
	}
	if s := h.emu.Stats(testTopic, "G"); s.Published != stored {
		t.Fatalf("%d publishes succeeded but %d stored: an injected error must do nothing", stored, s.Published)
	}
	return b.String()
}

func TestFaultsAreDeterministicWithSeed(t *testing.T) {
	t.Parallel()
	a := publishPattern(t, 42, 40)
	b := publishPattern(t, 42, 40)
	c := publishPattern(t, 7, 40)
	if a != b {
		t.Fatalf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == c {
		t.Fatalf("seeds 42 and 7 injected the same 40 faults: %s", a)
	}
	if !strings.Contains(a, "E") || !strings.Contains(a, ".") {
		t.Fatalf("error=0.5 gave %s", a)
	}
}

func TestErrorAndLatencyFaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Faults: Faults{ErrorRate: 1}})
	_, err := h.producer(testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: "x"})
	if err == nil || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("error=1: %v", err)
	}
	h.emu.SetFaults(Faults{Latency: 300 * time.Millisecond})
	start := time.Now()
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "x"})
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("publish with 300 ms latency took %v", d)
	}
	// An invalid value is refused and the old faults stay.
	h.emu.SetFaults(Faults{ErrorRate: 2})
	if f := h.emu.Faults(); f.Latency != 300*time.Millisecond || f.ErrorRate != 0 {
		t.Fatalf("faults after invalid SetFaults: %+v", f)
	}
}

func TestExpireFault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Faults: Faults{ExpireRate: 1}, InvisibleTime: time.Minute})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "x"})
	c := h.consumer(testTopic, "G", "")
	first := mustConsume(t, c, 1, 1)[0]
	items := ackItems(t, c.AckMessage([]string{first.ReceiptHandle}))
	if len(items) != 1 || items[0].ErrorCode != "ReceiptHandleError" || items[0].ErrorHandle != first.ReceiptHandle {
		t.Fatalf("forced expiry: %+v", items)
	}
	// The message was not acked and is redelivered at once, not after
	// the minute of invisibility.
	second := mustConsume(t, c, 1, 2)[0]
	if second.MessageId != first.MessageId || second.ConsumedTimes != 2 {
		t.Fatalf("after forced expiry got %+v", second)
	}
	h.emu.SetFaults(Faults{})
	if err := c.AckMessage([]string{second.ReceiptHandle}); err != nil {
		t.Fatalf("ack without faults: %v", err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Acked != 1 || s.Delivered != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cred := []Credential{{"ak", "sk"}}
	bad := map[string]Config{
		"no credentials":     {},
		"empty secret":       {Credentials: []Credential{{"ak", ""}}},
		"conflicting secret": {Credentials: []Credential{{"ak", "a"}, {"ak", "b"}}},
		"negative invisible": {Credentials: cred, InvisibleTime: -time.Second},
		"negative deliver":   {Credentials: cred, MaxDeliveries: -1},
		"bad topic":          {Credentials: cred, Topics: []string{"a/b"}},
		"bad faults":         {Credentials: cred, Faults: Faults{DuplicateRate: 2}},
		"no state dir":       {Credentials: cred, PersistPath: "/nonexistent-dir-mqemu/state.json"},
	}
	for name, cfg := range bad {
		if e, err := New(cfg); err == nil {
			e.Close()
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	e, err := New(Config{Credentials: cred})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.cfg.InvisibleTime != 5*time.Minute || e.cfg.OrderlyInvisibleTime != time.Minute || e.cfg.MaxDeliveries != 16 ||
		e.cfg.MaxClockSkew != 15*time.Minute || e.cfg.MaxLongPoll != 30*time.Second {
		t.Fatalf("defaults %+v", e.cfg)
	}
}

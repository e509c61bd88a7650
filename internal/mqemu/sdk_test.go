package mqemu

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"

	"github.com/syncbridge/syncbridge/internal/testwait"
)

// These tests drive the emulator through the real Go SDK over loopback.

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	body := "<order id=\"7\">&'\" naïve 你好\n\ttab</order>"
	before := time.Now()
	pub := h.publish(testTopic, mq.PublishMessageRequest{
		MessageBody: body,
		MessageTag:  "TagA",
		MessageKey:  "order-7",
		Properties:  map[string]string{"source": "erp", "attempt": "1"},
	})
	sum := md5.Sum([]byte(body))
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); pub.MessageBodyMD5 != want {
		t.Fatalf("publish MessageBodyMD5 %q, want %q", pub.MessageBodyMD5, want)
	}
	if len(pub.MessageId) != 32 {
		t.Fatalf("MessageId %q: want 32 hex digits", pub.MessageId)
	}
	if pub.RequestId == "" {
		t.Fatal("publish response has no request id")
	}
	if pub.ReceiptHandle != "" {
		t.Fatalf("normal message got a ReceiptHandle %q", pub.ReceiptHandle)
	}

	c := h.consumer(testTopic, "G", "")
	msgs := mustConsume(t, c, 16, 3)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.MessageId != pub.MessageId || m.MessageBody != body || m.MessageBodyMD5 != pub.MessageBodyMD5 {
		t.Fatalf("consumed %+v, want id %s and the published body", m, pub.MessageId)
	}
	if m.MessageTag != "TagA" || m.MessageKey != "order-7" {
		t.Fatalf("tag %q key %q", m.MessageTag, m.MessageKey)
	}
	if want := map[string]string{"source": "erp", "attempt": "1"}; !mapsEqual(m.Properties, want) {
		t.Fatalf("properties %v, want %v", m.Properties, want)
	}
	if m.ConsumedTimes != 1 {
		t.Fatalf("ConsumedTimes %d, want 1", m.ConsumedTimes)
	}
	if m.PublishTime < before.UnixMilli()-5 || m.PublishTime > time.Now().UnixMilli() {
		t.Fatalf("PublishTime %d outside the test's window", m.PublishTime)
	}
	if m.FirstConsumeTime < m.PublishTime {
		t.Fatalf("FirstConsumeTime %d before PublishTime %d", m.FirstConsumeTime, m.PublishTime)
	}
	if d := m.NextConsumeTime - m.FirstConsumeTime; d < 1000 || d > 1100 {
		t.Fatalf("NextConsumeTime - FirstConsumeTime = %d ms, want the 1 s invisibility", d)
	}
	if s := h.emu.Stats(testTopic, "G"); s.InFlight != 1 || s.Ready != 0 || s.Published != 1 {
		t.Fatalf("stats after consume %+v", s)
	}
	if err := c.AckMessage([]string{m.ReceiptHandle}); err != nil {
		t.Fatalf("ack: %v", err)
	}
	want := GroupStats{Topic: testTopic, Group: "G", Published: 1, Acked: 1, Delivered: 1}
	if s := h.emu.Stats(testTopic, "G"); s != want {
		t.Fatalf("stats after ack %+v, want %+v", s, want)
	}
	msgs, err := consume(t, c, 16, 0, false)
	expectNotExist(t, msgs, err)
	// After the invisibility would have ended it still does not come back.
	msgs, err = consume(t, c, 16, 2, false)
	expectNotExist(t, msgs, err)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestBatchConsumeInPublishOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var want []string
	for i := range 20 {
		b := "m" + string(rune('a'+i))
		want = append(want, b)
		h.publish(testTopic, mq.PublishMessageRequest{MessageBody: b})
	}
	c := h.consumer(testTopic, "G", "")
	first := mustConsume(t, c, 16, 1)
	second := mustConsume(t, c, 16, 1)
	if len(first) != 16 || len(second) != 4 {
		t.Fatalf("batches of %d and %d, want 16 and 4", len(first), len(second))
	}
	if got := append(bodiesOf(first), bodiesOf(second)...); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if err := c.AckMessage(handlesOf(first)); err != nil {
		t.Fatalf("ack 16: %v", err)
	}
	if err := c.AckMessage(handlesOf(second)); err != nil {
		t.Fatalf("ack 4: %v", err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Acked != 20 || s.Ready+s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLongPollReturnsWhenMessageArrives(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	c := h.consumer(testTopic, "G", "")
	go func() {
		time.Sleep(500 * time.Millisecond)
		if _, err := h.producer(testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: "late"}); err != nil {
			t.Errorf("publish: %v", err)
		}
	}()
	start := time.Now()
	msgs := mustConsume(t, c, 16, 20)
	elapsed := time.Since(start)
	if msgs[0].MessageBody != "late" {
		t.Fatalf("got %q", msgs[0].MessageBody)
	}
	if elapsed < 400*time.Millisecond || elapsed > 10*time.Second {
		t.Fatalf("long poll answered after %v; want soon after the 500 ms publish, long before 20 s", elapsed)
	}
}

func TestLongPollTimesOutWithMessageNotExist(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	c := h.consumer(testTopic, "G", "")

	start := time.Now()
	msgs, err := consume(t, c, 16, 0, false) // short poll
	expectNotExist(t, msgs, err)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("short poll took %v", d)
	}
	if sdkCode(err) != 101 {
		t.Fatalf("SDK code %d, want 101 (server error)", sdkCode(err))
	}

	start = time.Now()
	msgs, err = consume(t, c, 16, 2, false)
	expectNotExist(t, msgs, err)
	if d := time.Since(start); d < 1900*time.Millisecond || d > 10*time.Second {
		t.Fatalf("2 s long poll answered after %v", d)
	}
}

func TestMaxLongPollCapsTheWait(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{MaxLongPoll: 300 * time.Millisecond})
	start := time.Now()
	msgs, err := consume(t, h.consumer(testTopic, "G", ""), 16, 30, false)
	expectNotExist(t, msgs, err)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("waitseconds=30 under a 300 ms cap answered after %v", d)
	}
}

func TestRedeliveryWithNewHandle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	pub := h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "again"})
	c := h.consumer(testTopic, "G", "")
	first := mustConsume(t, c, 1, 1)[0]

	// Invisible for 1 s: a short poll sees nothing.
	msgs, err := consume(t, c, 16, 0, false)
	expectNotExist(t, msgs, err)

	second := mustConsume(t, c, 1, 10)[0]
	if second.MessageId != pub.MessageId {
		t.Fatalf("redelivered %s, want %s", second.MessageId, pub.MessageId)
	}
	if second.ReceiptHandle == first.ReceiptHandle {
		t.Fatal("redelivery reused the receipt handle")
	}
	if second.ConsumedTimes != 2 || second.FirstConsumeTime != first.FirstConsumeTime {
		t.Fatalf("redelivery ConsumedTimes %d FirstConsumeTime %d; want 2 and %d",
			second.ConsumedTimes, second.FirstConsumeTime, first.FirstConsumeTime)
	}
	if second.NextConsumeTime-1000 < first.NextConsumeTime {
		t.Fatalf("redelivered at %d, before the first invisibility ended at %d", second.NextConsumeTime-1000, first.NextConsumeTime)
	}

	// The old handle no longer works; the new one does.
	err = c.AckMessage([]string{first.ReceiptHandle})
	items := ackItems(t, err)
	if len(items) != 1 || items[0].ErrorCode != "ReceiptHandleError" || items[0].ErrorHandle != first.ReceiptHandle {
		t.Fatalf("ack of the superseded handle: %+v", items)
	}
	if err := c.AckMessage([]string{second.ReceiptHandle}); err != nil {
		t.Fatalf("ack of the new handle: %v", err)
	}
	s := h.emu.Stats(testTopic, "G")
	if s.Acked != 1 || s.Delivered != 2 || s.InFlight != 0 || s.Ready != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAckExpiredHandleReportsPerHandleError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "slow"})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "fast"})
	c := h.consumer(testTopic, "G", "")
	msgs := mustConsume(t, c, 1, 1)
	expired := msgs[0]
	testwait.Until(t, 10*time.Second, "the invisibility to end", func() bool {
		return time.Now().UnixMilli() > expired.NextConsumeTime
	})
	// Not yet redelivered (nobody consumed): the handle is expired, not
	// superseded, and the message counts as ready again.
	if s := h.emu.Stats(testTopic, "G"); s.InFlight != 0 || s.Ready != 2 {
		t.Fatalf("stats after expiry %+v", s)
	}
	items := ackItems(t, c.AckMessage([]string{expired.ReceiptHandle}))
	if len(items) != 1 || items[0].ErrorCode != "ReceiptHandleError" || items[0].ErrorHandle != expired.ReceiptHandle ||
		!strings.Contains(items[0].ErrorMsg, "expired") {
		t.Fatalf("ack of an expired handle: %+v", items)
	}
	valid := mustConsume(t, c, 1, 1)[0]
	if valid.MessageBody != "slow" || valid.ConsumedTimes != 2 {
		t.Fatalf("want the expired message redelivered first, got %q x%d", valid.MessageBody, valid.ConsumedTimes)
	}
	err := c.AckMessage([]string{valid.ReceiptHandle, expired.ReceiptHandle, "garbage-handle"})
	items = ackItems(t, err)
	if len(items) != 2 {
		t.Fatalf("got %d failed items %+v, want 2", len(items), items)
	}
	for i, want := range []string{expired.ReceiptHandle, "garbage-handle"} {
		if items[i].ErrorHandle != want || items[i].ErrorCode != "ReceiptHandleError" || items[i].ErrorMsg == "" {
			t.Fatalf("item %d = %+v, want ReceiptHandleError for %q", i, items[i], want)
		}
	}
	if !strings.Contains(err.Error(), "ReceiptHandleError") {
		t.Fatalf("error text %q lacks the code", err)
	}
	// The valid handle in the same batch was acked.
	if s := h.emu.Stats(testTopic, "G"); s.Acked != 1 || s.Ready != 1 {
		t.Fatalf("stats %+v: want the valid handle acked, the other message ready", s)
	}
}

func TestAckErrorWholeRequestUsesErrorShape(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "x"})
	msgs := mustConsume(t, h.consumer(testTopic, "G", ""), 1, 1)
	bad := mq.NewAliyunMQClient(h.srv.URL, testAK, "wrong-secret", "")
	err := bad.GetConsumer("", testTopic, "G", "").AckMessage(handlesOf(msgs))
	if err == nil || sdkCode(err) != 101 || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("ack with a wrong secret: %v (code %d), want SDK code 101 SignatureDoesNotMatch", err, sdkCode(err))
	}
	// A handle from another group is unknown there.
	err = h.consumer(testTopic, "Other", "").AckMessage(handlesOf(msgs))
	if items := ackItems(t, err); len(items) != 1 || items[0].ErrorCode != "ReceiptHandleError" {
		t.Fatalf("cross-group ack: %+v", items)
	}
}

func TestDuplicateInjection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Faults: Faults{DuplicateRate: 1}, InvisibleTime: 30 * time.Second})
	pub := h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "twice"})
	c := h.consumer(testTopic, "G", "")
	a := mustConsume(t, c, 16, 1)
	b := mustConsume(t, c, 16, 1)
	if len(a) != 1 || len(b) != 1 || a[0].MessageId != pub.MessageId || b[0].MessageId != pub.MessageId {
		t.Fatalf("want the same message twice, got %d and %d", len(a), len(b))
	}
	if a[0].ReceiptHandle == b[0].ReceiptHandle || b[0].ConsumedTimes != 2 {
		t.Fatalf("duplicate: handle reused or ConsumedTimes %d", b[0].ConsumedTimes)
	}
	// Both deliveries are acknowledgeable; the message is acked once.
	if err := c.AckMessage([]string{a[0].ReceiptHandle}); err != nil {
		t.Fatalf("ack first: %v", err)
	}
	if err := c.AckMessage([]string{b[0].ReceiptHandle}); err != nil {
		t.Fatalf("ack duplicate: %v", err)
	}
	// A duplicate is never duplicated again.
	msgs, err := consume(t, c, 16, 0, false)
	expectNotExist(t, msgs, err)
	want := GroupStats{Topic: testTopic, Group: "G", Published: 1, Acked: 1, Delivered: 2}
	if s := h.emu.Stats(testTopic, "G"); s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}

	// The duplicate still arrives when the original was acked first, as
	// a consumer that processed the message must be ready for.
	pub2 := h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "acked-then-dup"})
	first := mustConsume(t, c, 16, 1)
	if err := c.AckMessage(handlesOf(first)); err != nil {
		t.Fatal(err)
	}
	dup := mustConsume(t, c, 16, 1)
	if len(dup) != 1 || dup[0].MessageId != pub2.MessageId {
		t.Fatalf("after ack, want the duplicate of %s, got %v", pub2.MessageId, bodiesOf(dup))
	}
	if err := c.AckMessage(handlesOf(dup)); err != nil {
		t.Fatalf("ack of a duplicate of an acked message: %v", err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Acked != 2 || s.InFlight != 0 || s.Ready != 0 || s.Delivered != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTagFilter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	for _, tag := range []string{"TagA", "TagB", "Tag C", "", "TagA"} {
		h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "body-" + tag, MessageTag: tag})
	}
	// The Go SDK query-escapes the filter: "TagA%7C%7CTag+C".
	c := h.consumer(testTopic, "Filtered", "TagA||Tag C")
	got := bodiesOf(mustConsume(t, c, 16, 1))
	if want := []string{"body-TagA", "body-Tag C", "body-TagA"}; !slices.Equal(got, want) {
		t.Fatalf("filtered consume %v, want %v", got, want)
	}
	s := h.emu.Stats(testTopic, "Filtered")
	if s.Filtered != 2 || s.InFlight != 3 || s.Published != 5 {
		t.Fatalf("stats %+v", s)
	}
	// A group without a filter gets everything.
	all := mustConsume(t, h.consumer(testTopic, "All", ""), 16, 1)
	if len(all) != 5 {
		t.Fatalf("unfiltered group got %d, want 5", len(all))
	}
	// "*" is everything too.
	if star := mustConsume(t, h.consumer(testTopic, "Star", "*"), 16, 1); len(star) != 5 {
		t.Fatalf("* got %d, want 5", len(star))
	}
}

func TestEveryGroupGetsEveryMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	var ids []string
	for i := range 5 {
		ids = append(ids, h.publish(testTopic, mq.PublishMessageRequest{MessageBody: strings.Repeat("x", i+1)}).MessageId)
	}
	// Before any consume, a group sees the whole topic as ready.
	if s := h.emu.Stats(testTopic, "G1"); s.Ready != 5 || s.Published != 5 {
		t.Fatalf("stats of a group that never consumed: %+v", s)
	}
	for _, g := range []string{"G1", "G2"} {
		c := h.consumer(testTopic, g, "")
		var got []string
		for len(got) < 5 {
			msgs := mustConsume(t, c, 2, 1)
			for _, m := range msgs {
				got = append(got, m.MessageId)
			}
			if err := c.AckMessage(handlesOf(msgs)); err != nil {
				t.Fatalf("%s ack: %v", g, err)
			}
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("group %s got %v, want %v", g, got, ids)
		}
		msgs, err := consume(t, c, 16, 0, false)
		expectNotExist(t, msgs, err)
	}
	all := h.emu.AllStats()
	if len(all) != 2 || all[0].Group != "G1" || all[1].Group != "G2" || all[0].Acked != 5 || all[1].Acked != 5 {
		t.Fatalf("AllStats %+v", all)
	}
}

func TestDeadLetterAfterMaxDeliveries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{MaxDeliveries: 2})
	pub := h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "poison", MessageKey: "k1", MessageTag: "bad"})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "fine"})
	c := h.consumer(testTopic, "G", "")
	seen := 0
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := consume(t, c, 16, 2, false)
		if isNotExist(err) {
			if h.emu.Stats(testTopic, "G").DeadLettered == 1 {
				break
			}
			continue
		}
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		for _, m := range msgs {
			if m.MessageBody == "fine" {
				if err := c.AckMessage([]string{m.ReceiptHandle}); err != nil {
					t.Fatalf("ack: %v", err)
				}
				continue
			}
			seen++
			if m.ConsumedTimes != int64(seen) {
				t.Fatalf("delivery %d has ConsumedTimes %d", seen, m.ConsumedTimes)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("poison message delivered %d times, want MaxDeliveries=2", seen)
	}
	s := h.emu.Stats(testTopic, "G")
	want := GroupStats{Topic: testTopic, Group: "G", Published: 2, Acked: 1, DeadLettered: 1, Delivered: 3}
	if s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
	dls := h.emu.DeadLetters(testTopic, "G")
	if len(dls) != 1 || dls[0].MessageID != pub.MessageId || dls[0].Body != "poison" || dls[0].Key != "k1" ||
		dls[0].Tag != "bad" || dls[0].ConsumedTimes != 2 || dls[0].FirstConsumeTime.IsZero() {
		t.Fatalf("dead letters %+v", dls)
	}
	// The operator endpoint lists it too.
	resp, err := http.Get(h.srv.URL + "/_emulator/deadletters?topic=" + testTopic + "&group=G")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var fromHTTP []DeadLetter
	if err := json.NewDecoder(resp.Body).Decode(&fromHTTP); err != nil || len(fromHTTP) != 1 || fromHTTP[0].MessageID != pub.MessageId {
		t.Fatalf("GET deadletters: %v %+v", err, fromHTTP)
	}
	msgs, err := consume(t, c, 16, 0, false)
	expectNotExist(t, msgs, err)
}

func TestAuthenticationErrorsThroughSDK(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	msg := mq.PublishMessageRequest{MessageBody: "x"}

	wrongSecret := mq.NewAliyunMQClient(h.srv.URL, testAK, "not-the-secret", "")
	_, err := wrongSecret.GetProducer("", testTopic).PublishMessage(msg)
	if err == nil || sdkCode(err) != 101 || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: %v", err)
	}
	unknownKey := mq.NewAliyunMQClient(h.srv.URL, "nobody", testSK, "")
	_, err = unknownKey.GetProducer("", testTopic).PublishMessage(msg)
	if err == nil || !strings.Contains(err.Error(), "InvalidAccessKeyId") {
		t.Fatalf("unknown key: %v", err)
	}
	msgs, err := consume(t, wrongSecret.GetConsumer("", testTopic, "G", ""), 16, 1, false)
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("consume with wrong secret: %v %v", msgs, err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Published != 0 {
		t.Fatalf("rejected publishes were stored: %+v", s)
	}
}

func TestOrderlyConsume(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{OrderlyInvisibleTime: time.Second})
	for _, m := range []struct{ body, shard string }{
		{"a1", "A"}, {"b1", "B"}, {"a2", "A"}, {"a3", "A"}, {"b2", "B"},
	} {
		h.publish(testTopic, mq.PublishMessageRequest{MessageBody: m.body, ShardingKey: m.shard})
	}
	c := h.consumer(testTopic, "G", "")
	orderly := func(n int32, wait int64) ([]mq.ConsumeMessageEntry, error) {
		return consume(t, c, n, wait, true)
	}
	first, err := orderly(2, 1)
	if err != nil {
		t.Fatalf("orderly consume: %v", err)
	}
	if got := bodiesOf(first); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Fatalf("first batch %v, want [a1 b1]", got)
	}
	if first[0].ShardingKey != "A" || first[1].ShardingKey != "B" {
		t.Fatalf("sharding keys %q %q", first[0].ShardingKey, first[1].ShardingKey)
	}
	if d := first[0].NextConsumeTime - first[0].FirstConsumeTime; d < 1000 || d > 1100 {
		t.Fatalf("orderly invisibility %d ms, want OrderlyInvisibleTime", d)
	}
	// Both shards have a batch in flight: nothing more.
	msgs, err := orderly(16, 0)
	expectNotExist(t, msgs, err)

	// Acking a1 releases shard A only.
	if err := c.AckMessage([]string{first[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	second, err := orderly(16, 0)
	if err != nil {
		t.Fatalf("after ack of a1: %v", err)
	}
	if got := bodiesOf(second); !slices.Equal(got, []string{"a2", "a3"}) {
		t.Fatalf("second batch %v, want [a2 a3] (shard B still held by b1)", got)
	}
	// Ack a3 but not a2: shard A stays held until a2's invisibility ends,
	// then a2 comes back before anything newer.
	if err := c.AckMessage([]string{second[1].ReceiptHandle, first[1].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	third, err := orderly(16, 1)
	if err != nil {
		t.Fatalf("third batch: %v", err)
	}
	if got := bodiesOf(third); !slices.Equal(got, []string{"b2"}) {
		t.Fatalf("third batch %v, want [b2] (a2 still invisible)", got)
	}
	fourth, err := orderly(16, 10)
	if err != nil {
		t.Fatalf("fourth batch: %v", err)
	}
	if got := bodiesOf(fourth); len(got) < 1 || got[0] != "a2" || fourth[0].ConsumedTimes != 2 {
		t.Fatalf("fourth batch %v (ConsumedTimes %d), want a2 redelivered", got, fourth[0].ConsumedTimes)
	}
}

func TestTimerMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	// Whole milliseconds: the protocol's due time has ms precision, so a
	// nanosecond-precise "at" could be up to 1 ms after a correct delivery.
	at := time.UnixMilli(time.Now().Add(1500 * time.Millisecond).UnixMilli())
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "later", StartDeliverTime: at.UnixMilli()})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "past", StartDeliverTime: time.Now().Add(-time.Hour).UnixMilli()})
	c := h.consumer(testTopic, "G", "")
	now := mustConsume(t, c, 16, 0)
	if len(now) != 1 || now[0].MessageBody != "past" {
		t.Fatalf("immediate consume %v, want only the past-due timer message", bodiesOf(now))
	}
	if err := c.AckMessage(handlesOf(now)); err != nil {
		t.Fatal(err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Scheduled != 1 || s.Ready != 0 {
		t.Fatalf("stats %+v, want 1 scheduled", s)
	}
	later := mustConsume(t, c, 16, 10)
	if later[0].MessageBody != "later" || time.Now().Before(at) {
		t.Fatalf("got %q at %v, due %v", later[0].MessageBody, time.Now(), at)
	}
	if later[0].StartDeliverTime != at.UnixMilli() {
		t.Fatalf("StartDeliverTime %d, want %d", later[0].StartDeliverTime, at.UnixMilli())
	}
}

func TestTransactionalMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	tp := h.client.GetTransProducer("", testTopic, "GID_tx")
	c := h.consumer(testTopic, "G", "")

	committed, err := tp.PublishMessage(mq.PublishMessageRequest{MessageBody: "commit-me", TransCheckImmunityTime: 10})
	if err != nil || committed.ReceiptHandle == "" {
		t.Fatalf("trans publish: %v, handle %q", err, committed.ReceiptHandle)
	}
	rolled, err := tp.PublishMessage(mq.PublishMessageRequest{MessageBody: "roll-me-back", TransCheckImmunityTime: 10})
	if err != nil {
		t.Fatal(err)
	}
	checked, err := tp.PublishMessage(mq.PublishMessageRequest{MessageBody: "check-me", TransCheckImmunityTime: 10})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := consume(t, c, 16, 0, false)
	expectNotExist(t, msgs, err) // half messages are invisible

	if err := tp.Commit(committed.ReceiptHandle); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := tp.Rollback(rolled.ReceiptHandle); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	got := mustConsume(t, c, 16, 1)
	if len(got) != 1 || got[0].MessageBody != "commit-me" || got[0].MessageId != committed.MessageId {
		t.Fatalf("after commit got %v", bodiesOf(got))
	}
	if err := c.AckMessage(handlesOf(got)); err != nil {
		t.Fatal(err)
	}
	if err := tp.Commit(rolled.ReceiptHandle); err == nil {
		t.Fatal("commit of a rolled-back handle succeeded")
	}

	// Unresolved until its check time (10 s, skipped via the test clock):
	// then the producer's check re-offers it with a fresh handle.
	respCh, errCh := make(chan mq.ConsumeMessageResponse, 1), make(chan error, 1)
	tp.ConsumeHalfMessage(respCh, errCh, 16, 0)
	select {
	case r := <-respCh:
		t.Fatalf("half message offered before its check time: %d", len(r.Messages))
	case err := <-errCh:
		if !isNotExist(err) {
			t.Fatal(err)
		}
	}
	h.emu.advance(11 * time.Second)
	tp.ConsumeHalfMessage(respCh, errCh, 16, 1)
	var half mq.ConsumeMessageEntry
	select {
	case r := <-respCh:
		if len(r.Messages) != 1 {
			t.Fatalf("half pop returned %d", len(r.Messages))
		}
		half = r.Messages[0]
	case err := <-errCh:
		t.Fatalf("half pop: %v", err)
	}
	if half.MessageId != checked.MessageId || half.ReceiptHandle == checked.ReceiptHandle {
		t.Fatalf("half pop %+v", half)
	}
	if err := tp.Commit(checked.ReceiptHandle); err == nil {
		t.Fatal("the publish handle still commits after the check re-issued the message")
	}
	if err := tp.Commit(half.ReceiptHandle); err != nil {
		t.Fatalf("commit with the pop handle: %v", err)
	}
	if got := mustConsume(t, c, 16, 1); got[0].MessageBody != "check-me" {
		t.Fatalf("got %v", bodiesOf(got))
	}
}

func TestInstanceID(t *testing.T) {
	t.Parallel()
	const inst = "MQ_INST_123_abc"
	h := newHarness(t, Config{InstanceID: inst})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "in-instance"})
	if got := mustConsume(t, h.consumer(testTopic, "G", ""), 16, 1); got[0].MessageBody != "in-instance" {
		t.Fatalf("got %v", bodiesOf(got))
	}
	for _, other := range []string{"", "MQ_INST_other"} {
		_, err := h.client.GetProducer(other, testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: "x"})
		if err == nil || !strings.Contains(err.Error(), "TopicNotExist") {
			t.Fatalf("instance %q: %v, want TopicNotExist", other, err)
		}
	}
}

func TestUnknownTopic(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	_, err := h.producer("nope").PublishMessage(mq.PublishMessageRequest{MessageBody: "x"})
	if err == nil || sdkCode(err) != 101 || !strings.Contains(err.Error(), "TopicNotExist") {
		t.Fatalf("publish to unknown topic: %v", err)
	}
	msgs, err := consume(t, h.consumer("nope", "G", ""), 16, 1, false)
	if err == nil || !strings.Contains(err.Error(), "TopicNotExist") {
		t.Fatalf("consume unknown topic: %v %v", msgs, err)
	}
	// AutoCreateTopics relaxes it; CreateTopic adds one at run time.
	h.emu.CreateTopic("added")
	h.publish("added", mq.PublishMessageRequest{MessageBody: "x"})
	auto := newHarness(t, Config{AutoCreateTopics: true})
	auto.publish("fresh", mq.PublishMessageRequest{MessageBody: "x"})
	if s := auto.emu.Stats("fresh", "G"); s.Ready != 1 {
		t.Fatalf("auto-created topic stats %+v", s)
	}
}

func TestOversizeBodyRejected(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	_, err := h.producer(testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: strings.Repeat("a", MaxMessageBodyBytes+1)})
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("4 MB + 1 body: %v", err)
	}
	// Exactly the limit is fine, escaped characters included.
	body := strings.Repeat("a", MaxMessageBodyBytes-3) + "<&>"
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: body})
	got := mustConsume(t, h.consumer(testTopic, "G", ""), 1, 1)
	if got[0].MessageBody != body {
		t.Fatal("4 MB body did not round-trip")
	}
	// Timer messages are limited to 64 KB.
	_, err = h.producer(testTopic).PublishMessage(mq.PublishMessageRequest{
		MessageBody: strings.Repeat("a", MaxTimerBodyBytes+1), StartDeliverTime: time.Now().Add(time.Minute).UnixMilli(),
	})
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("64 KB + 1 timer body: %v", err)
	}
}

func TestServerCloseReleasesLongPolls(t *testing.T) {
	t.Parallel()
	emu, err := New(Config{Credentials: []Credential{{testAK, testSK}}, Topics: []string{testTopic}})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv, err := Serve("127.0.0.1:0", emu)
	if err != nil {
		t.Fatal(err)
	}
	c := mq.NewAliyunMQClient(srv.URL, testAK, testSK, "").GetConsumer("", testTopic, "G", "")
	done := make(chan error, 1)
	go func() {
		_, err := consume(t, c, 16, 25, false)
		done <- err
	}()
	testwait.Until(t, 10*time.Second, "the long poll to register its group", func() bool {
		return len(emu.AllStats()) == 1
	})
	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Close took %v with a long poll pending", d)
	}
	select {
	case err := <-done:
		if !isNotExist(err) {
			t.Fatalf("released long poll: %v, want MessageNotExist", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll not released by Server.Close")
	}
	// The emulator outlives its server.
	if s := emu.Stats(testTopic, "G"); s.Topic != testTopic {
		t.Fatalf("stats after server close %+v", s)
	}
}

func TestStatsEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "x"})
	mustConsume(t, h.consumer(testTopic, "G", ""), 1, 1)

	var one GroupStats
	getJSON(t, h.srv.URL+"/_emulator/stats?topic="+testTopic+"&group=G", &one)
	if one != (GroupStats{Topic: testTopic, Group: "G", Published: 1, InFlight: 1, Delivered: 1}) {
		t.Fatalf("stats %+v", one)
	}
	var all struct {
		Topics []TopicStats
		Groups []GroupStats
	}
	getJSON(t, h.srv.StatsURL(), &all)
	if len(all.Topics) != 1 || all.Topics[0].Published != 1 || len(all.Groups) != 1 || all.Groups[0] != one {
		t.Fatalf("all stats %+v", all)
	}
	req, _ := http.NewRequest(http.MethodPut, h.srv.URL+"/_emulator/faults", strings.NewReader("dup=0.5,latency=1ms"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || h.emu.Faults() != (Faults{DuplicateRate: 0.5, Latency: time.Millisecond}) {
		t.Fatalf("PUT faults: %d, now %+v", resp.StatusCode, h.emu.Faults())
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

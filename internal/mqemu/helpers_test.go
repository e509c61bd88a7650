package mqemu

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"
	gerrors "github.com/gogap/errors"
)

const (
	testAK    = "test-access-key"
	testSK    = "test-secret-key"
	testTopic = "T"
)

// harness is one emulator on loopback plus a real Go SDK client.
type harness struct {
	tb       testing.TB
	emu      *Emulator
	srv      *Server
	client   mq.MQClient
	instance string
}

// newHarness fills test defaults into cfg: the test credential, topic T,
// 1 s invisibility, and logs to the test output when MQEMU_TEST_LOG=1.
func newHarness(tb testing.TB, cfg Config) *harness {
	tb.Helper()
	if cfg.Credentials == nil {
		cfg.Credentials = []Credential{{AccessKey: testAK, SecretKey: testSK}}
	}
	if cfg.Topics == nil {
		cfg.Topics = []string{testTopic}
	}
	if cfg.InvisibleTime == 0 {
		cfg.InvisibleTime = time.Second
	}
	if cfg.Logger == nil && os.Getenv("MQEMU_TEST_LOG") == "1" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	emu, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	srv, err := Serve("127.0.0.1:0", emu)
	if err != nil {
		tb.Fatalf("Serve: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Server.Close: %v", err)
		}
		if err := emu.Close(); err != nil {
			tb.Errorf("Emulator.Close: %v", err)
		}
	})
	return &harness{
		tb:       tb,
		emu:      emu,
		srv:      srv,
		client:   mq.NewAliyunMQClient(srv.URL, testAK, testSK, ""),
		instance: cfg.InstanceID,
	}
}

func (h *harness) producer(topic string) mq.MQProducer {
	return h.client.GetProducer(h.instance, topic)
}

func (h *harness) consumer(topic, group, tag string) mq.MQConsumer {
	return h.client.GetConsumer(h.instance, topic, group, tag)
}

// publish publishes through the SDK and fails the test on error.
func (h *harness) publish(topic string, msg mq.PublishMessageRequest) mq.PublishMessageResponse {
	h.tb.Helper()
	resp, err := h.producer(topic).PublishMessage(msg)
	if err != nil {
		h.tb.Fatalf("PublishMessage(%q): %v", msg.MessageBody, err)
	}
	return resp
}

// consume wraps the SDK's channel-based ConsumeMessage (or
// ConsumeMessageOrderly) in a call that returns.
func consume(tb testing.TB, c mq.MQConsumer, n int32, wait int64, orderly bool) ([]mq.ConsumeMessageEntry, error) {
	tb.Helper()
	respCh := make(chan mq.ConsumeMessageResponse, 1)
	errCh := make(chan error, 1)
	if orderly {
		go c.ConsumeMessageOrderly(respCh, errCh, n, wait)
	} else {
		go c.ConsumeMessage(respCh, errCh, n, wait)
	}
	select {
	case resp := <-respCh:
		return resp.Messages, nil
	case err := <-errCh:
		return nil, err
	case <-time.After(time.Duration(wait)*time.Second + 30*time.Second):
		tb.Fatalf("consume: no answer within %ds + 30s", wait)
		return nil, nil
	}
}

// mustConsume expects at least one message.
func mustConsume(tb testing.TB, c mq.MQConsumer, n int32, wait int64) []mq.ConsumeMessageEntry {
	tb.Helper()
	msgs, err := consume(tb, c, n, wait, false)
	if err != nil {
		tb.Fatalf("consume: %v", err)
	}
	if len(msgs) == 0 {
		tb.Fatal("consume: success with no messages")
	}
	return msgs
}

// expectNotExist expects the SDK's "no message" error.
func expectNotExist(tb testing.TB, msgs []mq.ConsumeMessageEntry, err error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("consume: got %d messages, want MessageNotExist", len(msgs))
	}
	if !isNotExist(err) {
		tb.Fatalf("consume: %v, want MessageNotExist", err)
	}
}

func isNotExist(err error) bool {
	return err != nil && strings.Contains(err.Error(), "MessageNotExist")
}

// sdkCode is the gogap error code the Go SDK attaches (101 server error,
// 102 ack item errors), or 0.
func sdkCode(err error) uint64 {
	if ec, ok := err.(gerrors.ErrCode); ok {
		return ec.Code()
	}
	return 0
}

// ackItems extracts the per-handle failures of an SDK ack error.
func ackItems(tb testing.TB, err error) []mq.ErrAckItem {
	tb.Helper()
	ec, ok := err.(gerrors.ErrCode)
	if !ok || ec.Code() != 102 {
		tb.Fatalf("ack error %v (%T): want SDK code 102", err, err)
	}
	items, ok := ec.Context()["Detail"].([]mq.ErrAckItem)
	if !ok {
		tb.Fatalf("ack error has no Detail: %#v", ec.Context())
	}
	return items
}

func handlesOf(msgs []mq.ConsumeMessageEntry) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ReceiptHandle
	}
	return out
}

func bodiesOf(msgs []mq.ConsumeMessageEntry) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.MessageBody
	}
	return out
}

// rawRequest is a hand-built, correctly signed request, for dialects and
// bad input the Go SDK cannot produce.
type rawRequest struct {
	method string
	target string // path and query, sent and signed verbatim
	body   []byte
	// node sends lowercase header names and no Content-MD5 on GET, as
	// @aliyunmq/mq-http-sdk does.
	node bool
	// edit may change headers after signing (to break them).
	edit func(h http.Header)
	// secret overrides the signing secret.
	secret string
	// date overrides the Date header (and what is signed).
	date string
	// signTarget, if set, is signed instead of target.
	signTarget string
}

// testSign is the signature algorithm written out independently of the
// emulator's, from the SDK source.
func testSign(secret, method, md5h, ctype, date string, mqh map[string]string, resource string) string {
	var lines []string
	for k, v := range mqh {
		lines = append(lines, strings.ToLower(k)+":"+strings.TrimSpace(v))
	}
	sort.Strings(lines)
	s := method + "\n" + md5h + "\n" + ctype + "\n" + date + "\n" + strings.Join(lines, "\n") + "\n" + resource
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func sdkMD5(body []byte) string {
	sum := md5.Sum(body)
	return base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:])))
}

// do sends rr and returns the status, headers and body.
func (h *harness) do(rr rawRequest) (int, http.Header, []byte) {
	h.tb.Helper()
	secret := rr.secret
	if secret == "" {
		secret = testSK
	}
	date := rr.date
	if date == "" {
		date = time.Now().UTC().Format(http.TimeFormat)
	}
	ctype := "text/xml;charset=utf-8"
	md := ""
	if !(rr.node && rr.method == http.MethodGet) {
		md = sdkMD5(rr.body)
	}
	mqh := map[string]string{"x-mq-version": "2015-06-06"}
	signed := rr.target
	if rr.signTarget != "" {
		signed = rr.signTarget
	}
	sig := testSign(secret, rr.method, md, ctype, date, mqh, signed)
	req, err := http.NewRequest(rr.method, h.srv.URL+rr.target, bytes.NewReader(rr.body))
	if err != nil {
		h.tb.Fatalf("NewRequest: %v", err)
	}
	set := func(k, v string) {
		if rr.node {
			req.Header[strings.ToLower(k)] = []string{v} // written verbatim, lowercase
		} else {
			req.Header.Set(k, v)
		}
	}
	set("Content-Type", ctype)
	set("Date", date)
	set("x-mq-version", "2015-06-06")
	set("Authorization", "MQ "+testAK+":"+sig)
	if md != "" {
		set("Content-MD5", md)
	}
	if rr.edit != nil {
		rr.edit(req.Header)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.tb.Fatalf("%s %s: %v", rr.method, rr.target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.tb.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header, body
}

type xmlError struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	RequestID string   `xml:"RequestId"`
	HostID    string   `xml:"HostId"`
}

// expectError checks a raw answer is the cloud's <Error> with code.
func expectError(tb testing.TB, status int, hdr http.Header, body []byte, wantStatus int, wantCode string) {
	tb.Helper()
	if status != wantStatus {
		tb.Fatalf("status %d, want %d (body %s)", status, wantStatus, body)
	}
	checkHeaders(tb, hdr)
	var e xmlError
	if err := xml.Unmarshal(body, &e); err != nil {
		tb.Fatalf("error body %q: %v", body, err)
	}
	if e.Code != wantCode {
		tb.Fatalf("code %q (%s), want %q", e.Code, e.Message, wantCode)
	}
	if e.RequestID == "" || e.RequestID != hdr.Get("x-mq-request-id") {
		tb.Fatalf("RequestId %q does not match header %q", e.RequestID, hdr.Get("x-mq-request-id"))
	}
}

func checkHeaders(tb testing.TB, hdr http.Header) {
	tb.Helper()
	if ct := hdr.Get("Content-Type"); ct != "text/xml;charset=utf-8" {
		tb.Fatalf("Content-Type %q", ct)
	}
	if hdr.Get("x-mq-request-id") == "" {
		tb.Fatal("no x-mq-request-id header")
	}
}

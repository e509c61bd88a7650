package mqemu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxRequestBytes bounds what a request may send. XML escaping can grow a
// body up to six times (`"` becomes `&#34;`), so a legal 4 MB body always
// fits; anything larger cannot hold a legal message.
const maxRequestBytes = 6*MaxMessageBodyBytes + MaxPropertiesBytes + 64<<10

var (
	errInvalidURL      = &apiError{400, "InvalidRequestURL", "Http request URL format invalid."}
	errMissingHandle   = &apiError{400, "MissingReceiptHandle", "ReceiptHandle is required."}
	errInvalidConsumer = &apiError{400, "InvalidArgument", "The value of consumer should not be empty."}
	errBodyTooLarge    = &apiError{400, "InvalidArgument", "The value of MessageBody should between 1 and " + strconv.Itoa(MaxMessageBodyBytes) + " bytes."}
)

func errInvalidQuery(item string) *apiError {
	return &apiError{400, "InvalidQueryString", `Http request URL contains invalid querystring item "` + item + `".`}
}

// ServeHTTP serves the RocketMQ HTTP API on /topics/{topic}/messages
// (publish POST, consume GET, ack DELETE, with trans=order|pop|commit|
// rollback), anywhere below a path prefix, and the unauthenticated JSON
// introspection endpoints under /_emulator/ (see README.md).
//
// Every API answer has Content-Type text/xml;charset=utf-8 and an
// x-mq-request-id header; errors use the cloud's XML shapes and codes.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_emulator" || strings.HasPrefix(r.URL.Path, "/_emulator/") {
		e.serveAdmin(w, r)
		return
	}
	start := time.Now()
	x := &exchange{w: w, r: r, requestID: e.newRequestID(), op: "unknown"}
	h := w.Header()
	h.Set("Content-Type", xmlContentType)
	h.Set("x-mq-request-id", x.requestID)
	h.Set("x-mq-version", mqVersion)
	if aerr := e.serveAPI(x); aerr != nil {
		x.fail(aerr)
	}
	level := e.logLevel(x)
	e.log.Log(r.Context(), level, "mqemu: request",
		"op", x.op, "topic", x.topic, "group", x.group, "status", x.status, "code", x.code,
		"requestId", x.requestID, "dur", time.Since(start))
}

func (e *Emulator) logLevel(x *exchange) slog.Level {
	switch {
	case x.status >= 500 && !x.injected:
		return slog.LevelWarn
	case x.status == http.StatusForbidden:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// exchange is one API request and what was answered.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	requestID string
	op        string
	topic     string
	group     string
	status    int
	code      string
	injected  bool // the 500 came from Faults.ErrorRate
}

func (x *exchange) write(status int, body []byte) {
	x.status = status
	x.w.WriteHeader(status)
	if len(body) > 0 {
		_, _ = x.w.Write(body) // the client went away; nothing to do
	}
}

func (x *exchange) fail(a *apiError) {
	x.code = a.code
	x.write(a.status, renderError(a, x.requestID, "http://"+x.r.Host))
}

func (e *Emulator) serveAPI(x *exchange) *apiError {
	r := x.r
	ctx := r.Context()
	e.mu.Lock()
	f := e.faults
	injectError := e.draw(f.ErrorRate)
	e.mu.Unlock()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if injectError {
		x.injected = true
		return errInternal
	}

	topicName, resource, ok := route(r)
	if !ok {
		return errInvalidURL
	}
	x.topic = topicName
	if aerr := e.authenticate(r, resource); aerr != nil {
		return aerr
	}
	body, aerr := readBody(x)
	if aerr != nil {
		return aerr
	}
	if md := r.Header.Get("Content-MD5"); md != "" && md != contentMD5(body) {
		return errBadDigest
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errInvalidQuery(r.URL.RawQuery)
	}
	if e.cfg.InstanceID != "" && q.Get("ns") != e.cfg.InstanceID {
		return &apiError{404, "TopicNotExist", "The topic you provided does not exist in instance " + q.Get("ns") + "; this endpoint serves instance " + e.cfg.InstanceID + "."}
	}
	x.group = q.Get("consumer")

	switch r.Method {
	case http.MethodPost:
		return e.servePublish(x, body)
	case http.MethodGet:
		return e.serveConsume(ctx, x, q)
	case http.MethodDelete:
		return e.serveAck(x, q, body)
	}
	return errInvalidURL
}

// route finds the topic in the path and the signed resource in the raw
// request target: both start at "/topics/", so an endpoint path prefix is
// neither routed nor signed.
func route(r *http.Request) (topicName, resource string, ok bool) {
	const marker = "/topics/"
	i := strings.Index(r.URL.Path, marker)
	if i < 0 {
		return "", "", false
	}
	name, rest, _ := strings.Cut(r.URL.Path[i+len(marker):], "/")
	if name == "" || strings.TrimSuffix(rest, "/") != "messages" {
		return "", "", false
	}
	raw := r.RequestURI
	if raw == "" { // a handler called directly, not through a server
		raw = r.URL.RequestURI()
	}
	j := strings.Index(raw, marker)
	if j < 0 {
		return "", "", false
	}
	return name, raw[j:], true
}

func readBody(x *exchange) ([]byte, *apiError) {
	body, err := io.ReadAll(http.MaxBytesReader(x.w, x.r.Body, maxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errBodyTooLarge
		}
		return nil, &apiError{400, "InvalidArgument", "The request body could not be read."}
	}
	return body, nil
}

func (e *Emulator) servePublish(x *exchange, body []byte) *apiError {
	x.op = "publish"
	in, aerr := parsePublish(body)
	if aerr != nil {
		return aerr
	}
	res, aerr := e.publish(x.topic, in)
	if aerr != nil {
		return aerr
	}
	x.write(http.StatusCreated, renderPublish(res))
	return nil
}

func (e *Emulator) serveConsume(ctx context.Context, x *exchange, q url.Values) *apiError {
	in := consumeInput{topic: x.topic, group: x.group}
	switch q.Get("trans") {
	case "":
		x.op = "consume"
	case "order":
		x.op, in.orderly = "consumeOrderly", true
	case "pop":
		x.op, in.half = "consumeHalf", true
	default:
		return errInvalidQuery("trans")
	}
	if in.group == "" {
		return errInvalidConsumer
	}
	n, err := strconv.Atoi(q.Get("numOfMessages"))
	if err != nil || n < 1 || n > MaxBatch {
		return errInvalidArgument("The value of numOfMessages should between 1 and %d.", MaxBatch)
	}
	in.n = n
	if q.Has("waitseconds") {
		secs, err := strconv.Atoi(q.Get("waitseconds"))
		if err != nil || secs < 1 || secs > MaxWaitSeconds {
			return errInvalidArgument("The value of waitseconds should between 1 and %d.", MaxWaitSeconds)
		}
		in.wait = min(time.Duration(secs)*time.Second, e.cfg.MaxLongPoll)
	}
	in.filter = parseTagFilter(q.Get("tag"))
	ds, aerr := e.consume(ctx, in)
	if aerr != nil {
		return aerr
	}
	x.write(http.StatusOK, renderMessages(ds))
	return nil
}

func (e *Emulator) serveAck(x *exchange, q url.Values, body []byte) *apiError {
	mode := modeAck
	switch q.Get("trans") {
	case "":
		x.op = "ack"
		if x.group == "" {
			return errInvalidConsumer
		}
	case "commit":
		x.op, mode = "commit", modeCommit
	case "rollback":
		x.op, mode = "rollback", modeRollback
	default:
		return errInvalidQuery("trans")
	}
	handles, aerr := parseHandles(body)
	if aerr != nil {
		return aerr
	}
	if len(handles) == 0 {
		return errMissingHandle
	}
	if len(handles) > MaxBatch {
		return errInvalidArgument("The count of ReceiptHandle should between 1 and %d.", MaxBatch)
	}
	failed, aerr := e.ack(x.topic, x.group, handles, mode)
	if aerr != nil {
		return aerr
	}
	if len(failed) == 0 {
		x.write(http.StatusNoContent, nil)
		return nil
	}
	x.code = "ReceiptHandleError"
	x.write(http.StatusNotFound, renderAckErrors(failed))
	return nil
}

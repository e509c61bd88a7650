package mqemu

import (
	"encoding/xml"
	"net/http"
	"strings"
	"testing"
	"time"

	mq "github.com/aliyunmq/mq-http-go-sdk"
)

// These tests send hand-built, correctly signed requests: the Node SDK's
// dialect and bad input the Go SDK never produces.

type xmlMessages struct {
	XMLName  xml.Name `xml:"Messages"`
	Messages []struct {
		MessageID       string `xml:"MessageId"`
		ReceiptHandle   string `xml:"ReceiptHandle"`
		MessageBody     string `xml:"MessageBody"`
		MessageTag      string `xml:"MessageTag"`
		Properties      string `xml:"Properties"`
		ConsumedTimes   int64  `xml:"ConsumedTimes"`
		NextConsumeTime int64  `xml:"NextConsumeTime"`
	} `xml:"Message"`
}

type xmlPublished struct {
	XMLName        xml.Name `xml:"Message"`
	MessageID      string   `xml:"MessageId"`
	MessageBodyMD5 string   `xml:"MessageBodyMD5"`
}

func TestNodeStyleRequests(t *testing.T) {
	t.Parallel()
	const inst = "MQ_INST_node"
	h := newHarness(t, Config{InstanceID: inst})

	// Publish as @aliyunmq/mq-http-sdk does: declaration, namespace, CDATA,
	// properties without a trailing "|", lowercase header names.
	pubBody := `<?xml version="1.0" encoding="UTF-8"?>` +
		`<Message xmlns="http://mq.aliyuncs.com/doc/v1/">` +
		`<MessageBody><![CDATA[hello <node> & "friends"]]></MessageBody>` +
		`<MessageTag><![CDATA[Tag B]]></MessageTag>` +
		`<Properties><![CDATA[KEYS:k-1|a:b]]></Properties></Message>`
	status, hdr, body := h.do(rawRequest{method: http.MethodPost, target: "/topics/T/messages?ns=" + inst, body: []byte(pubBody), node: true})
	if status != http.StatusCreated {
		t.Fatalf("node publish: %d %s", status, body)
	}
	checkHeaders(t, hdr)
	var pub xmlPublished
	if err := xml.Unmarshal(body, &pub); err != nil || pub.MessageID == "" || pub.MessageBodyMD5 == "" {
		t.Fatalf("publish answer %s: %v", body, err)
	}

	// Consume with Node's parameter order, %20 in the tag and no
	// content-md5 on GET.
	status, hdr, body = h.do(rawRequest{
		method: http.MethodGet,
		target: "/topics/T/messages?consumer=GID_node&ns=" + inst + "&tag=Tag%20B&numOfMessages=3&waitseconds=2",
		node:   true,
	})
	if status != http.StatusOK {
		t.Fatalf("node consume: %d %s", status, body)
	}
	checkHeaders(t, hdr)
	var msgs xmlMessages
	if err := xml.Unmarshal(body, &msgs); err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("consume answer %s: %v", body, err)
	}
	m := msgs.Messages[0]
	if m.MessageID != pub.MessageID || m.MessageBody != `hello <node> & "friends"` || m.MessageTag != "Tag B" {
		t.Fatalf("consumed %+v", m)
	}
	if !strings.Contains(m.Properties, "KEYS:k-1|") || !strings.Contains(m.Properties, "a:b|") {
		t.Fatalf("properties %q do not echo KEYS and a:b", m.Properties)
	}

	// The Go SDK reads the same message's properties from a Node
	// publisher: check via a second group.
	goMsgs := mustConsume(t, h.consumer(testTopic, "GID_go", "Tag B"), 16, 1)
	if goMsgs[0].MessageKey != "k-1" || goMsgs[0].Properties["a"] != "b" {
		t.Fatalf("Go SDK view of a Node message: key %q props %v", goMsgs[0].MessageKey, goMsgs[0].Properties)
	}

	// Ack as Node does: CDATA handles.
	ackBody := `<?xml version="1.0" encoding="UTF-8"?><ReceiptHandles xmlns="http://mq.aliyuncs.com/doc/v1/">` +
		`<ReceiptHandle><![CDATA[` + m.ReceiptHandle + `]]></ReceiptHandle></ReceiptHandles>`
	status, hdr, body = h.do(rawRequest{method: http.MethodDelete, target: "/topics/T/messages?consumer=GID_node&ns=" + inst, body: []byte(ackBody), node: true})
	if status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("node ack: %d %s", status, body)
	}
	checkHeaders(t, hdr)
	if s := h.emu.Stats(testTopic, "GID_node"); s.Acked != 1 || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}

	// A second ack of the same handle fails per handle, in the <Errors> shape.
	status, hdr, body = h.do(rawRequest{method: http.MethodDelete, target: "/topics/T/messages?consumer=GID_node&ns=" + inst, body: []byte(ackBody), node: true})
	if status != http.StatusNotFound {
		t.Fatalf("repeated ack: %d %s", status, body)
	}
	checkHeaders(t, hdr)
	var errs mq.AckMessageErrorResponse
	if err := xml.Unmarshal(body, &errs); err != nil || len(errs.FailedMessages) != 1 ||
		errs.FailedMessages[0].ErrorCode != "ReceiptHandleError" || errs.FailedMessages[0].ReceiptHandle != m.ReceiptHandle {
		t.Fatalf("repeated ack body %s: %v", body, err)
	}
}

func TestSignatureAndHeaderErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	get := "/topics/T/messages?consumer=G&numOfMessages=1"
	cases := []struct {
		name   string
		rr     rawRequest
		status int
		code   string
	}{
		{"wrong secret", rawRequest{secret: "wrong"}, 403, "SignatureDoesNotMatch"},
		{"missing date", rawRequest{edit: func(h http.Header) { h.Del("Date") }}, 400, "MissingDateHeader"},
		{"bad date", rawRequest{date: "yesterday"}, 400, "InvalidDateHeader"},
		{"stale date", rawRequest{date: time.Now().Add(-20 * time.Minute).UTC().Format(http.TimeFormat)}, 408, "TimeExpired"},
		{"future date", rawRequest{date: time.Now().Add(20 * time.Minute).UTC().Format(http.TimeFormat)}, 408, "TimeExpired"},
		{"missing authorization", rawRequest{edit: func(h http.Header) { h.Del("Authorization") }}, 400, "MissingAuthorizationHeader"},
		{"malformed authorization", rawRequest{edit: func(h http.Header) { h.Set("Authorization", "Basic abc") }}, 400, "InvalidAuthorizationHeader"},
		{"unknown key", rawRequest{edit: func(h http.Header) { h.Set("Authorization", "MQ someone:c2ln") }}, 403, "InvalidAccessKeyId"},
		{"tampered x-mq header", rawRequest{edit: func(h http.Header) { h.Set("x-mq-version", "2099-01-01") }}, 403, "SignatureDoesNotMatch"},
		{"unsigned x-mq header", rawRequest{edit: func(h http.Header) { h.Set("x-mq-extra", "1") }}, 403, "SignatureDoesNotMatch"},
		{"wrong content-md5", rawRequest{edit: func(h http.Header) { h.Set("Content-MD5", sdkMD5([]byte("other"))) }}, 403, "SignatureDoesNotMatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rr := tc.rr
			rr.method, rr.target = http.MethodGet, get
			status, hdr, body := h.do(rr)
			expectError(t, status, hdr, body, tc.status, tc.code)
		})
	}
	// The raw target is what is signed: the same parameters in another
	// order (or escaped differently) do not match.
	t.Run("reordered query", func(t *testing.T) {
		status, hdr, body := h.do(rawRequest{method: http.MethodGet, target: get, signTarget: "/topics/T/messages?numOfMessages=1&consumer=G"})
		expectError(t, status, hdr, body, 403, "SignatureDoesNotMatch")
	})
	t.Run("control", func(t *testing.T) {
		status, hdr, body := h.do(rawRequest{method: http.MethodGet, target: get})
		expectError(t, status, hdr, body, 404, "MessageNotExist")
	})
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	pub := "/topics/T/messages"
	cases := []struct {
		name   string
		method string
		target string
		body   string
		status int
		code   string
	}{
		{"malformed xml", "POST", pub, "<Message><MessageBody>x</MessageBody>", 400, "MalformedXML"},
		{"not xml", "POST", pub, "hello", 400, "MalformedXML"},
		{"empty body", "POST", pub, "", 400, "MalformedXML"},
		{"cdata end inside body", "POST", pub, "<Message><MessageBody><![CDATA[a]]>b]]></MessageBody></Message>", 400, "MalformedXML"},
		{"trailing garbage", "POST", pub, "<Message><MessageBody>x</MessageBody></Message><Message/>", 400, "MalformedXML"},
		{"wrong root", "POST", pub, "<Foo><MessageBody>x</MessageBody></Foo>", 400, "InvalidArgument"},
		{"no MessageBody", "POST", pub, "<Message><MessageTag>x</MessageTag></Message>", 400, "InvalidArgument"},
		{"empty MessageBody", "POST", pub, "<Message><MessageBody></MessageBody></Message>", 400, "InvalidArgument"},
		{"bad properties", "POST", pub, "<Message><MessageBody>x</MessageBody><Properties>novalue|</Properties></Message>", 400, "InvalidArgument"},
		{"bad timer", "POST", pub, "<Message><MessageBody>x</MessageBody><Properties>__STARTDELIVERTIME:soon|</Properties></Message>", 400, "InvalidArgument"},
		{"timer too far", "POST", pub, "<Message><MessageBody>x</MessageBody><Properties>__STARTDELIVERTIME:99999999999999|</Properties></Message>", 400, "InvalidArgument"},
		{"bad trans check", "POST", pub, "<Message><MessageBody>x</MessageBody><Properties>__TransCheckT:5|</Properties></Message>", 400, "InvalidArgument"},
		{"oversize properties", "POST", pub, "<Message><MessageBody>x</MessageBody><Properties>k:" + strings.Repeat("v", MaxPropertiesBytes) + "</Properties></Message>", 400, "InvalidArgument"},
		{"unknown topic", "POST", "/topics/Nope/messages", "<Message><MessageBody>x</MessageBody></Message>", 404, "TopicNotExist"},
		{"bad path", "POST", "/topics/T/other", "<Message><MessageBody>x</MessageBody></Message>", 400, "InvalidRequestURL"},
		{"no topic", "GET", "/queues/x", "", 400, "InvalidRequestURL"},
		{"numOfMessages 0", "GET", "/topics/T/messages?consumer=G&numOfMessages=0", "", 400, "InvalidArgument"},
		{"numOfMessages 17", "GET", "/topics/T/messages?consumer=G&numOfMessages=17", "", 400, "InvalidArgument"},
		{"numOfMessages undefined", "GET", "/topics/T/messages?consumer=G&numOfMessages=undefined", "", 400, "InvalidArgument"},
		{"numOfMessages missing", "GET", "/topics/T/messages?consumer=G", "", 400, "InvalidArgument"},
		{"waitseconds 0", "GET", "/topics/T/messages?consumer=G&numOfMessages=1&waitseconds=0", "", 400, "InvalidArgument"},
		{"waitseconds 31", "GET", "/topics/T/messages?consumer=G&numOfMessages=1&waitseconds=31", "", 400, "InvalidArgument"},
		{"waitseconds abc", "GET", "/topics/T/messages?consumer=G&numOfMessages=1&waitseconds=abc", "", 400, "InvalidArgument"},
		{"no consumer", "GET", "/topics/T/messages?numOfMessages=1", "", 400, "InvalidArgument"},
		{"bad trans", "GET", "/topics/T/messages?consumer=G&numOfMessages=1&trans=nope", "", 400, "InvalidQueryString"},
		{"bad query escape", "GET", "/topics/T/messages?consumer=G&numOfMessages=1&tag=%zz", "", 400, "InvalidQueryString"},
		{"consume unknown topic", "GET", "/topics/Nope/messages?consumer=G&numOfMessages=1", "", 404, "TopicNotExist"},
		{"ack no handles", "DELETE", "/topics/T/messages?consumer=G", "<ReceiptHandles></ReceiptHandles>", 400, "MissingReceiptHandle"},
		{"ack 17 handles", "DELETE", "/topics/T/messages?consumer=G", "<ReceiptHandles>" + strings.Repeat("<ReceiptHandle>h</ReceiptHandle>", 17) + "</ReceiptHandles>", 400, "InvalidArgument"},
		{"ack malformed", "DELETE", "/topics/T/messages?consumer=G", "<ReceiptHandles><ReceiptHandle>h", 400, "MalformedXML"},
		{"ack no consumer", "DELETE", "/topics/T/messages", "<ReceiptHandles><ReceiptHandle>h</ReceiptHandle></ReceiptHandles>", 400, "InvalidArgument"},
		{"unsupported method", "PUT", pub, "", 400, "InvalidRequestURL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := h.do(rawRequest{method: tc.method, target: tc.target, body: []byte(tc.body)})
			expectError(t, status, hdr, body, tc.status, tc.code)
		})
	}
	t.Run("oversize request body", func(t *testing.T) {
		big := "<Message><MessageBody>" + strings.Repeat("&amp;", maxRequestBytes/5+1) + "</MessageBody></Message>"
		status, hdr, body := h.do(rawRequest{method: "POST", target: pub, body: []byte(big)})
		expectError(t, status, hdr, body, 400, "InvalidArgument")
	})
	t.Run("digest mismatch", func(t *testing.T) {
		// Signed over a Content-MD5 that does not match the body.
		body := []byte("<Message><MessageBody>x</MessageBody></Message>")
		date := time.Now().UTC().Format(http.TimeFormat)
		md := sdkMD5([]byte("something else"))
		sig := testSign(testSK, "POST", md, "text/xml;charset=utf-8", date, map[string]string{"x-mq-version": "2015-06-06"}, pub)
		req, _ := http.NewRequest("POST", h.srv.URL+pub, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "text/xml;charset=utf-8")
		req.Header.Set("Content-MD5", md)
		req.Header.Set("Date", date)
		req.Header.Set("x-mq-version", "2015-06-06")
		req.Header.Set("Authorization", "MQ "+testAK+":"+sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e xmlError
		if err := xml.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 400 || e.Code != "InvalidDigest" {
			t.Fatalf("digest mismatch: %d %+v %v", resp.StatusCode, e, err)
		}
	})
	// None of it stored anything or broke the server.
	if s := h.emu.Stats(testTopic, "G"); s.Published != 0 {
		t.Fatalf("bad input stored messages: %+v", s)
	}
	h.publish(testTopic, mq.PublishMessageRequest{MessageBody: "still alive"})
	if got := mustConsume(t, h.consumer(testTopic, "G", ""), 1, 1); got[0].MessageBody != "still alive" {
		t.Fatalf("got %v", bodiesOf(got))
	}
}

func TestEndpointPathPrefixIsNotSigned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	// An endpoint with a path prefix and trailing slash: the SDK signs
	// only from /topics/.
	c := mq.NewAliyunMQClient(h.srv.URL+"/mq/", testAK, testSK, "")
	if _, err := c.GetProducer("", testTopic).PublishMessage(mq.PublishMessageRequest{MessageBody: "prefixed"}); err != nil {
		t.Fatalf("publish via prefixed endpoint: %v", err)
	}
	if s := h.emu.Stats(testTopic, "G"); s.Ready != 1 {
		t.Fatalf("stats %+v", s)
	}
}

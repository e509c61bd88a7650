package mqemu

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

const (
	xmlContentType = "text/xml;charset=utf-8"
	xmlNamespace   = "http://mq.aliyuncs.com/doc/v1/"
	xmlDecl        = `<?xml version="1.0" encoding="UTF-8"?>`
)

var errMalformedXML = &apiError{400, "MalformedXML", "The XML you provided was not well-formed."}

// decodeXML decodes one document into v. Both SDK dialects parse: Go's
// (no declaration, escaped text) and Node's (declaration, namespace,
// CDATA). A syntax error, including a stray "]]>", is MalformedXML; a
// well-formed document of the wrong shape is InvalidArgument.
func decodeXML(body []byte, v any) *apiError {
	d := xml.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		var syn *xml.SyntaxError
		if errors.As(err, &syn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errMalformedXML
		}
		return errInvalidArgument("The XML you provided did not validate against our published schema, cause by %s.", err.Error())
	}
	for { // only whitespace, comments and processing instructions may follow
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errMalformedXML
		}
		switch tok := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) > 0 {
				return errMalformedXML
			}
		case xml.Comment, xml.ProcInst:
		default:
			return errMalformedXML
		}
	}
}

type xmlPublishRequest struct {
	XMLName     xml.Name `xml:"Message"`
	MessageBody *string  `xml:"MessageBody"`
	MessageTag  string   `xml:"MessageTag"`
	Properties  string   `xml:"Properties"`
}

type xmlReceiptHandles struct {
	XMLName xml.Name `xml:"ReceiptHandles"`
	Handles []string `xml:"ReceiptHandle"`
}

// parsePublish turns a publish body into a publishInput.
func parsePublish(body []byte) (publishInput, *apiError) {
	var req xmlPublishRequest
	if aerr := decodeXML(body, &req); aerr != nil {
		return publishInput{}, aerr
	}
	if req.MessageBody == nil {
		return publishInput{}, errInvalidArgument("The XML you provided did not validate against our published schema, cause by MessageBody.")
	}
	if len(req.Properties) > MaxPropertiesBytes {
		return publishInput{}, errInvalidArgument("The value of Properties should between 0 and %d bytes.", MaxPropertiesBytes)
	}
	props, aerr := parseProperties(req.Properties)
	if aerr != nil {
		return publishInput{}, aerr
	}
	return publishInput{
		body:     *req.MessageBody,
		tag:      strings.TrimSpace(req.MessageTag),
		props:    props,
		propWire: renderProperties(props),
	}, nil
}

// parseProperties reads "k:v|k:v" with or without a trailing "|" (Go
// writes one, Node does not). A value keeps any further ':'.
func parseProperties(s string) (map[string]string, *apiError) {
	props := map[string]string{}
	for kv := range strings.SplitSeq(s, "|") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, ":")
		if !ok || k == "" {
			return nil, errInvalidArgument("The value of Properties is invalid: want key:value pairs separated by |.")
		}
		props[k] = v
	}
	return props, nil
}

// renderProperties writes props in a stable order with Go's trailing "|",
// which both SDKs parse.
func renderProperties(props map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		b.WriteString(k)
		b.WriteByte(':')
		b.WriteString(props[k])
		b.WriteByte('|')
	}
	return b.String()
}

// userProperties drops the reserved keys the SDKs lift into fields.
func userProperties(props map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range props {
		switch k {
		case propKeys, propStartDeliver, propTransCheck, propShardingKey:
		default:
			out[k] = v
		}
	}
	return out
}

func parseHandles(body []byte) ([]string, *apiError) {
	var req xmlReceiptHandles
	if aerr := decodeXML(body, &req); aerr != nil {
		return nil, aerr
	}
	for i, h := range req.Handles {
		req.Handles[i] = strings.TrimSpace(h)
	}
	return req.Handles, nil
}

func element(b *bytes.Buffer, name, text string) {
	b.WriteByte('<')
	b.WriteString(name)
	b.WriteByte('>')
	_ = xml.EscapeText(b, []byte(text)) // writes to a bytes.Buffer cannot fail
	b.WriteString("</")
	b.WriteString(name)
	b.WriteByte('>')
}

func intElement(b *bytes.Buffer, name string, v int64) {
	element(b, name, strconv.FormatInt(v, 10))
}

// renderError is the cloud's <Error> body.
// The declaration and namespace differ from the other answers on purpose:
// they are copied from a captured cloud error.
func renderError(a *apiError, requestID, hostID string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" ?><Error xmlns="http://mq.aliyuncs.com/doc/v1">`)
	element(&b, "Code", a.code)
	element(&b, "Message", a.message)
	element(&b, "RequestId", requestID)
	element(&b, "HostId", hostID)
	b.WriteString("</Error>")
	return b.Bytes()
}

func renderPublish(r publishResult) []byte {
	var b bytes.Buffer
	b.WriteString(xmlDecl)
	b.WriteString(`<Message xmlns="` + xmlNamespace + `">`)
	element(&b, "MessageId", r.id)
	element(&b, "MessageBodyMD5", r.bodyMD5)
	if r.handle != "" {
		element(&b, "ReceiptHandle", r.handle)
	}
	b.WriteString("</Message>")
	return b.Bytes()
}

// renderMessages is a consume answer; never called with an empty list.
func renderMessages(ds []dealt) []byte {
	var b bytes.Buffer
	b.WriteString(xmlDecl)
	b.WriteString(`<Messages xmlns="` + xmlNamespace + `">`)
	for _, d := range ds {
		m := d.msg
		b.WriteString("<Message>")
		element(&b, "MessageId", m.id)
		element(&b, "ReceiptHandle", d.handle)
		element(&b, "MessageBodyMD5", m.bodyMD5)
		element(&b, "MessageBody", m.body)
		intElement(&b, "PublishTime", m.publishMs)
		intElement(&b, "FirstConsumeTime", d.firstMs)
		intElement(&b, "NextConsumeTime", d.nextMs)
		intElement(&b, "ConsumedTimes", int64(d.consumed))
		if m.tag != "" {
			element(&b, "MessageTag", m.tag)
		}
		if m.propWire != "" {
			element(&b, "Properties", m.propWire)
		}
		b.WriteString("</Message>")
	}
	b.WriteString("</Messages>")
	return b.Bytes()
}

// renderAckErrors is the per-handle failure body; never called empty
// (an empty <Errors/> makes the Go SDK panic).
func renderAckErrors(fs []ackFailure) []byte {
	var b bytes.Buffer
	b.WriteString("<Errors>")
	for _, f := range fs {
		msg := "The receipt handle you provide is not valid."
		if f.result == ackExpired {
			msg = "The receipt handle you provide is not valid: it has expired."
		}
		b.WriteString("<Error>")
		element(&b, "ErrorCode", "ReceiptHandleError")
		element(&b, "ErrorMessage", msg)
		element(&b, "ReceiptHandle", f.handle)
		b.WriteString("</Error>")
	}
	b.WriteString("</Errors>")
	return b.Bytes()
}

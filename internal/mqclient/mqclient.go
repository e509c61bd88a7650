// Package mqclient adapts the Alibaba Cloud RocketMQ HTTP SDK to the small
// interface the pipeline needs, so activities can be tested against the
// emulator or a fake and the SDK's channel-based API stays in one place.
package mqclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	mq_http_sdk "github.com/aliyunmq/mq-http-go-sdk"
	gogaperrors "github.com/gogap/errors"
)

// Message is one delivery of a message.
type Message struct {
	MessageID       string
	Key             string
	Tag             string
	ReceiptHandle   string
	Body            []byte
	ConsumedTimes   int64
	PublishTime     int64 // ms epoch
	NextConsumeTime int64 // ms epoch: the handle is invalid after this
}

// HandleError reports one receipt handle the broker refused, typically
// because it expired or the message was redelivered with a new handle.
type HandleError struct {
	Handle string
	Code   string
	Msg    string
}

// Consumer is what the poller and acker need from a consumer group.
type Consumer interface {
	// Consume long-polls for up to n messages, for up to wait (whole
	// seconds, 1 to 30; below a second it is a short poll, answered at
	// once). No messages is (nil, nil).
	Consume(ctx context.Context, n int, wait time.Duration) ([]Message, error)
	// Ack acknowledges handles. Handles the broker refused are returned
	// in failed with a nil error; err is for the call as a whole
	// (network, 5xx, auth) and means nothing is known to be acked.
	Ack(ctx context.Context, handles []string) (failed []HandleError, err error)
}

// Producer publishes messages (used by demo seeding and `starter publish`).
type Producer interface {
	Publish(ctx context.Context, key, tag string, body []byte) (messageID string, err error)
}

// Endpoint holds what every SDK client needs.
type Endpoint struct {
	URL        string
	AccessKey  string
	SecretKey  string
	InstanceID string
}

// SDKConsumer is a Consumer backed by the official SDK.
type SDKConsumer struct {
	c mq_http_sdk.MQConsumer
}

// NewConsumer builds a consumer for (topic, group, tag).
func NewConsumer(e Endpoint, topic, group, tag string) *SDKConsumer {
	// The SDK's client timeout must outlast the longest long poll (30 s).
	cli := mq_http_sdk.NewAliyunMQClientWithTimeout(e.URL, e.AccessKey, e.SecretKey, "", 35*time.Second)
	return &SDKConsumer{c: cli.GetConsumer(e.InstanceID, topic, group, tag)}
}

// Consume implements Consumer. The SDK call cannot be cancelled, so on
// cancellation this returns at once and the in-flight call's messages, if
// any, are abandoned: they stay unacked and the broker redelivers them after
// their invisibility time. Nothing is lost, only delayed; callers that want
// no delay should let a call finish (it returns within wait + a little).
func (s *SDKConsumer) Consume(ctx context.Context, n int, wait time.Duration) ([]Message, error) {
	respCh := make(chan mq_http_sdk.ConsumeMessageResponse, 1)
	errCh := make(chan error, 1)
	go s.c.ConsumeMessage(respCh, errCh, int32(n), int64(wait/time.Second))
	select {
	case resp := <-respCh:
		out := make([]Message, 0, len(resp.Messages))
		for _, m := range resp.Messages {
			out = append(out, Message{
				MessageID:       m.MessageId,
				Key:             m.MessageKey,
				Tag:             m.MessageTag,
				ReceiptHandle:   m.ReceiptHandle,
				Body:            []byte(m.MessageBody),
				ConsumedTimes:   m.ConsumedTimes,
				PublishTime:     m.PublishTime,
				NextConsumeTime: m.NextConsumeTime,
			})
		}
		return out, nil
	case err := <-errCh:
		if IsNoMessage(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("consume: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ack implements Consumer.
func (s *SDKConsumer) Ack(ctx context.Context, handles []string) ([]HandleError, error) {
	if len(handles) == 0 {
		return nil, nil
	}
	done := make(chan error, 1)
	go func() { done <- s.c.AckMessage(handles) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err == nil {
		return nil, nil
	}
	var ec gogaperrors.ErrCode
	if errors.As(err, &ec) && mq_http_sdk.ErrAckMessage.IsEqual(err) {
		if items, ok := ec.Context()["Detail"].([]mq_http_sdk.ErrAckItem); ok {
			failed := make([]HandleError, 0, len(items))
			for _, it := range items {
				failed = append(failed, HandleError{Handle: it.ErrorHandle, Code: it.ErrorCode, Msg: it.ErrorMsg})
			}
			return failed, nil
		}
	}
	return nil, fmt.Errorf("ack %d handles: %w", len(handles), err)
}

// IsNoMessage reports the SDK's "no messages" result, which is not an error
// for a poller.
func IsNoMessage(err error) bool {
	return err != nil && strings.Contains(err.Error(), "MessageNotExist")
}

// SDKProducer is a Producer backed by the official SDK.
type SDKProducer struct {
	p mq_http_sdk.MQProducer
}

// NewProducer builds a producer for topic.
func NewProducer(e Endpoint, topic string) *SDKProducer {
	cli := mq_http_sdk.NewAliyunMQClientWithTimeout(e.URL, e.AccessKey, e.SecretKey, "", 10*time.Second)
	return &SDKProducer{p: cli.GetProducer(e.InstanceID, topic)}
}

// Publish implements Producer.
func (s *SDKProducer) Publish(ctx context.Context, key, tag string, body []byte) (string, error) {
	type result struct {
		id  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.p.PublishMessage(mq_http_sdk.PublishMessageRequest{MessageBody: string(body), MessageTag: tag, MessageKey: key})
		done <- result{resp.MessageId, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return "", fmt.Errorf("publish: %w", r.err)
		}
		return r.id, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Package mqemu emulates the Alibaba Cloud RocketMQ HTTP API, the protocol
// of github.com/aliyunmq/mq-http-go-sdk and the Node.js
// @aliyunmq/mq-http-sdk, so that tests and the local dev stack can run
// without a cloud broker, and injects the faults the cloud produces rarely:
// duplicate delivery, expired receipt handles, 5xx answers and latency.
//
// An Emulator is an http.Handler; Serve runs it on a TCP port for the SDKs:
//
//	emu, err := mqemu.New(mqemu.Config{
//		Credentials:   []mqemu.Credential{{AccessKey: "ak", SecretKey: "sk"}},
//		Topics:        []string{"orders"},
//		InvisibleTime: time.Second, // the cloud's 5 minutes is too slow for tests
//	})
//	srv, err := mqemu.Serve("127.0.0.1:0", emu)
//	defer emu.Close()
//	defer srv.Close()
//	client := mq_http_sdk.NewAliyunMQClient(srv.URL, "ak", "sk", "")
//
// Semantics in short:
//   - Publish stores body, tag and properties (KEYS, __STARTDELIVERTIME,
//     __SHARDINGKEY, __TransCheckT) and answers MessageId and the uppercase
//     hex MD5 of the body.
//   - Every consumer group sees every message of a topic, including those
//     published before the group first consumed (broadcast across groups);
//     within a group a message goes to one consumer at a time.
//   - A delivered message is invisible for InvisibleTime, then delivered
//     again with a new receipt handle and ConsumedTimes+1 (FirstConsumeTime
//     kept); the old handle then fails with ReceiptHandleError. When the
//     MaxDeliveries-th delivery times out the message is dead-lettered and
//     listed by DeadLetters.
//   - The tag filter is the group's subscription: a message it does not
//     match is dropped for that group (Filtered), as the broker does, so all
//     consumers of a group must use the same filter.
//   - Orderly consumption holds a sharding key back while any message of
//     its previous batch is unacked and invisible.
//   - Transactional messages are half messages until committed or rolled
//     back (with the publish handle, or a trans=pop handle).
//   - Stats and GET /_emulator/stats count Ready, Scheduled, InFlight, Acked,
//     DeadLettered and Filtered messages per (topic, group).
//
// README.md lists every behaviour and error code, the introspection
// endpoints, and the benchmark figures with the command to reproduce them.
package mqemu

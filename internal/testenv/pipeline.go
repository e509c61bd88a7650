package testenv

import "testing"

// OwnTopic gives the Env a topic of its own on its emulator. Tests that run
// a worker need one: the Temporal server is shared by the package, and
// poller workflow IDs derive from topic and group.
func (e *Env) OwnTopic(t testing.TB) {
	e.Topic = "sync-" + randomHex(t, 4)
	e.MQ.CreateTopic(e.Topic)
}

// WorkerVars is the environment a worker or the starter reads to reach
// this Env: broker, database, Temporal, task queue, workflow ID prefix and
// payload key (plaintext with Options.Plaintext), with the short poll wait
// and ack flush tests want. overrides are applied last; an override that
// brings its own SYNCBRIDGE_PAYLOAD_KEY without a key ID drops the Env's
// key ID, which names the Env's key, not that one.
func (e *Env) WorkerVars(prefix string, overrides map[string]string) map[string]string {
	vars := map[string]string{
		"ROCKETMQ_ENDPOINT":             e.MQURL,
		"ALIBABA_ACCESS_KEY":            e.AccessKey,
		"ALIBABA_SECRET_KEY":            e.SecretKey,
		"ROCKETMQ_INSTANCE_ID":          e.InstanceID,
		"ROCKETMQ_TOPIC":                e.Topic,
		"ROCKETMQ_GROUP_ID":             e.Group,
		"POLARDB_DSN":                   e.DSN,
		"TEMPORAL_ADDRESS":              e.TemporalAddr,
		"TEMPORAL_NAMESPACE":            e.Namespace,
		"SYNCBRIDGE_TASK_QUEUE":         e.TaskQueue,
		"SYNCBRIDGE_WORKFLOW_ID_PREFIX": prefix,
		"SYNCBRIDGE_POLL_WAIT":          "2s",
		"SYNCBRIDGE_ACK_FLUSH":          "20ms",
	}
	if e.PayloadKey != "" {
		vars["SYNCBRIDGE_PAYLOAD_KEY"] = e.PayloadKey
		vars["SYNCBRIDGE_PAYLOAD_KEY_ID"] = e.PayloadKeyID
	} else {
		vars["SYNCBRIDGE_PAYLOAD_PLAINTEXT"] = "true"
	}
	for k, v := range overrides {
		vars[k] = v
	}
	if _, own := overrides["SYNCBRIDGE_PAYLOAD_KEY"]; own && overrides["SYNCBRIDGE_PAYLOAD_KEY_ID"] == "" {
		delete(vars, "SYNCBRIDGE_PAYLOAD_KEY_ID")
		delete(vars, "SYNCBRIDGE_PAYLOAD_PLAINTEXT")
	}
	return vars
}

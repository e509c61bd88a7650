package workerapp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
)

// Why a preflight: each of these faults used to surface late and far from
// its cause. A missing SyncOutcome search attribute let every record insert
// and ack, then fail its last workflow task forever; wrong broker
// credentials showed only as poll errors in a poller's history; a missing
// namespace or table as retries. A worker that cannot work refuses to
// start instead, with one message naming every problem found.

// preflightTimeout bounds the whole preflight; each probe is one call.
const preflightTimeout = 30 * time.Second

// preflightHandle is a receipt handle no broker issues. Acking it is a
// signed request that proves the credentials (and topic and instance)
// without consuming anything: a consume would make the messages it got
// invisible for the invisibility time, and they would come back late.
const preflightHandle = "syncbridge-preflight-not-a-handle"

// PreflightError lists what keeps the worker from starting.
type PreflightError struct {
	Problems []string
}

func (e *PreflightError) Error() string {
	return "refusing to start: " + strings.Join(e.Problems, "; ")
}

// preflight checks the namespace, the search attribute, the schema and the
// broker credentials, and returns a *PreflightError naming each problem.
// Transient trouble (a 5xx, a timeout) is retried within the timeout: the
// point is to refuse a wrong configuration, not a busy dependency.
func preflight(ctx context.Context, cfg config.Config, tc client.Client, st *store.Store, consumer mqclient.Consumer) error {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	var problems []string
	if p := checkNamespace(ctx, cfg, tc); p != "" {
		problems = append(problems, p)
	}
	if len(problems) == 0 { // no namespace, no attributes to look at
		if p := checkSearchAttributes(ctx, cfg, tc); p != "" {
			problems = append(problems, p)
		}
	}
	if err := st.CheckSchema(ctx); err != nil {
		problems = append(problems, fmt.Sprintf("database %s: %v", config.RedactDSN(cfg.DB.DSN), err))
	}
	if p := checkBroker(ctx, cfg, consumer); p != "" {
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return &PreflightError{Problems: problems}
	}
	return nil
}

func checkNamespace(ctx context.Context, cfg config.Config, tc client.Client) string {
	_, err := tc.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: cfg.Temporal.Namespace})
	var nf *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		return ""
	case errors.As(err, &nf):
		return fmt.Sprintf("Temporal namespace %q does not exist at %s (TEMPORAL_NAMESPACE; create it with `temporal operator namespace create`)",
			cfg.Temporal.Namespace, cfg.Temporal.Address)
	}
	return fmt.Sprintf("cannot describe Temporal namespace %q at %s: %v", cfg.Temporal.Namespace, cfg.Temporal.Address, err)
}

func checkSearchAttributes(ctx context.Context, cfg config.Config, tc client.Client) string {
	ns := cfg.Temporal.Namespace
	resp, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	var unimpl *serviceerror.Unimplemented
	var denied *serviceerror.PermissionDenied
	if errors.As(err, &unimpl) || errors.As(err, &denied) {
		// Some hosted setups do not let workers use the operator
		// service; a visibility query naming the attribute fails the
		// same way when it is unknown.
		return checkSearchAttributesByQuery(ctx, cfg, tc)
	}
	if err != nil {
		return fmt.Sprintf("cannot list search attributes of namespace %q: %v", ns, err)
	}
	var missing []string
	for name, want := range searchattr.All() {
		got, ok := resp.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s (%s)", name, want))
		case got != want:
			missing = append(missing, fmt.Sprintf("%s registered as %s, want %s", name, got, want))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	slices.Sort(missing) // one message for one state, whatever the map order
	return fmt.Sprintf("Temporal namespace %q lacks search attribute %s: records would insert and ack, then fail their last workflow task (register: `temporal operator search-attribute create --namespace %s --name SyncOutcome --type Keyword` and `... --name SyncKeys --type KeywordList`)",
		ns, strings.Join(missing, ", "), ns)
}

func checkSearchAttributesByQuery(ctx context.Context, cfg config.Config, tc client.Client) string {
	for name, typ := range searchattr.All() {
		if typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD && typ != enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST {
			continue
		}
		_, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: cfg.Temporal.Namespace,
			Query:     name + " = 'syncbridge-preflight'",
		})
		if err != nil {
			return fmt.Sprintf("Temporal namespace %q: a query on search attribute %s failed (is it registered, as %s?): %v", cfg.Temporal.Namespace, name, typ, err)
		}
	}
	return ""
}

// checkBroker acks a handle that cannot exist. The broker answers a
// per-handle refusal (nil error here) once it has verified the signature,
// instance and topic; 403 means the credentials are wrong.
func checkBroker(ctx context.Context, cfg config.Config, consumer mqclient.Consumer) string {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		_, err = consumer.Ack(ctx, []string{preflightHandle})
		if err == nil {
			return ""
		}
		msg := err.Error()
		switch {
		case strings.Contains(msg, "ReceiptHandleError"):
			return "" // the handle was judged, so the request was accepted
		case strings.Contains(msg, "SignatureDoesNotMatch"), strings.Contains(msg, "InvalidAccessKeyId"), strings.Contains(msg, "AccessDenied"):
			return fmt.Sprintf("broker %s refused the credentials (ALIBABA_ACCESS_KEY %q / ALIBABA_SECRET_KEY): %s",
				cfg.MQ.Endpoint, cfg.MQ.AccessKey, brokerCode(msg))
		case strings.Contains(msg, "TopicNotExist"):
			return fmt.Sprintf("broker %s has no topic %q in instance %q (ROCKETMQ_TOPIC, ROCKETMQ_INSTANCE_ID)",
				cfg.MQ.Endpoint, cfg.MQ.Topic, cfg.MQ.InstanceID)
		}
		select {
		case <-ctx.Done():
			return fmt.Sprintf("broker %s did not answer a signed request: %v", cfg.MQ.Endpoint, err)
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
	return fmt.Sprintf("broker %s failed a signed request: %v", cfg.MQ.Endpoint, err)
}

// brokerCode picks the error code out of the SDK's message, which also
// carries request details not worth a log line.
func brokerCode(msg string) string {
	for _, c := range []string{"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"} {
		if strings.Contains(msg, c) {
			return c
		}
	}
	return "refused"
}

#!/bin/sh
# One-shot: create the namespace with its retention and register the
# search attributes the pipeline writes (internal/searchattr). Workers
# start only after this exits 0. Safe to re-run.
set -eu

ADDR="${TEMPORAL_ADDRESS:-temporal:7233}"
NS="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-72h}"

attempt=0
until temporal operator cluster health --address "$ADDR" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "init-namespace: Temporal at $ADDR not healthy after 60 attempts" >&2
    exit 1
  fi
  sleep 2
done

if temporal operator namespace describe --address "$ADDR" --namespace "$NS" >/dev/null 2>&1; then
  echo "init-namespace: namespace $NS exists; setting retention $RETENTION"
  temporal operator namespace update --address "$ADDR" --namespace "$NS" --retention "$RETENTION"
else
  echo "init-namespace: creating namespace $NS (retention $RETENTION)"
  temporal operator namespace create --address "$ADDR" --namespace "$NS" --retention "$RETENTION"
fi

# SyncOutcome (Keyword): the record workflow's terminal result, used by the
# Web UI filters in the runbook. SyncKeys (KeywordList): the records a flood
# notice lists. Keep in step with internal/searchattr.
existing=$(temporal operator search-attribute list --address "$ADDR" --namespace "$NS")
if echo "$existing" | grep -qw SyncOutcome; then
  echo "init-namespace: search attribute SyncOutcome exists"
else
  temporal operator search-attribute create --address "$ADDR" --namespace "$NS" --name SyncOutcome --type Keyword
fi
if echo "$existing" | grep -qw SyncKeys; then
  echo "init-namespace: search attribute SyncKeys exists"
else
  temporal operator search-attribute create --address "$ADDR" --namespace "$NS" --name SyncKeys --type KeywordList
fi

# A new namespace and attribute reach every frontend cache within seconds;
# wait until a query naming the attribute is accepted, so the first record
# workflow can upsert it.
attempt=0
until temporal workflow count --address "$ADDR" --namespace "$NS" --query 'SyncOutcome IS NULL AND SyncKeys IS NULL' >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "init-namespace: SyncOutcome not queryable in $NS after 60 attempts" >&2
    exit 1
  fi
  sleep 2
done
echo "init-namespace: done"

#!/bin/sh
# One-shot set-up of the namespace relman runs in: create it if it is missing, then register
# relman's search attributes. Safe to run again on every `docker compose up`: what already
# exists is left alone, and an attribute registered with another type is an error (relman's
# visibility queries would fail in confusing ways later).
#
# Environment:
#   TEMPORAL_ADDRESS          frontend host:port (required)
#   TEMPORAL_NAMESPACE        namespace to prepare (default: default)
#   NAMESPACE_RETENTION       how long closed releases, and so their audit history, are kept
#                             (default: 30d)
#   RELMAN_SEARCH_ATTRIBUTES  space-separated Name=Type pairs (required)
#   INIT_ATTEMPTS, INIT_SLEEP_SECONDS  retry budget while the server starts (default 60 x 2s)
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
: "${RELMAN_SEARCH_ATTRIBUTES:?RELMAN_SEARCH_ATTRIBUTES is required (Name=Type ...)}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${NAMESPACE_RETENTION:-30d}"
ATTEMPTS="${INIT_ATTEMPTS:-60}"
SLEEP_SECONDS="${INIT_SLEEP_SECONDS:-2}"

# Run "$@" until it succeeds or the attempts run out. A fresh server answers health checks
# before its namespace registry has loaded a new namespace, so every step retries.
# Only the last failure's error output is shown.
ERRORS="${TMPDIR:-/tmp}/relman-init.err"
retry() {
  attempt=1
  until "$@" 2>"$ERRORS"; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
      cat "$ERRORS" >&2
      echo "giving up after $ATTEMPTS attempts: $*" >&2
      return 1
    fi
    attempt=$((attempt + 1))
    sleep "$SLEEP_SECONDS"
  done
}

temporal_cli() {
  temporal "$@" --address "$TEMPORAL_ADDRESS"
}

namespace_exists() {
  temporal_cli operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1
}

# A retried create may have succeeded the time before, so "exists" counts as success.
create_namespace() {
  namespace_exists ||
    temporal_cli operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
}

# Sets LISTING to the namespace's search attributes ("Name Type" rows); fails if the server
# does not answer, so it can be retried.
list_attributes() {
  LISTING="$(temporal_cli operator search-attribute list --namespace "$NAMESPACE")"
}

create_attribute() {
  temporal_cli operator search-attribute create --namespace "$NAMESPACE" --name "$1" --type "$2"
}

echo "waiting for Temporal at $TEMPORAL_ADDRESS"
retry temporal_cli operator cluster health >/dev/null

if namespace_exists; then
  echo "namespace $NAMESPACE exists"
else
  echo "creating namespace $NAMESPACE (retention $RETENTION)"
  retry create_namespace
fi

for pair in $RELMAN_SEARCH_ATTRIBUTES; do
  name="${pair%%=*}"
  type="${pair#*=}"
  retry list_attributes
  current="$(printf '%s\n' "$LISTING" | awk -v name="$name" '$1 == name { print $2 }')"
  if [ -z "$current" ]; then
    echo "registering search attribute $name ($type)"
    retry create_attribute "$name" "$type"
  elif [ "$current" = "$type" ]; then
    echo "search attribute $name ($type) already registered"
  else
    echo "search attribute $name is registered as $current, relman needs $type" >&2
    exit 1
  fi
done
echo "namespace $NAMESPACE is ready for relman"

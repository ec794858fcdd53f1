#!/bin/bash
# First start of the influxdb:2.x container only (docker-entrypoint-initdb.d): after the initial
# setup made the org and bucket, expose the bucket to InfluxQL on the v1-compatible API, which is
# all liftwatch and its Grafana dashboard speak (DESIGN.md), and create two v1 users:
#   liftwatch - read and write (LIFTWATCH_INFLUX_USERNAME/PASSWORD)
#   grafana   - read only (provisioning/datasources/influxdb.yaml)
# The influx CLI is already configured with the admin token by the image's entrypoint.
set -euo pipefail

db=${LIFTWATCH_INFLUX_DATABASE:-liftwatch}
bucket=${DOCKER_INFLUXDB_INIT_BUCKET:?}
org=${DOCKER_INFLUXDB_INIT_ORG:?}

bucket_id=${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --org "$org" --name "$bucket" --hide-headers | awk 'NR == 1 { print $1 }')
fi
if [ -z "$bucket_id" ]; then
    echo "liftwatch init: bucket $bucket not found" >&2
    exit 1
fi

influx v1 dbrp create --org "$org" --db "$db" --rp autogen --bucket-id "$bucket_id" --default

influx v1 auth create --org "$org" --username liftwatch \
    --password "${LIFTWATCH_INFLUX_PASSWORD:?}" \
    --read-bucket "$bucket_id" --write-bucket "$bucket_id" \
    --description "liftwatch ingest/alerts/api"

influx v1 auth create --org "$org" --username grafana \
    --password "${GRAFANA_INFLUX_PASSWORD:?}" \
    --read-bucket "$bucket_id" \
    --description "Grafana (read only)"

echo "liftwatch init: database '$db' mapped to bucket $bucket ($bucket_id); v1 users liftwatch, grafana"

#!/usr/bin/env bash
# The `check` init container of the CronJob treesits-continuous: did the cube change since the map at
# <outdir> was made? `cube-inventory check` compares the cube with the inventory that the last successful
# run published at <outdir>/inventory.json (none yet: every tile is new). The answer, for the main
# container, goes to /state:
#   check.rc     0: tiles changed, run the pipeline; 3: nothing changed
#   changed.tsv  one line per changed tile: tile, new|changed|removed, reason (also printed to this log)
# Any other status fails this container, and so the Job, visibly.
set -euo pipefail

params=/config/params.yaml
state=/state

# A top-level `key: value` of params.yaml (quotes and a trailing comment removed).
param() {
  sed -n -E "s/^$1:[[:space:]]*//p" "$params" | head -n 1 |
    sed -E "s/[[:space:]]+#.*$//; s/^\"(.*)\"$/\1/; s/^'(.*)'$/\1/"
}
outdir=$(param outdir)
outdir=${outdir%/}
cube=$(param cube)
endpoint=$(param s3_endpoint)
if [ -z "$outdir" ] || [ -z "$cube" ]; then
  echo "check: error: $params must set outdir and cube" >&2
  exit 2
fi
# GDAL reads s3:// through /vsis3/: a custom endpoint needs its host and path-style requests (as conf/s3.config).
if [ -n "$endpoint" ]; then
  export AWS_S3_ENDPOINT=${endpoint#*://} AWS_VIRTUAL_HOSTING=FALSE AWS_HTTPS=YES
  case $endpoint in http://*) AWS_HTTPS=NO ;; esac
fi

previous=$outdir/inventory.json
rc=0
cube-inventory check --cube "$cube" --previous "$previous" >"$state/changed.tsv" || rc=$?
echo "$rc" >"$state/check.rc"
case $rc in
  0) echo "check: $(wc -l <"$state/changed.tsv") tile(s) changed since $previous"
     cat "$state/changed.tsv" ;;
  3) echo "check: no tile changed since $previous" ;;
  *) echo "check: error: cube-inventory check exited with status $rc" >&2
     exit "$rc" ;;
esac

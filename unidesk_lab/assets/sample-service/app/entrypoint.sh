#!/bin/sh
# Serve /app/www on $PORT (all addresses: the pod's own network namespace, or its host's).
# Optional: EXTRA_PORT (a second listener, e.g. backend-core's provider ingress) and UNIDESK_LOG_DIR
# (a start-up line appended to <dir>/<service>.log, e.g. /var/log/unidesk-dev on a hostPath).
set -e
line="sample-service ${UNIDESK_DEPLOY_SERVICE_ID:-?} $(cat /app/VERSION) commit ${UNIDESK_DEPLOY_COMMIT:-?} on port ${PORT}${EXTRA_PORT:+ and ${EXTRA_PORT}}"
echo "$line"
if [ -n "${UNIDESK_LOG_DIR:-}" ]; then
  mkdir -p "$UNIDESK_LOG_DIR" && echo "$line" >> "$UNIDESK_LOG_DIR/${UNIDESK_DEPLOY_SERVICE_ID:-service}.log"
fi
if [ -n "${EXTRA_PORT:-}" ]; then
  /bin/busybox httpd -p "0.0.0.0:${EXTRA_PORT}" -h /app/www  # daemonizes
fi
exec /bin/busybox httpd -f -p "0.0.0.0:${PORT}" -h /app/www

#!/bin/sh
# Serve /app/www on $PORT (all addresses: the container shares its host's network namespace).
set -e
echo "sample-service ${UNIDESK_DEPLOY_SERVICE_ID:-?} $(cat /app/VERSION) commit ${UNIDESK_DEPLOY_COMMIT:-?} on port ${PORT}"
exec /bin/busybox httpd -f -p "0.0.0.0:${PORT}" -h /app/www

#!/bin/sh
# As in the official redis image: options (or a .conf file) as the first argument go to redis-server.
set -eu
case "${1:-}" in "" | -* | *.conf) set -- redis-server "$@" ;; esac
exec "$@"

#!/bin/sh
# An on_state_change hook for tunneld: a line in the journal, and a JSON webhook.
#
# Install a copy, make it yours, and name it in the configuration:
#   sudo install -m 755 /usr/share/doc/tunneld/examples/on-state-change.sh /usr/local/bin/tunneld-on-state-change
#   on_state_change = ["/usr/local/bin/tunneld-on-state-change"]      # in [defaults] or a tunnel
#
# tunneld runs it (no shell in between, as the tunneld user) at each state change of a
# tunnel, one run at a time per tunnel, and kills it after 30 s; what it prints and how
# it ends go to tunneld's log. It never delays the tunnel. In its environment:
#   TUNNELD_TUNNEL          the tunnel's name
#   TUNNELD_STATE           connecting, up, degraded, backoff or stopped
#   TUNNELD_PREVIOUS_STATE  the state the previous run was told (changes during a run
#                           come as one run after it)
#   TUNNELD_HOST            the server in use, host:port
#   TUNNELD_LAST_ERROR      why the last attempt or session failed (may be empty)
#   TUNNELD_REMOTE_LISTEN   what the server bound for the remote forwards, e.g.
#                           "localhost:40123" (space-separated; empty while down)
# These come partly from the server (TUNNELD_LAST_ERROR may quote it): quote them.
set -u

# Where to POST; empty: the journal line only. Set it here, or in the service's
# environment (systemctl edit tunneld: [Service] Environment=WEBHOOK_URL=https://...).
WEBHOOK_URL="${WEBHOOK_URL:-}"

box=$(hostname)
line="$box: tunnel $TUNNELD_TUNNEL $TUNNELD_PREVIOUS_STATE -> $TUNNELD_STATE via $TUNNELD_HOST"
[ -n "$TUNNELD_REMOTE_LISTEN" ] && line="$line, server listens on $TUNNELD_REMOTE_LISTEN"
[ -n "$TUNNELD_LAST_ERROR" ] && line="$line ($TUNNELD_LAST_ERROR)"

# The journal, under its own identifier (journalctl -t tunneld-hook); without logger,
# standard output, which tunneld logs.
if command -v logger >/dev/null 2>&1; then
    logger -t tunneld-hook -- "$line"
else
    echo "$line"
fi

[ -n "$WEBHOOK_URL" ] || exit 0

# A JSON string: backslashes, quotes and control characters escaped.
json() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\000-\037' ' ')"
}
body=$(printf '{"box":%s,"tunnel":%s,"state":%s,"previous_state":%s,"host":%s,"remote_listen":%s,"last_error":%s}' \
    "$(json "$box")" "$(json "$TUNNELD_TUNNEL")" "$(json "$TUNNELD_STATE")" \
    "$(json "$TUNNELD_PREVIOUS_STATE")" "$(json "$TUNNELD_HOST")" \
    "$(json "$TUNNELD_REMOTE_LISTEN")" "$(json "$TUNNELD_LAST_ERROR")")
# Bounded well inside tunneld's 30 s; a failure prints curl's reason and exits non-zero,
# which tunneld logs as a warning.
exec curl --silent --show-error --fail --max-time 20 \
    -H 'Content-Type: application/json' --data "$body" "$WEBHOOK_URL"

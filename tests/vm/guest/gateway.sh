#!/bin/sh
# In a systemd guest (tests/vm/lease.sh): installs dedge as a gateway image
# does, from the shipped units, starts it, and serves the host's requests
# through the share directory SHARE until the host writes SHARE/done:
#   SHARE/status.json   the agent's status file, copied every half second
#   SHARE/procs, comms  "pid cgroup" and "pid comm" of every process, same cadence
#   SHARE/restart-agent the host asks for `systemctl restart dedge-agent`;
#                       answered by SHARE/restarted ("old-pid new-pid")
#   SHARE/measure       the host asks for the idle RSS of the agent and of the
#                       holder (the same binary doing nothing): SHARE/rss,
#                       and the agent's largest mappings: SHARE/smaps.txt
#   SHARE/cycle         at the end: stop dedge-leases, start dedge-agent, checked
#   SHARE/journal.txt   both units' journals, at the end
# Exits non-zero if a unit fails to start or the agent does not stay up.
set -eu
share=$1
install -m 755 "$share/dedge" /usr/local/bin/dedge
install -m 644 boards/dedge-agent.service boards/dedge-leases.service /etc/systemd/system/
mkdir -p /etc/dedge
install -m 600 "$share/board.toml" "$share/key.json" "$share/passphrase" /etc/dedge/
systemctl daemon-reload
status=0
systemctl start dedge-leases || status=1
# On cgroup v2 under systemd, with the leases' unit up, the host check passes.
dedge board check --host /etc/dedge/board.toml >"$share/board-check.txt" 2>&1 || status=1
[ $status = 0 ] && { systemctl start dedge-agent || status=1; }
echo "$status" >"$share/started"
main_pid() { systemctl show -p MainPID --value dedge-agent; }
# Few processes per snapshot: forks are slow under TCG.
snapshot() {
    grep -s -H '^0::' /proc/[0-9]*/cgroup | sed 's#^/proc/\([0-9]*\)/cgroup:0::\(.*\)#\1 \2#' >"$share/procs.part"
    grep -s -H . /proc/[0-9]*/comm | sed 's#^/proc/\([0-9]*\)/comm:\(.*\)#\1 \2#' >"$share/comms.part"
    mv "$share/comms.part" "$share/comms"
    mv "$share/procs.part" "$share/procs"
}
while [ $status = 0 ] && [ ! -e "$share/done" ]; do
    # -p: the copy keeps the agent's write time (the host compares it).
    if cp -p /var/lib/dedge/agent-status.json "$share/status.json.part" 2>/dev/null; then
        mv "$share/status.json.part" "$share/status.json"
    fi
    snapshot
    if [ -e "$share/measure" ]; then
        rm "$share/measure"
        rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$(systemctl show -p MainPID --value "$1")/status"; }
        # Eight samples two seconds apart first: a transient, or memory
        # taken after start-up and kept, shows in the series.
        for _ in 1 2 3 4 5 6 7 8; do printf '%s ' "$(rss dedge-agent)"; sleep 2; done >"$share/rss-series"
        # Where the agent's resident memory is: mappings over 256 KiB
        # (written before the figure the host waits for).
        { echo "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo none), agent's: $(grep -h '^AnonHugePages' "/proc/$(main_pid)/smaps_rollup")"
          awk '/^[0-9a-f]+-[0-9a-f]+ / { map = $0 } /^Rss:/ && $2 > 256 { print $2 " kB  " map }' \
            "/proc/$(main_pid)/smaps"; } >"$share/smaps.txt" 2>&1 || true
        echo "$(rss dedge-agent) $(rss dedge-leases)" >"$share/rss"
    fi
    if [ -e "$share/restart-agent" ]; then
        rm "$share/restart-agent"
        old=$(main_pid)
        systemctl restart dedge-agent || status=1
        echo "$old $(main_pid)" >"$share/restarted"
    fi
    systemctl is-active -q dedge-agent || { echo "gateway: dedge-agent is not running"; status=1; }
    sleep 0.5
done
# Stopping the leases' unit stops the agent and removes the subtree; both
# start again (a lease cgroup re-made outside systemd would fail this).
if [ $status = 0 ]; then
    systemctl stop dedge-leases
    if systemctl is-active -q dedge-agent; then
        echo "cycle: the agent still runs after dedge-leases stopped" >"$share/cycle"; status=1
    elif [ -e /sys/fs/cgroup/system.slice/dedge-leases.service ]; then
        echo "cycle: the leases' cgroup outlived its unit" >"$share/cycle"; status=1
    elif ! systemctl start dedge-agent || ! systemctl is-active -q dedge-leases; then
        echo "cycle: the units did not start again" >"$share/cycle"; status=1
    else
        echo "cycle ok: stop dedge-leases stopped the agent and removed its cgroup; start dedge-agent started both" >"$share/cycle"
    fi
fi
systemctl --no-pager status dedge-leases dedge-agent || true
journalctl --no-pager -u dedge-leases -u dedge-agent >"$share/journal.txt" 2>&1 || true
# What systemd itself said about the units (219/CGROUP, left-over processes).
journalctl --no-pager _PID=1 | grep -i dedge >>"$share/journal.txt" || true
exit $status

# Attack 7 of docs/security.md, as the VM proves it: 50 OOM kills in one cage (oom-group =
# false, so the child lives on) start at most one alert hook at a time for the kind of event,
# the events that come while one runs are coalesced into the next run (CLAUDE_CAGE_COALESCED
# counts them, none lost), and no hook outlives its exec-timeout: each sleeps past it and leaves
# a setsid daemon behind, and neither its "end" line nor the daemon is ever seen.
# vmtest-timeout: 180

cat >"$T/hook" <<H
#!/bin/sh
lock="$T/running-\$CLAUDE_CAGE_EVENT"
if [ -f "\$lock" ] && kill -0 "\$(cat "\$lock")" 2>/dev/null; then
	echo "\$CLAUDE_CAGE_EVENT: \$\$ started while \$(cat "\$lock") ran" >>"$T/overlap"
fi
echo \$\$ >"\$lock"
echo "\$CLAUDE_CAGE_EVENT \$CLAUDE_CAGE_COALESCED" >>"$T/runs"
setsid sleep 1001 </dev/null >/dev/null 2>&1 &
sleep 3
echo "end \$\$" >>"$T/runs"
H
chmod 755 "$T/hook"

cat >"$T/policy.toml" <<P
[cage]
name = "vm-hookstorm"

[memory]
max = "32M"
swap-max = "0"
oom-group = false

[alerts]
exec = ["$T/hook"]
exec-timeout = "1s"
P
cage storm --policy "$T/policy.toml" -- sh -c 'i=0; while [ $i -lt 50 ]; do alloc 64 >/dev/null 2>&1; i=$((i + 1)); done'
note "storm: status $rc; runs: $(joined <"$T/runs")"
check_gone "$T/storm.events" bot

assert_eq "$(ev_field "$T/storm.events" exit oom-kills)" 50 "exit event oom-kills"
[ ! -e "$T/overlap" ] || fail "two hooks of one kind ran at once: $(joined <"$T/overlap")"
grep -q '^end ' "$T/runs" && fail "a hook outlived its exec-timeout: $(grep '^end ' "$T/runs" | joined)"
# daemons: the pids of every `sleep 1001` alive
daemons() {
	for c in /proc/[0-9]*/cmdline; do
		[ "$(tr '\0' ' ' <"$c" 2>/dev/null)" = "sleep 1001 " ] && echo "${c%/cmdline}"
	done | joined
}
d=$(daemons)
[ -z "$d" ] || fail "a hook's setsid daemon outlived it: $d"
# ... and the search finds one (the control): a daemon of the scenario's own
sleep 1001 &
control=$!
d=$(daemons)
kill "$control"
wait "$control" 2>/dev/null
assert_eq "$d" "/proc/$control" "the daemon search, on a daemon of the scenario's own"
[ -z "$(ls -d "$CG"/claude-cage-hook-* 2>/dev/null)" ] || fail "hook cgroups left: $(ls -d "$CG"/claude-cage-hook-*)"

# Every oom-kill event reached a hook, once: the runs' CLAUDE_CAGE_COALESCED add up to the
# events, and there were fewer runs than events (the storm was coalesced).
events=$(ev_count "$T/storm.events" oom-kill)
runs=$(grep -c '^oom-kill ' "$T/runs")
sum=$(awk '$1 == "oom-kill" { s += $2 } END { print s + 0 }' "$T/runs")
note "oom-kill events: $events, hook runs: $runs, coalesced: $sum"
assert_ge "$events" 2 "oom-kill events"
assert_eq "$sum" "$events" "oom-kill events counted by the hooks"
[ "$runs" -lt "$events" ] || fail "no event was coalesced: $runs runs for $events events"
assert_eq "$(grep -c 'alert hook for oom-kill ran longer than 1s; killed it' "$T/storm.err")" "$runs" "hooks killed at their timeout (warnings)"

# `systemctl status claude-cage.slice` lists the live cages (scopes named after the cage ids)
# with their processes; their descriptions ("claude-cage <bot>: <command line>") show in
# `systemctl list-units` and in each scope's status; `claude-cage ps` lists them; `claude-cage
# kill --all` ends both (137, killed) and no unit is left.
# vmtest-timeout: 90

systemd_policy "$T/alpha.toml" alpha '[memory]' 'high = "200M"' 'max = "256M"' '[pids]' 'max = 64'
systemd_policy "$T/beta.toml" beta '[memory]' 'max = "128M"' '[pids]' 'max = 32'
cage_bg alpha --policy "$T/alpha.toml" -- sleep 63
pa=$!
cage_bg beta --policy "$T/beta.toml" -- sh -c 'sleep 64; true'
pb=$!
wait_event "$T/alpha.events" start 20
wait_event "$T/beta.events" start 20
sa=$(scope_of "$T/alpha.events")
sb=$(scope_of "$T/beta.events")
# the start events are written as the children are released: wait until both run their programs
wait_for 10 "alpha's child runs sleep 63" pgrep -f '^sleep 63$'
wait_for 10 "beta's shell runs sleep 64" pgrep -f '^sleep 64$'

systemctl status --no-pager -l claude-cage.slice >"$T/status" 2>&1
cat "$T/status"
capture slice-status <"$T/status"
grep -q "claude-cage.slice - claude-cage cages" "$T/status" || fail "slice status: no header with the slice's description: $(head -n 1 "$T/status")"
grep -qF "$sa" "$T/status" || fail "slice status does not list $sa"
grep -qF "$sb" "$T/status" || fail "slice status does not list $sb"
grep -qE "[0-9]+ sleep 63" "$T/status" || fail "slice status does not show alpha's process"
grep -qE 'Tasks: [0-9]+ \(limit: 8192\)' "$T/status" || fail "slice status: no 'Tasks: N (limit: 8192)'"

systemctl list-units --all --no-pager 'claude-cage-*' >"$T/units" 2>&1
capture list-units <"$T/units"
grep -E "^ *$sa +loaded +active +running +claude-cage alpha: .*sleep 63" "$T/units" >/dev/null || fail "list-units: no description for $sa: $(grep -F "$sa" "$T/units")"
grep -E "^ *$sb +loaded +active +running +claude-cage beta: .*sh -c" "$T/units" >/dev/null || fail "list-units: no description for $sb: $(grep -F "$sb" "$T/units")"
systemctl status --no-pager -l "$sa" >"$T/scope" 2>&1
capture scope-status <"$T/scope"
head -n 1 "$T/scope" | grep -qF "$sa - claude-cage alpha: " || fail "scope status header: $(head -n 1 "$T/scope")"

op ps ps
cat "$T/ps.out" "$T/ps.err"
capture claude-cage-ps <"$T/ps.out"
for e in alpha beta; do
	id=$(cage_id "$T/$e.events")
	grep -E "^$id +$e +" "$T/ps.out" | grep -qw running || fail "claude-cage ps: $id is not listed as running: $(grep -F "$id" "$T/ps.out")"
done
ps -eo pid,ppid,user,cgroup:72,args | awk 'NR == 1 || /claude-cage (run|ps)|sleep 6[34]/' | grep -v awk | capture ps-cgroups

op kill kill --all
cat "$T/kill.out" "$T/kill.err"
assert_eq "$rc" 0 "claude-cage kill --all: status"
wait "$pa"
ra=$?
wait "$pb"
rb=$?
check_exit "$T/alpha.events" "$ra" 137 killed
check_exit "$T/beta.events" "$rb" 137 killed
check_one_line "$T/alpha.err" "$T/alpha.events"
check_no_units
later check_no_state "$(cage_id "$T/alpha.events")" "$(cage_id "$T/beta.events")"

# The reap timer: a cgroupfs cage (parent /cagetest) whose supervisor was SIGKILLed while a
# setsid'd grandchild keeps it populated is orphaned; `systemctl enable --now
# claude-cage-reap.timer` starts claude-cage-reap.service (OnBootSec= has passed), which kills
# and removes it (grandchild, cgroup, state file) and says so in the journal.
# vmtest-timeout: 150

mkdir -p "$CG/cagetest"
trap 'systemctl disable --now claude-cage-reap.timer >/dev/null 2>&1; rmdir "$CG/cagetest" 2>/dev/null' EXIT
cat >"$T/p.toml" <<'P'
[cage]
name = "reap-cgfs"
backend = "cgroupfs"
parent = "/cagetest"

[memory]
max = "64M"
P
cage_bg o --policy "$T/p.toml" -- sh -c 'setsid sleep 601 </dev/null >/dev/null 2>&1 & exec sleep 600'
sup=$!
wait_event "$T/o.events" start 20
id=$(cage_id "$T/o.events")
dir=$(cage_dir "$T/o.events")
wait_for 10 "the setsid'd grandchild runs" pgrep -f '^sleep 601'
gc=$(pgrep -f '^sleep 601')
[ -s "$STATE_DIR/$id.json" ] || fail "no state file $STATE_DIR/$id.json"
kill -KILL "$sup"
wait "$sup"
only_grandchild() { [ "$(cat "$dir/main/cgroup.procs")" = "$gc" ]; }
wait_for 10 "only the grandchild $gc left in the cage (the child dies of its parent-death signal)" only_grandchild
alive "$gc" || fail "the grandchild died with the supervisor: nothing to reap"
op ps ps
cat "$T/ps.out"
grep -E "^$id " "$T/ps.out" | grep -qw orphaned || fail "claude-cage ps does not show $id as orphaned: $(grep -F "$id" "$T/ps.out")"

since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl enable --now claude-cage-reap.timer 2>&1 || fail "systemctl enable --now claude-cage-reap.timer failed"
assert_eq "$(systemctl is-active claude-cage-reap.timer)" active "claude-cage-reap.timer"
systemctl list-timers --no-pager claude-cage-reap.timer | capture list-timers
wait_for 75 "the timer's reap removed $id" test ! -e "$dir"
wait_for 10 "the grandchild is dead" dead "$gc"
reap_inactive() { [ "$(systemctl show -P ActiveState claude-cage-reap.service)" = inactive ]; }
wait_for 10 "claude-cage-reap.service finished" reap_inactive
assert_eq "$(systemctl show -P Result claude-cage-reap.service)" success "claude-cage-reap.service Result"
[ ! -e "$STATE_DIR/$id.json" ] || fail "state file left: $STATE_DIR/$id.json"
[ ! -e "${dir%/*}" ] || fail "bot cgroup left: ${dir%/*}"
journalctl -q --no-pager -u claude-cage-reap.service --since "$since" >"$T/journal"
cat "$T/journal"
grep -qE "reaped orphaned cage $id: killed 1 process(es)?, removed $dir" "$T/journal" || fail "the journal of claude-cage-reap.service does not say it reaped $id: $(tail -n 2 "$T/journal")"
capture reap-journal <"$T/journal"

# systemd backend as root: a cage is a transient scope claude-cage-<cage-id>.scope in its bot's
# slice in claude-cage.slice, with the policy's limits as unit properties and in the cgroup files, the
# child in <scope>/main and claude-cage's holder (which keeps the scope until the cage's figures
# are read) in <scope>/hold; SIGTERM ends it (143, terminated) and the scope and holder are gone;
# an over-allocation is OOM-killed, three times over (systemd removing an empty scope at once
# raced the read of the counters before the holder): 137, reason oom-killed, oom-kills and
# memory-peak in the exit event, one 'claude-cage: ' line, no unit left.
# `set` changes a live scope's unit properties and files together. [bot] limits are the
# properties of the bot's own slice, claude-cage-<bot>.slice in claude-cage.slice.
# vmtest-timeout: 120

systemd_policy "$T/p.toml" sd-root \
	'[memory]' 'high = "48M"' 'max = "64M"' 'swap-max = "0"' \
	'[pids]' 'max = 64' \
	'[cpu]' 'max = "50%"' 'weight = 50'

# --- a running cage: the scope and its limits ---
cage_bg run --policy "$T/p.toml" -- sleep 61
sup=$!
wait_event "$T/run.events" start 20
id=$(cage_id "$T/run.events")
scope=$(scope_of "$T/run.events")
pid=$(ev_field "$T/run.events" start pid)
note "cage $id, scope $scope, child $pid"
assert_eq "$(cage_units)" "$scope" "the claude-cage units while the cage runs"
assert_eq "$(unit_prop "$scope" ActiveState)" active "$scope ActiveState"
assert_eq "$(unit_prop "$scope" Slice)" "$(bot_slice sd-root)" "$scope Slice"
assert_eq "$(unit_prop "$scope" ControlGroup)" "$(bot_cg sd-root)/$scope" "$scope ControlGroup"
assert_eq "$(unit_prop "$scope" MemoryMax)" 67108864 "$scope MemoryMax"
assert_eq "$(unit_prop "$scope" MemoryHigh)" 50331648 "$scope MemoryHigh"
assert_eq "$(unit_prop "$scope" MemorySwapMax)" 0 "$scope MemorySwapMax"
# TasksMax= counts the holder: the policy's 64 plus one
assert_eq "$(unit_prop "$scope" TasksMax)" 65 "$scope TasksMax"
assert_eq "$(unit_prop "$scope" CPUQuotaPerSecUSec)" 500ms "$scope CPUQuotaPerSecUSec"
assert_eq "$(unit_prop "$scope" CPUWeight)" 50 "$scope CPUWeight"
assert_eq "$(unit_prop "$scope" Delegate)" yes "$scope Delegate"
desc=$(unit_prop "$scope" Description)
case "$desc" in "claude-cage sd-root: "*"sleep 61"*) ;; *) fail "$scope Description: expected 'claude-cage sd-root: ...sleep 61', got '$desc'" ;; esac
systemctl show -p MemoryMax,MemoryHigh,TasksMax,CPUQuotaPerSecUSec,CPUWeight,Slice,ControlGroup,Description "$scope" | capture show-scope
# the same limits in the cgroup files, the child in <scope>/main
dir=$CG$(bot_cg sd-root)/$scope
assert_eq "$(cage_dir "$T/run.events")" "$dir" "start event cgroup"
assert_eq "$(cat "$dir/memory.max")" 67108864 "$dir/memory.max"
assert_eq "$(cat "$dir/memory.high")" 50331648 "$dir/memory.high"
assert_eq "$(cat "$dir/pids.max")" 65 "$dir/pids.max"
assert_eq "$(cat "$dir/cpu.max")" "50000 100000" "$dir/cpu.max"
assert_eq "$(cgroup_of "$pid")" "$(bot_cg sd-root)/$scope/main" "the child's cgroup"
holder=$(cat "$dir/hold/cgroup.procs")
assert_num "$holder" "the one process in $dir/hold"
assert_eq "$(cat "/proc/$holder/comm")" cage-holder "comm of the holder $holder"
assert_eq "$(tr '\0' ' ' <"/proc/$holder/cmdline" | sed 's/ *$//')" "claude-cage-holder $id" "command line of the holder"
assert_eq "$(awk '/^PPid:/ {print $2}' "/proc/$holder/status")" "$sup" "parent of the holder"
assert_eq "$(cat "/proc/$holder/oom_score_adj")" -1000 "oom_score_adj of the holder"
assert_eq "$(ls "/proc/$holder/fd" | wc -l)" 0 "descriptors the holder keeps open"
assert_eq "$(cat "$dir/memory.oom.group")" 1 "$dir/memory.oom.group"
# ps counts the cage's processes and limit, not the holder
row=$(claude-cage ps --json | jq -c --arg c "$id" '.[] | select(.cage == $c)')
assert_eq "$(echo "$row" | jq -r '.["pids-current"]')" 1 "ps pids-current (sleep alone)"
assert_eq "$(echo "$row" | jq -r '.["pids-max"]')" 64 "ps pids-max"
case "$(cgroup_of "$sup")" in */claude-cage.slice/*) fail "the supervisor $sup is inside the slice: $(cgroup_of "$sup")" ;; esac
assert_eq "$(ev_field "$T/run.events" start limits | jq -r '.["memory-max"]')" 67108864 "start event limits.memory-max"
# the child's environment names its cage
assert_eq "$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^CLAUDE_CAGE_CGROUP=//p')" "$dir" "the child's CLAUDE_CAGE_CGROUP"

# set: systemd's unit properties and the scope's files change together (TasksMax= and the
# scope's pids.max count the holder; ps and the limits-changed event do not), and a
# daemon-reload, which has systemd apply its properties again, keeps the new values
claude-cage set "$id" --memory-high 60M --memory-max 80M --pids-max 32 --cpu-max 25% --cpu-weight 70 \
	>"$T/set.out" 2>"$T/set.err" || fail "set failed: $(cat "$T/set.err")"
[ ! -s "$T/set.err" ] || fail "set wrote to stderr: $(cat "$T/set.err")"
# set_values SUFFIX: the scope's properties and files as set above
set_values() {
	assert_eq "$(unit_prop "$scope" MemoryMax)" 83886080 "$scope MemoryMax $1"
	assert_eq "$(unit_prop "$scope" MemoryHigh)" 62914560 "$scope MemoryHigh $1"
	assert_eq "$(unit_prop "$scope" TasksMax)" 33 "$scope TasksMax $1"
	assert_eq "$(unit_prop "$scope" CPUQuotaPerSecUSec)" 250ms "$scope CPUQuotaPerSecUSec $1"
	assert_eq "$(unit_prop "$scope" CPUWeight)" 70 "$scope CPUWeight $1"
	assert_eq "$(cat "$dir/memory.max")" 83886080 "$dir/memory.max $1"
	assert_eq "$(cat "$dir/memory.high")" 62914560 "$dir/memory.high $1"
	assert_eq "$(cat "$dir/pids.max")" 33 "$dir/pids.max $1"
	assert_eq "$(cat "$dir/cpu.max")" "25000 100000" "$dir/cpu.max $1"
	assert_eq "$(cat "$dir/cpu.weight")" 70 "$dir/cpu.weight $1"
}
set_values "after set"
row=$(claude-cage ps --json | jq -c --arg c "$id" '.[] | select(.cage == $c)')
assert_eq "$(echo "$row" | jq -r '.["pids-max"]')" 32 "ps pids-max after set"
assert_eq "$(echo "$row" | jq -r '.["memory-max"]')" 83886080 "ps memory-max after set"
wait_event "$T/run.events" limits-changed 20
changed=$(ev_field "$T/run.events" limits-changed limits)
assert_eq "$(echo "$changed" | jq -r '.["pids-max"]')" 32 "limits-changed pids-max"
assert_eq "$(echo "$changed" | jq -r '.["memory-max"]')" 83886080 "limits-changed memory-max"
assert_eq "$(echo "$changed" | jq -r '.["cpu-weight"]')" 70 "limits-changed cpu-weight"
systemctl daemon-reload
set_values "after daemon-reload"

# SIGTERM to claude-cage: forwarded, status 143, reason terminated, the scope is gone
kill -TERM "$sup"
wait "$sup"
rc=$?
check_exit "$T/run.events" "$rc" 143 terminated
check_one_line "$T/run.err" "$T/run.events" 'SIGTERM'
later check_no_warning "$T/run.err"
later check_no_state "$id"
dead "$pid" || fail "the child $pid outlived its cage"
dead "$holder" || fail "the holder $holder outlived its cage"
check_no_units
[ ! -e "$dir" ] || fail "the scope's cgroup is left: $dir"

# --- an over-allocation: OOM-killed inside the scope (no memory.high: throttling is slow) ---
systemd_policy "$T/oom.toml" sd-root '[memory]' 'max = "64M"' 'swap-max = "0"'
for n in 1 2 3; do
	cage oom$n --policy "$T/oom.toml" -- alloc 100 5
	cat "$T/oom$n.err"
	later check_exit "$T/oom$n.events" "$rc" 137 oom-killed
	later check_one_line "$T/oom$n.err" "$T/oom$n.events" 'memory|oom'
	later check_no_warning "$T/oom$n.err"
	later check_no_state "$(cage_id "$T/oom$n.events")"
	later assert_ge "$(ev_field "$T/oom$n.events" exit oom-kills)" 1 "run $n: exit event oom-kills"
	later assert_le "$(ev_field "$T/oom$n.events" exit memory-peak)" 67108864 "run $n: exit event memory-peak"
	later assert_ge "$(ev_field "$T/oom$n.events" exit memory-peak)" 33554432 "run $n: exit event memory-peak"
	grep -q 'alloc: touched' "$T/oom$n.out" && fail "alloc touched all 100 MB under MemoryMax=64M"
	check_no_units
	[ ! -e "$CG$(bot_cg sd-root)/$(scope_of "$T/oom$n.events")" ] || fail "the OOM-killed cage's cgroup is left"
	[ -z "$(pgrep -x cage-holder)" ] || fail "holders left after the OOM kill: $(pgrep -x cage-holder | tr '\n' ' ')"
done

# --- [bot] limits: on the bot's own slice (claude-cage-sd\x2droot.slice), as its properties
# and in its cgroup files; check names the slice; a later run whose policy has no [bot] limits
# lifts them (the policy is the whole truth, as with the cgroupfs backend's bot cgroup) ---
bslice=$(bot_slice sd-root)
systemd_policy "$T/bot.toml" sd-root '[bot]' 'memory-max = "200M"' 'memory-high = "150M"' 'pids-max = 100' '[memory]' 'max = "64M"'
op botcheck check --policy "$T/bot.toml"
grep -qxF "OK       backend systemd: the bot's cages are scopes in its slice $bslice, which carries the [bot] limits" "$T/botcheck.out" ||
	fail "check does not name the bot's slice: $(grep backend "$T/botcheck.out" | joined)"
cage_bg bot --policy "$T/bot.toml" -- sleep 61
sup=$!
wait_event "$T/bot.events" start 20
assert_eq "$(unit_prop "$bslice" MemoryMax)" 209715200 "$bslice MemoryMax"
assert_eq "$(unit_prop "$bslice" MemoryHigh)" 157286400 "$bslice MemoryHigh"
assert_eq "$(unit_prop "$bslice" TasksMax)" 100 "$bslice TasksMax"
assert_eq "$(cat "$CG$(bot_cg sd-root)/memory.max")" 209715200 "the bot slice's memory.max"
assert_eq "$(cat "$CG$(bot_cg sd-root)/pids.max")" 100 "the bot slice's pids.max"
assert_eq "$(ev_field "$T/bot.events" start limits | jq -r '.["bot-memory-max"]')" 209715200 "start event limits.bot-memory-max"
assert_eq "$(cage_dir "$T/bot.events")" "$CG$(bot_cg sd-root)/$(scope_of "$T/bot.events")" "the cage's cgroup, in the bot's slice"
kill -TERM "$sup"
wait "$sup"
check_exit "$T/bot.events" "$?" 143 terminated
later check_no_warning "$T/bot.err"
systemd_policy "$T/nobot.toml" sd-root '[memory]' 'max = "64M"'
cage nobot --policy "$T/nobot.toml" -- true
check_exit "$T/nobot.events" "$rc" 0 exited
assert_eq "$(unit_prop "$bslice" MemoryMax)" infinity "$bslice MemoryMax after a run without [bot] limits"
assert_eq "$(unit_prop "$bslice" TasksMax)" infinity "$bslice TasksMax after a run without [bot] limits"
check_no_units
later check_no_state "$(cage_id "$T/bot.events")" "$(cage_id "$T/nobot.events")"
systemctl revert "$bslice" >/dev/null 2>&1

# --- [cage] cgroupns: the child sees its scope as the root of its cgroup tree, and is in main ---
systemd_policy "$T/ns.toml" sd-root 'cgroupns = true' '[memory]' 'max = "64M"' '[pids]' 'max = 8'
cage ns --policy "$T/ns.toml" -- cat /proc/self/cgroup
cat "$T/ns.err"
check_exit "$T/ns.events" "$rc" 0 exited
assert_eq "$(head -n 1 "$T/ns.out")" "0::/main" "the child's /proc/self/cgroup in its namespace"
assert_eq "$(ev_field "$T/ns.events" start limits | jq -r '.["pids-max"]')" 8 "start event limits.pids-max"
later check_no_warning "$T/ns.err"
check_no_units
later check_no_state "$(cage_id "$T/ns.events")"

# --- backend = "auto" in a service that systemd did not delegate: the systemd backend ---
# (vmtest.service has no Delegate=, so no parent can be delegated; PID 1 is systemd)
case "$(cgroup_of $$)" in /system.slice/vmtest.service*) ;; *) fail "the scenario does not run in vmtest.service: $(cgroup_of $$)" ;; esac
printf '[cage]\nname = "sd-auto"\nbackend = "auto"\n[memory]\nmax = "64M"\n' >"$T/auto.toml"
cage auto --policy "$T/auto.toml" -- cat /proc/self/cgroup
ended_clean auto
assert_eq "$(head -n 1 "$T/auto.out")" "0::$(bot_cg sd-auto)/$(scope_of "$T/auto.events")/main" "the program's own /proc/self/cgroup with backend = auto"

# --- the manager's private socket, and the message bus where it cannot be reached ---
# As root claude-cage asks systemd on /run/systemd/private, as systemctl does. With /dev/null
# mounted over it (in a mount namespace of its own) the same cage is made through dbus-daemon
# (Hello, a match rule for JobRemoved, Subscribe), and check says which way it went.
hide_private() { unshare -m sh -c 'mount --bind /dev/null /run/systemd/private && exec "$@"' sh "$@"; }
op private check --policy "$T/oom.toml"
grep -qxF "OK       backend systemd: cages are transient scopes in claude-cage.slice of the system service manager, asked on its private socket" "$T/private.out" ||
	fail "check does not say the private socket: $(grep 'backend systemd' "$T/private.out" | joined)"
hide_private claude-cage check --policy "$T/oom.toml" >"$T/viabus.out" 2>&1
grep -qxF "OK       backend systemd: cages are transient scopes in claude-cage.slice of the system service manager, asked through the message bus" "$T/viabus.out" ||
	fail "check with the private socket hidden does not say the message bus: $(grep 'backend systemd' "$T/viabus.out" | joined)"
hide_private claude-cage run --events "$T/bus.events" --policy "$T/oom.toml" -- cat /proc/self/cgroup >"$T/bus.out" 2>"$T/bus.err"
rc=$?
ended_clean bus
assert_eq "$(head -n 1 "$T/bus.out")" "0::$(bot_cg sd-root)/$(scope_of "$T/bus.events")/main" "the program's /proc/self/cgroup, the scope asked through the message bus"

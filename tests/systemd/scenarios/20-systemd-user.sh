# systemd backend as the unprivileged user bot (uid 1000) through its user manager: the scope is
# made by user@1000.service (the cgroup is below it), carries the limits, and is gone afterwards;
# an over-allocation is OOM-killed there too (user@.service delegates memory pids cpu).
# vmtest-timeout: 120

um=$CG/user.slice/user-1000.slice/user@1000.service
note "user@1000.service controllers: $(cat "$um/cgroup.controllers")"
systemd_policy "$T/p.toml" sd-user \
	'[memory]' 'max = "64M"' 'swap-max = "0"' \
	'[pids]' 'max = 32'

export CAGE_AS=bot
# claude-cage, run as bot, writes its events in $T: the directory must be bot's (or root's and
# written by no one else).
chown bot "$T"
cage_bg run --policy "$T/p.toml" -- sleep 62
rpid=$!
wait_event "$T/run.events" start 20
id=$(cage_id "$T/run.events")
scope=$(scope_of "$T/run.events")
pid=$(ev_field "$T/run.events" start pid)
# (its holder is a fork with the same command line, named cage-holder)
sup=$(for p in $(pgrep -u bot -f "^claude-cage run --events $T/run.events"); do
	[ "$(cat "/proc/$p/comm")" = claude-cage ] && echo "$p"
done)
note "cage $id, scope $scope, child $pid, supervisor $sup"
assert_num "$sup" "pid of bot's claude-cage"
assert_eq "$(cage_units --user)" "$scope" "the claude-cage units of bot's user manager"
[ -z "$(cage_units)" ] || fail "the system manager has claude-cage units: $(cage_units | tr '\n' ' ')"
assert_eq "$(unit_prop --user "$scope" ActiveState)" active "$scope ActiveState"
cg=$(unit_prop --user "$scope" ControlGroup)
case "$cg" in /user.slice/user-1000.slice/user@1000.service/*/"$scope") ;; *) fail "$scope ControlGroup is not below user@1000.service: $cg" ;; esac
assert_eq "$(unit_prop --user "$scope" MemoryMax)" 67108864 "$scope MemoryMax"
assert_eq "$(unit_prop --user "$scope" TasksMax)" 33 "$scope TasksMax (the policy's 32 and the holder)"
assert_eq "$(cage_dir "$T/run.events")" "$CG$cg" "start event cgroup"
assert_eq "$(cgroup_of "$pid")" "$cg/main" "the child's cgroup"
holder=$(cat "$CG$cg/hold/cgroup.procs")
assert_num "$holder" "the one process in $cg/hold"
assert_eq "$(stat -c %U "/proc/$holder")" bot "the holder's user"
assert_eq "$(stat -c %U "/proc/$pid")" bot "the child's user"
assert_eq "$(cat "$CG$cg/memory.max")" 67108864 "memory.max of the user's cage"
# a user's holder cannot be exempted from a group OOM kill (that takes root): the group is main,
# so that the holder keeps the scope until its counters are read
assert_eq "$(cat "$CG$cg/main/memory.oom.group")" 1 "memory.oom.group of the user's main"
assert_eq "$(cat "$CG$cg/memory.oom.group")" 0 "memory.oom.group of the user's scope"
case "$(cgroup_of "$sup")" in "$cg" | "$cg"/*) fail "bot's supervisor $sup is inside its cage's scope: $(cgroup_of "$sup")" ;; esac
as_bot systemctl --user status --no-pager "$scope" 2>&1 | capture user-scope-status
[ -s /run/user/1000/claude-cage/"$id".json ] || fail "no state file /run/user/1000/claude-cage/$id.json"

kill -TERM "$sup"
wait "$rpid"
rc=$?
check_exit "$T/run.events" "$rc" 143 terminated
later check_no_warning "$T/run.err"
check_no_units --user
[ ! -e "$CG$cg" ] || fail "the user's scope cgroup is left: $CG$cg"
dead "$holder" || fail "the holder $holder outlived its cage"
later check_no_state "$id"

# OOM inside the user's scope, three times over (the scope must outlive the kill until the
# counters are read)
for n in 1 2 3; do
	cage oom$n --policy "$T/p.toml" -- alloc 100 5
	cat "$T/oom$n.err"
	later check_exit "$T/oom$n.events" "$rc" 137 oom-killed
	later check_one_line "$T/oom$n.err" "$T/oom$n.events" 'OOM killer at memory.max 64.0 MiB'
	later assert_ge "$(ev_field "$T/oom$n.events" exit oom-kills)" 1 "run $n: exit event oom-kills"
	later assert_ge "$(ev_field "$T/oom$n.events" exit memory-peak)" 33554432 "run $n: exit event memory-peak"
	check_no_units --user
	later check_no_state "$(cage_id "$T/oom$n.events")"
done

# [cage] cgroupns needs root (a new cgroup namespace takes CAP_SYS_ADMIN): refused with one line,
# nothing started, no unit
systemd_policy "$T/ns.toml" sd-user 'cgroupns = true'
cage ns --policy "$T/ns.toml" -- true
assert_eq "$rc" 125 "status of a user's run with cgroupns = true"
grep -q 'cgroupns = true needs claude-cage to run as root' "$T/ns.err" || fail "no line about cgroupns needing root: $(head -c 300 "$T/ns.err")"
check_no_units --user

# the program itself starts in <scope>/main: the user's manager moved the waiting child into the
# scope, and claude-cage moved it on into main before releasing it
cage cg --policy "$T/p.toml" -- cat /proc/self/cgroup
ended_clean cg --user
case "$(head -n 1 "$T/cg.out")" in "0::/user.slice/user-1000.slice/user@1000.service/"*"/$(scope_of "$T/cg.events")/main") ;; *) fail "the program's own /proc/self/cgroup: $(head -n 1 "$T/cg.out")" ;; esac

# the user's manager on its private socket ($XDG_RUNTIME_DIR/systemd/private); with /dev/null
# mounted over that (a mount namespace of its own), the same cage through the session bus
as_bot claude-cage check --policy "$T/p.toml" >"$T/ucheck.out" 2>&1
grep -qxF "OK       backend systemd: cages are transient scopes in claude-cage.slice of the user's service manager, asked on its private socket" "$T/ucheck.out" ||
	fail "bot's check does not say the private socket: $(grep 'backend systemd' "$T/ucheck.out" | joined)"
unshare -m sh -c 'mount --bind /dev/null /run/user/1000/systemd/private && exec runuser -u bot -- env XDG_RUNTIME_DIR=/run/user/1000 "$@"' sh \
	claude-cage run --events "$T/ubus.events" --policy "$T/p.toml" -- cat /proc/self/cgroup >"$T/ubus.out" 2>"$T/ubus.err"
rc=$?
ended_clean ubus --user
case "$(head -n 1 "$T/ubus.out")" in "0::/user.slice/user-1000.slice/user@1000.service/"*"/$(scope_of "$T/ubus.events")/main") ;; *) fail "the program's /proc/self/cgroup, the scope asked through the session bus: $(head -n 1 "$T/ubus.out")" ;; esac

# a user whose service manager cannot be reached: 125, one line with the cause and the fix,
# nothing started
systemd_policy "$T/nobus.toml" sd-user
runuser -u bot -- env XDG_RUNTIME_DIR=/nonexistent DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent \
	claude-cage run --policy "$T/nobus.toml" -- touch "$T/nobus.ran" >"$T/nobus.out" 2>"$T/nobus.err"
rc=$?
cat "$T/nobus.err"
assert_eq "$rc" 125 "status without a reachable user manager"
assert_eq "$(grep -c '^claude-cage: ' "$T/nobus.err")" 1 "lines on stderr without a reachable user manager"
grep -q '^claude-cage: failed to connect to the user session bus of the service manager: .*; run as root for the system manager, or in a user session whose bus is reachable' "$T/nobus.err" ||
	fail "no line with the cause and the fix: $(head -c 400 "$T/nobus.err")"
[ ! -e "$T/nobus.ran" ] || fail "the program ran without a service manager"
check_no_units --user

# Members that cannot act on a signal are still killed and removed: a stopped process (SIGSTOP),
# a process in a frozen cgroup the child made (cgroup.freeze=1), and a parent blocked inside
# vfork() while its vfork child sleeps. The child checks each is stuck before it exits 0; then
# every one of them is dead, counted as leftover, and the cage (with the frozen cgroup) is gone.
# The same set is killed by `claude-cage kill` while the child still runs.
# vmtest-timeout: 120

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-stuck"

[pids]
max = 100
P
# The child: $1 is where it writes its report; "hold" makes it wait instead of exiting.
cat >"$T/child.sh" <<'C'
out=$1
st() { sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null; }
until_true() { # until_true WHAT CMD...: poll CMD for up to 10 s
	_w=$1; shift; _i=0
	until "$@"; do _i=$((_i + 1)); [ $_i -le 200 ] || { echo "stuck: $_w timed out"; exit 10; }; sleep 0.05; done
}
# stopped
sleep 1000 &
stopped=$!
kill -STOP $stopped
until_true "stop" sh -c '[ "$(sed -n "s/.*) \(.\).*/\1/p" /proc/$0/stat)" = T ]' $stopped
# frozen: a cgroup beside main, with a process, frozen
fz=$CLAUDE_CAGE_CGROUP/frozen
mkdir "$fz" || exit 11
sh -c 'echo $$ >"$1/cgroup.procs" && exec sleep 1000' _ "$fz" &
frozen=$!
until_true "populated" grep -q 'populated 1' "$fz/cgroup.events"
echo 1 >"$fz/cgroup.freeze"
until_true "frozen" grep -q 'frozen 1' "$fz/cgroup.events"
# blocked in vfork
vforkhold >"$out.vfork" &
vparent=$!
until_true "vfork child" grep -q ' child ' "$out.vfork"
vchild=$(sed -n 's/.* child \([0-9]*\)$/\1/p' "$out.vfork")
{
	echo "stopped=$stopped $(st $stopped)"
	echo "frozen=$frozen $(grep frozen "$fz/cgroup.events")"
	echo "vparent=$vparent $(st $vparent)"
	echo "vchild=$vchild $(st $vchild)"
	echo "procs=$(find "$CLAUDE_CAGE_CGROUP" -name cgroup.procs | xargs cat | wc -l)"
} >"$out"
[ "$2" = hold ] && exec sleep 1000
exit 0
C

# check_stuck TAG: the report shows each member stuck, and each is dead now
check_stuck() {
	r=$T/$1.report
	cat "$r" "$r.vfork"
	grep -qE '^stopped=[0-9]+ T$' "$r" || fail "$1: the stopped process was not in state T: $(grep stopped= "$r")"
	grep -qE '^frozen=[0-9]+ frozen 1$' "$r" || fail "$1: the cgroup was not frozen: $(grep frozen= "$r")"
	# a vfork parent waits in the kernel for its child to exec or exit (state D on 6.1)
	grep -qE '^vparent=[0-9]+ D$' "$r" || fail "$1: the vfork parent was not blocked (state D): $(grep vparent= "$r")"
	grep -qE '^vchild=[0-9]+ [SR]$' "$r" || fail "$1: no sleeping vfork child: $(grep vchild= "$r")"
	for k in stopped frozen vparent vchild; do
		pid=$(sed -n "s/^$k=\([0-9]*\).*/\1/p" "$r")
		alive "$pid" && fail "$1: the $k process $pid is still alive"
	done
	check_no_proc vforkhold
	check_no_proc sleep
}

# (1) the child exits 0 with the stuck members in place
cage exit --policy "$T/policy.toml" -- sh "$T/child.sh" "$T/exit.report"
check_exit "$T/exit.events" "$rc" 0 exited
check_stuck exit
# stopped sleep, frozen sleep, vfork parent and child (the report's procs also counts the child)
assert_ge "$(ev_field "$T/exit.events" exit leftover)" 4 "exit: exit event leftover"
check_gone "$T/exit.events" bot

# (2) the same set, killed by an operator while the child still runs
cage_bg kill --policy "$T/policy.toml" -- sh "$T/child.sh" "$T/kill.report" hold
p=$!
wait_event "$T/kill.events" start 20
wait_match "$T/kill.report" '^procs=' 20
id=$(cage_id "$T/kill.events")
op k kill "$id"
assert_eq "$rc" 0 "kill $id: status"
wait $p
rc=$?
check_exit "$T/kill.events" "$rc" 137 killed
check_stuck kill
assert_ge "$(ev_field "$T/kill.events" exit leftover)" 4 "kill: exit event leftover"
check_gone "$T/kill.events" bot
check_no_state "$id"

# claude-cage itself SIGKILLed. Its child dies at once by its parent-death signal (SIGKILL),
# even one that ignores every catchable signal and even one that is stopped; a setsid'd
# grandchild survives and keeps the cage populated (orphaned, state file kept); the next `run`
# of the same bot reaps both orphans (one note each) before it starts, and nothing is left.
# vmtest-timeout: 90

BOUND=3
cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-supkill"

[pids]
max = 50
P
# start TAG MODE: a cage whose child leaves a setsid'd alloc grandchild, then either ignores
# TERM/INT/HUP and sleeps ("ignore") or stops itself ("stop"); sets SUP CHILD GC ID DIR
start() {
	case $2 in
	ignore) c='setsid alloc 1 1000 >"$0" & trap "" TERM INT HUP; exec sleep 1000' ;;
	stop) c='setsid alloc 1 1000 >"$0" & kill -STOP $$; exec sleep 1000' ;;
	esac
	cage_bg "$1" --policy "$T/policy.toml" -- sh -c "$c" "$T/$1.gc"
	SUP=$!
	wait_event "$T/$1.events" start 20
	wait_match "$T/$1.gc" touched 20
	ID=$(cage_id "$T/$1.events")
	DIR=$(cage_dir "$T/$1.events")
	CHILD=$(ev_field "$T/$1.events" start pid)
	GC=$(grep -vx "$CHILD" "$DIR/main/cgroup.procs")
	assert_eq "$(cat "/proc/$GC/comm")" alloc "$1: the grandchild"
	if [ "$2" = stop ]; then
		_i=0
		until [ "$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$CHILD/stat")" = T ]; do
			_i=$((_i + 1)); [ $_i -le 200 ] || fail "$1: the child did not stop"; sleep 0.05
		done
	fi
	note "$1: supervisor $SUP, child $CHILD ($(sed -n 's/.*) \(.\).*/\1/p' "/proc/$CHILD/stat")), grandchild $GC"
}
# sigkill TAG: SIGKILL the supervisor; the child must be dead within BOUND s
sigkill() {
	kill -KILL "$SUP"
	_t0=$(now)
	wait "$SUP" 2>/dev/null
	_i=0
	while alive "$CHILD"; do
		_i=$((_i + 1))
		[ $_i -le $((BOUND * 100)) ] || fail "$1: the child $CHILD is alive $BOUND s after its supervisor was SIGKILLed"
		sleep 0.01
	done
	note "$1: child gone $(awk -v a="$_t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}') s after the SIGKILL"
	alive "$GC" || fail "$1: the setsid'd grandchild died too (it should outlive the supervisor until reaped)"
	[ -d "$DIR" ] || fail "$1: the cage dir vanished with its supervisor"
	[ -s "$STATE_DIR/$ID.json" ] || fail "$1: no state file for the orphaned cage $ID"
}

# both cages run before either supervisor dies (a run reaps its bot's orphans when it starts)
start a ignore
a_id=$ID a_dir=$DIR a_gc=$GC a_sup=$SUP a_child=$CHILD
start b stop
b_id=$ID b_dir=$DIR b_gc=$GC
sigkill b
SUP=$a_sup CHILD=$a_child GC=$a_gc DIR=$a_dir ID=$a_id
sigkill a

op ps ps --name vm-supkill
assert_eq "$(ps_col "$T/ps.out" "$a_id" STATE)" orphaned "ps: state of $a_id"
assert_eq "$(ps_col "$T/ps.out" "$b_id" STATE)" orphaned "ps: state of $b_id"

cage next --policy "$T/policy.toml" -- true
cat "$T/next.err"
check_exit "$T/next.events" "$rc" 0 exited
for x in a b; do
	eval "id=\$${x}_id dir=\$${x}_dir gc=\$${x}_gc"
	grep -qxF "claude-cage note: reaped orphaned cage $id: killed 1 process, removed $dir" "$T/next.err" ||
		fail "next run: no note for $id: $(cat "$T/next.err")"
	alive "$gc" && fail "next run: the grandchild $gc of $id is alive"
	[ ! -e "$dir" ] || fail "next run: the orphaned cage $dir is left"
	check_no_state "$id"
done
assert_eq "$(grep -c '^claude-cage note: ' "$T/next.err")" 2 "next run: note lines"
check_gone "$T/next.events" bot
check_no_proc alloc

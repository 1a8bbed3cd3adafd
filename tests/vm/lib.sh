# shellcheck shell=dash
# The VM suite's own helpers (busybox ash, inside the test VM), sourced by every scenario after
# the shared library, /vmtest/scenario.sh (tests/lib/scenario.sh), which has the rest.

# busybox's greps are cheap: try twice as often as the shared default.
# shellcheck disable=SC2034 # read by the waits of scenario.sh
POLL_TICK=0.05

# orphan TAG RUN-ARGS...: a cage whose supervisor was SIGKILLed while a setsid'd grandchild
# (alloc, holding 1 MB) keeps it populated; the child itself dies of its parent-death signal.
# Sets ORPHAN_ID, ORPHAN_DIR, ORPHAN_GC (the grandchild's pid), ORPHAN_SUP (the dead supervisor).
orphan() {
	local tag="$1"
	shift
	cage_bg "$tag" "$@" -- sh -c 'setsid alloc 1 1000 >"$0" & exec sleep 1000' "$T/$tag.gc"
	ORPHAN_SUP=$!
	wait_event "$T/$tag.events" start 20
	wait_match "$T/$tag.gc" touched 20
	ORPHAN_ID=$(cage_id "$T/$tag.events")
	ORPHAN_DIR=$(cage_dir "$T/$tag.events")
	[ -s "$STATE_DIR/$ORPHAN_ID.json" ] || fail "$tag: no state file $STATE_DIR/$ORPHAN_ID.json while the cage runs"
	kill -KILL "$ORPHAN_SUP"
	wait "$ORPHAN_SUP"
	poll 10 orphan_alone ||
		fail "$tag: expected only the grandchild in the cage 10 s after the supervisor's death: $(tr '\n' ' ' <"$ORPHAN_DIR/main/cgroup.procs")"
	ORPHAN_GC=$(cat "$ORPHAN_DIR/main/cgroup.procs")
	assert_eq "$(cat "/proc/$ORPHAN_GC/comm")" alloc "$tag: the process left in the orphaned cage"
	note "$tag: orphan $ORPHAN_ID, supervisor $ORPHAN_SUP killed, grandchild $ORPHAN_GC"
}
# orphan_alone: one process left in the orphan's cage
orphan_alone() { [ "$(wc -l <"$ORPHAN_DIR/main/cgroup.procs")" = 1 ]; }

# Helpers sourced by every scenario (busybox ash, inside the test VM).
# The runner sets: VMTEST_NAME (scenario name), T (empty work dir on tmpfs),
# VMTEST_FAILFILE (where fail() leaves its one-line reason).
# Everything a scenario prints goes to its log, shown on the console only on failure.

CG=/sys/fs/cgroup

# fail WHY...: record the reason (first line is what the FAIL line shows) and end the scenario.
fail() {
	printf '%s' "$*" | tr '\n' ' ' >"$VMTEST_FAILFILE"
	echo "FAIL: $*"
	exit 1
}
note() { echo "- $*"; }
now() { cut -d' ' -f1 /proc/uptime; }

# cage TAG CLAUDE-CAGE-RUN-ARGS... : run claude-cage in the foreground; events, stdout and
# stderr go to $T/TAG.events, $T/TAG.out, $T/TAG.err; exit status in $rc.
cage() {
	_tag=$1
	shift
	_t0=$(now)
	claude-cage run --events "$T/$_tag.events" "$@" >"$T/$_tag.out" 2>"$T/$_tag.err"
	rc=$?
	note "cage $_tag: status $rc after $(awk -v a="$_t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')s"
}
# cage_bg TAG ARGS...: same, in the background; its pid is $!, get the status with `wait`.
cage_bg() {
	_tag=$1
	shift
	claude-cage run --events "$T/$_tag.events" "$@" >"$T/$_tag.out" 2>"$T/$_tag.err" &
}

# --- events (JSON lines) ---
# ev_lines FILE EVENT: the lines of that event
ev_lines() { grep -E "\"event\" *: *\"$2\"" "$1" 2>/dev/null; }
ev_count() { ev_lines "$1" "$2" | wc -l | tr -d ' '; }
# ev_field FILE EVENT FIELD: value of FIELD in the last EVENT line (strings unquoted, null as null)
ev_field() {
	ev_lines "$1" "$2" | tail -n 1 |
		sed -nE "s/.*\"$3\" *: *(\"[^\"]*\"|[^,}]*).*/\1/p" |
		sed -E 's/^"(.*)"$/\1/; s/[[:space:]]+$//'
}
cage_dir() { ev_field "$1" start cgroup; }
cage_id() { ev_field "$1" start cage; }

# --- assertions ---
assert_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
assert_num() { case "$1" in '' | *[!0-9]*) fail "$2: expected a number, got '$1'" ;; esac; }
assert_ge() {
	assert_num "$1" "$3"
	[ "$1" -ge "$2" ] || fail "$3: expected >= $2, got $1"
}
assert_event() { [ "$(ev_count "$1" "$2")" -ge 1 ] || fail "no '$2' event in $(basename "$1")"; }
assert_no_event() { [ "$(ev_count "$1" "$2")" = 0 ] || fail "unexpected '$2' event in $(basename "$1"): $(ev_lines "$1" "$2" | head -n 1)"; }

# check_exit FILE RC STATUS REASON: claude-cage returned STATUS, one start and one exit event,
# the exit event says STATUS and REASON
check_exit() {
	[ -s "$1" ] || fail "$(basename "$1"): events file missing or empty (status $2)"
	assert_eq "$2" "$3" "$(basename "$1" .events): claude-cage exit status"
	assert_eq "$(ev_count "$1" start)" 1 "$(basename "$1"): number of start events"
	assert_eq "$(ev_count "$1" exit)" 1 "$(basename "$1"): number of exit events"
	assert_eq "$(ev_field "$1" exit status)" "$3" "$(basename "$1"): exit event status"
	assert_eq "$(ev_field "$1" exit reason)" "$4" "$(basename "$1"): exit event reason"
	assert_eq "$(ev_field "$1" exit cage)" "$(cage_id "$1")" "$(basename "$1"): exit event cage"
}

# cage_lines FILE: claude-cage's own stderr lines
cage_lines() { grep '^claude-cage: ' "$1"; }
# check_one_line ERRFILE EVENTS [ERE]: exactly one "claude-cage: <cage-id>: " line (matching ERE, -i)
check_one_line() {
	_n=$(cage_lines "$1" | wc -l | tr -d ' ')
	[ "$_n" = 1 ] || fail "$(basename "$1"): expected exactly one 'claude-cage: ' line, got $_n: $(cage_lines "$1" | head -n 3)"
	_id=$(cage_id "$2")
	[ -n "$_id" ] || _id='[^:]+'
	cage_lines "$1" | grep -qE "^claude-cage: $_id: " || fail "$(basename "$1"): line does not start with 'claude-cage: $_id: ': $(cage_lines "$1")"
	[ -z "${3:-}" ] || cage_lines "$1" | grep -qiE "$3" || fail "$(basename "$1"): line does not match /$3/: $(cage_lines "$1")"
}
check_no_line() {
	[ -z "$(cage_lines "$1")" ] || fail "$(basename "$1"): unexpected claude-cage line: $(cage_lines "$1" | head -n 1)"
}

# check_gone EVENTS [bot]: the cage dir from the start event is gone (and its bot dir, with "bot")
check_gone() {
	_d=$(cage_dir "$1")
	[ -n "$_d" ] || fail "$(basename "$1"): no cgroup in the start event"
	case "$_d" in "$CG"/*) ;; *) fail "$(basename "$1"): start cgroup '$_d' is not under $CG" ;; esac
	[ ! -e "$_d" ] || fail "cage dir left behind: $_d ($(find "$_d" -type d | wc -l) dirs, procs: $(find "$_d" -name cgroup.procs | xargs cat | tr '\n' ' '))"
	if [ "${2:-}" = bot ]; then
		[ ! -e "${_d%/*}" ] || fail "bot dir left behind: ${_d%/*} (subdirs: $(find "${_d%/*}" -mindepth 1 -type d | tr '\n' ' '))"
	fi
}
# check_no_dir NAME: no cgroup dir called NAME anywhere
check_no_dir() {
	_l=$(find "$CG" -mindepth 1 -type d -name "$1" | tr '\n' ' ')
	[ -z "$_l" ] || fail "cgroup dir left: $_l"
}

# live_procs COMM: pids of live (not zombie) processes whose comm is COMM
live_procs() {
	for _p in /proc/[0-9]*; do
		[ "$(cat "$_p/comm" 2>/dev/null)" = "$1" ] || continue
		_s=$(sed -n 's/.*) \(.\).*/\1/p' "$_p/stat" 2>/dev/null)
		[ -n "$_s" ] && [ "$_s" != Z ] && echo "${_p#/proc/}"
	done
}
check_no_proc() {
	_l=$(live_procs "$1" | tr '\n' ' ')
	[ -z "$_l" ] || fail "$(echo $_l | wc -w) '$1' process(es) still alive: $(echo $_l | cut -d' ' -f1-10)"
}

# wait_event FILE EVENT SECONDS: poll the events file (written as things happen) for an event
wait_event() {
	_i=0
	while [ "$(ev_count "$1" "$2")" = 0 ]; do
		_i=$((_i + 1))
		[ "$_i" -le $(($3 * 20)) ] || fail "no '$2' event in $(basename "$1") after $3 s"
		sleep 0.05
	done
}
# wait_match FILE ERE SECONDS: poll a file that a payload writes when it is ready
wait_match() {
	_i=0
	while ! grep -qE "$2" "$1" 2>/dev/null; do
		_i=$((_i + 1))
		[ "$_i" -le $(($3 * 20)) ] || fail "no /$2/ in $(basename "$1") after $3 s"
		sleep 0.05
	done
}

# --- operator commands: ps, kill, reap, check (scenarios 100-140) ---
STATE_DIR=/run/claude-cage

# op TAG ARGS...: run `claude-cage ARGS...` in the foreground; stdout and stderr go to $T/TAG.out
# and $T/TAG.err, the exit status to $rc.
op() {
	_tag=$1
	shift
	claude-cage "$@" >"$T/$_tag.out" 2>"$T/$_tag.err"
	rc=$?
	note "claude-cage $*: status $rc"
}
# ps_col FILE CAGE COLUMN: a cell of `ps` table output (cells are separated by 2+ spaces)
ps_col() {
	awk -F '  +' -v c="$2" -v n="$3" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) k = i; next }
		$1 == c && k { print $k }' "$1"
}
# json_field FILE CAGE FIELD: a scalar FIELD of CAGE's object in `ps --json` output
json_field() {
	awk -v c="$2" -v f="\"$3\":" '/^  \{/ { cur = "" }
		$1 == "\"cage\":" { v = $2; gsub(/[",]/, "", v); cur = v }
		cur == c && $1 == f { v = $2; sub(/,$/, "", v); gsub(/"/, "", v); print v; exit }' "$1"
}
# alive PID: the process exists and is not a zombie
alive() {
	_s=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$_s" ] && [ "$_s" != Z ]
}
# wait_dead PID SECONDS
wait_dead() {
	_i=0
	while alive "$1"; do
		_i=$((_i + 1))
		[ "$_i" -le $(($2 * 20)) ] || fail "process $1 ($(cat "/proc/$1/comm" 2>/dev/null)) still alive after $2 s"
		sleep 0.05
	done
}
# check_no_state CAGE...: no state file left for these cages
check_no_state() {
	for _c in "$@"; do
		[ ! -e "$STATE_DIR/$_c.json" ] || fail "state file left behind: $STATE_DIR/$_c.json"
	done
}
# orphan TAG RUN-ARGS...: a cage whose supervisor was SIGKILLed while a setsid'd grandchild
# (alloc, holding 1 MB) keeps it populated; the child itself dies of its parent-death signal.
# Sets ORPHAN_ID, ORPHAN_DIR, ORPHAN_GC (the grandchild's pid), ORPHAN_SUP (the dead supervisor).
orphan() {
	_tag=$1
	shift
	cage_bg "$_tag" "$@" -- sh -c 'setsid alloc 1 1000 >"$0" & exec sleep 1000' "$T/$_tag.gc"
	ORPHAN_SUP=$!
	wait_event "$T/$_tag.events" start 20
	wait_match "$T/$_tag.gc" touched 20
	ORPHAN_ID=$(cage_id "$T/$_tag.events")
	ORPHAN_DIR=$(cage_dir "$T/$_tag.events")
	[ -s "$STATE_DIR/$ORPHAN_ID.json" ] || fail "$_tag: no state file $STATE_DIR/$ORPHAN_ID.json while the cage runs"
	kill -KILL "$ORPHAN_SUP"
	wait "$ORPHAN_SUP"
	_i=0
	while [ "$(wc -l <"$ORPHAN_DIR/main/cgroup.procs")" != 1 ]; do
		_i=$((_i + 1))
		[ "$_i" -le 200 ] || fail "$_tag: expected only the grandchild in the cage 10 s after the supervisor's death: $(cat "$ORPHAN_DIR/main/cgroup.procs" | tr '\n' ' ')"
		sleep 0.05
	done
	ORPHAN_GC=$(cat "$ORPHAN_DIR/main/cgroup.procs")
	assert_eq "$(cat "/proc/$ORPHAN_GC/comm")" alloc "$_tag: the process left in the orphaned cage"
	note "$_tag: orphan $ORPHAN_ID, supervisor $ORPHAN_SUP killed, grandchild $ORPHAN_GC"
}

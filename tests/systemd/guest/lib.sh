# Helpers sourced by every scenario (bash, as root, inside the systemd test VM).
# The runner sets: VMTEST_NAME (scenario name), T (an empty work dir, writable by everyone),
# VMTEST_FAILFILE (where fail() leaves its one-line reason).
# Everything a scenario prints goes to its log, shown on the console only on failure.

CG=/sys/fs/cgroup
STATE_DIR=/run/claude-cage
# claude-cage.slice is below claude.slice (a dash in a slice name is a level: systemd.slice(5))
SLICE_CG=/claude.slice/claude-cage.slice
BOT_ENV=(env XDG_RUNTIME_DIR=/run/user/1000)

# fail WHY...: record the reason (the FAIL line shows it) and end the scenario. A scenario may
# define on_fail, which then prints what would explain the failure into the log.
fail() {
	printf '%s' "$*" | tr '\n' ' ' >"$VMTEST_FAILFILE"
	echo "FAIL: $*"
	if [ -z "${in_on_fail:-}" ] && declare -F on_fail >/dev/null; then
		in_on_fail=1
		on_fail 2>&1 | sed 's/^/on_fail: /'
	fi
	exit 1
}
# proc_report PID...: each process's command line, state, wait channel and kernel stack
proc_report() {
	local p
	for p in "$@"; do
		echo "process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
		echo "  $(grep -E '^(State|PPid|SigBlk|SigPnd|ShdPnd)' "/proc/$p/status" 2>/dev/null | tr '\n\t' '  ')"
		echo "  wchan $(cat "/proc/$p/wchan" 2>/dev/null), cgroup $(cgroup_of "$p" 2>/dev/null)"
		sed 's/^/  stack /' "/proc/$p/stack" 2>/dev/null
	done
}
note() { echo "- $*"; }
# later CHECK ARGS...: run an assertion without ending the scenario on failure; the scenario
# still fails at its end, with every such reason (so that one failure does not hide the next)
later() {
	local f=$T/.later.tmp
	(VMTEST_FAILFILE=$f "$@") && return 0
	{ cat "$f"; echo; } >>"$T/.later"
	rm -f "$f"
	return 1
}
now() { cut -d' ' -f1 /proc/uptime; }

# as_bot CMD...: run CMD as the user bot (uid 1000), with its user manager reachable
as_bot() { runuser -u bot -- "${BOT_ENV[@]}" "$@"; }

# cage TAG CLAUDE-CAGE-RUN-ARGS...: run claude-cage in the foreground; events, stdout and stderr
# go to $T/TAG.events, $T/TAG.out, $T/TAG.err; exit status in $rc. CAGE_AS=bot runs it as bot.
cage() {
	local tag=$1 t0
	shift
	t0=$(now)
	${CAGE_AS:+as_bot} claude-cage run --events "$T/$tag.events" "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	rc=$?
	note "cage $tag: status $rc after $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}')s"
}
# cage_bg TAG ARGS...: the same in the background; $! is its pid (runuser's with CAGE_AS=bot).
cage_bg() {
	local tag=$1
	shift
	${CAGE_AS:+as_bot} claude-cage run --events "$T/$tag.events" "$@" >"$T/$tag.out" 2>"$T/$tag.err" &
}
# op TAG ARGS...: `claude-cage ARGS...` in the foreground, output to $T/TAG.out/.err, status in $rc
op() {
	local tag=$1
	shift
	claude-cage "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	rc=$?
	note "claude-cage $*: status $rc"
}

# --- events (JSON lines, read with jq) ---
ev_count() { jq -c --arg e "$2" 'select(.event == $e)' "$1" 2>/dev/null | wc -l; }
# ev_field FILE EVENT FIELD: FIELD of the last EVENT line ("null" when null or missing)
ev_field() { jq -r --arg e "$2" --arg f "$3" 'select(.event == $e) | .[$f] | tostring' "$1" 2>/dev/null | tail -n 1; }
cage_id() { ev_field "$1" start cage; }
cage_dir() { ev_field "$1" start cgroup; }
scope_of() { echo "claude-cage-$(cage_id "$1").scope"; }

# --- assertions ---
assert_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
assert_num() { case "$1" in '' | *[!0-9]*) fail "$2: expected a number, got '$1'" ;; esac; }
assert_le() {
	assert_num "$1" "$3"
	[ "$1" -le "$2" ] || fail "$3: expected <= $2, got $1"
}
assert_ge() {
	assert_num "$1" "$3"
	[ "$1" -ge "$2" ] || fail "$3: expected >= $2, got $1"
}
# check_exit FILE RC STATUS REASON: status, one start and one exit event, exit status and reason
check_exit() {
	[ -s "$1" ] || fail "$(basename "$1"): events file missing or empty (status $2; stderr: $(head -c 300 "${1%.events}.err" 2>/dev/null))"
	assert_eq "$2" "$3" "$(basename "$1" .events): claude-cage exit status"
	assert_eq "$(ev_count "$1" start)" 1 "$(basename "$1"): number of start events"
	assert_eq "$(ev_count "$1" exit)" 1 "$(basename "$1"): number of exit events"
	assert_eq "$(ev_field "$1" exit status)" "$3" "$(basename "$1"): exit event status"
	assert_eq "$(ev_field "$1" exit reason)" "$4" "$(basename "$1"): exit event reason"
}
# check_one_line ERRFILE EVENTS [ERE]: exactly one "claude-cage: <cage-id>: " line (matching ERE, -i)
check_one_line() {
	local n id
	n=$(grep -c '^claude-cage: ' "$1")
	[ "$n" = 1 ] || fail "$(basename "$1"): expected exactly one 'claude-cage: ' line, got $n: $(grep '^claude-cage: ' "$1" | head -n 3)"
	id=$(cage_id "$2")
	grep '^claude-cage: ' "$1" | grep -qF "claude-cage: $id: " || fail "$(basename "$1"): the line does not start with 'claude-cage: $id: ': $(grep '^claude-cage: ' "$1")"
	[ -z "${3:-}" ] || grep '^claude-cage: ' "$1" | grep -qiE "$3" || fail "$(basename "$1"): the line does not match /$3/: $(grep '^claude-cage: ' "$1")"
}

# check_no_warning ERRFILE: no "claude-cage warning:" line
check_no_warning() {
	! grep -q '^claude-cage warning' "$1" || fail "$(basename "$1"): unexpected warning: $(grep '^claude-cage warning' "$1" | head -n 1)"
}
# check_no_state CAGE-ID...: no state file left for these cages (root's or bot's)
check_no_state() {
	local c
	for c in "$@"; do
		[ ! -e "$STATE_DIR/$c.json" ] || fail "state file left behind: $STATE_DIR/$c.json"
		[ ! -e "/run/user/1000/claude-cage/$c.json" ] || fail "state file left behind: /run/user/1000/claude-cage/$c.json"
	done
}

# --- waiting ---
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds. CMD's words are expanded once, when
# wait_for is called: a value that must be read again on every try goes in a function. The
# bound is in seconds of the clock, whatever each try costs (a jq under emulation is slow).
wait_for() {
	local lim=$1 what=$2 end=$((SECONDS + $1 + 1))
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$end" ] || fail "$what: not after $lim s"
		sleep 0.1
	done
}
has_event() { [ "$(ev_count "$1" "$2")" -ge 1 ]; }
# wait_event FILE EVENT SECONDS
wait_event() {
	local end=$((SECONDS + $3 + 1))
	until has_event "$1" "$2"; do
		[ "$SECONDS" -lt "$end" ] || fail "no '$2' event in $(basename "$1") after $3 s (stderr: $(head -c 400 "${1%.events}.err" 2>/dev/null))"
		sleep 0.1
	done
}
alive() {
	local s
	s=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$s" ] && [ "$s" != Z ]
}
dead() { ! alive "$1"; }

# --- systemd ---
# unit_prop [--user] UNIT PROP: one property's value (--user: bot's user manager)
unit_prop() {
	if [ "$1" = --user ]; then
		as_bot systemctl --user show -P "$3" "$2"
	else
		systemctl show -P "$2" "$1"
	fi
}
# cage_units [--user]: the loaded claude-cage-* units, one name a line
cage_units() {
	if [ "${1:-}" = --user ]; then
		as_bot systemctl --user list-units --all --no-legend --plain 'claude-cage-*' | awk '{print $1}'
	else
		systemctl list-units --all --no-legend --plain 'claude-cage-*' | awk '{print $1}'
	fi
}
no_cage_units() { [ -z "$(cage_units "$@")" ]; }
# check_no_units [--user]: no claude-cage-* unit is left (waits up to 10 s for the stop to settle)
check_no_units() {
	local end=$((SECONDS + 11))
	until no_cage_units "$@"; do
		[ "$SECONDS" -lt "$end" ] || fail "claude-cage units left${1:+ ($1)}: $(cage_units "$@" | tr '\n' ' ')"
		sleep 0.1
	done
}
# cgroup_of PID: the process's cgroup path (relative to the cgroup2 mount)
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }

# capture NAME: stdin becomes /vmtest/captures/NAME (printed on the console at the end, and
# saved by tests/systemd/run as target/systemd/captured/NAME.txt)
capture() { cat >"/vmtest/captures/$1"; }

# A policy for the systemd backend: systemd_policy FILE NAME [EXTRA TOML...]
systemd_policy() {
	local f=$1 name=$2
	shift 2
	{
		printf '[cage]\nname = "%s"\nbackend = "systemd"\n' "$name"
		printf '%s\n' "$@"
	} >"$f"
	chmod 644 "$f"
}

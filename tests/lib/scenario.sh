# shellcheck shell=dash
# The scenario library of the guest test suites: tests/vm (busybox ash, in an initramfs) and
# tests/systemd (bash, in a Debian guest with systemd). Both copy it into their guest as
# /vmtest/scenario.sh, beside the suite's own helpers (/vmtest/lib.sh: tests/vm/lib.sh,
# tests/systemd/guest/lib.sh). It must parse and run in busybox ash: POSIX sh plus `local`.
#
# Two parts: the helpers a scenario uses, and run_scenarios, the loop of each guest's runner
# (tests/vm/init, tests/systemd/guest/runner).
#
# A scenario runs with: VMTEST_NAME (its name), T (an empty work dir of root's, mode 755:
# claude-cage refuses an events file in a directory other users can write, so a scenario that
# runs claude-cage as another user gives it T), VMTEST_FAILFILE (where fail() leaves its one-line reason). Everything it prints goes to its
# log, shown on the console only when it fails.

CG=/sys/fs/cgroup
STATE_DIR=/run/claude-cage
# Pause between two tries of a wait (a suite's lib.sh may change it).
POLL_TICK=0.1

# fail WHY...: record the reason (the FAIL line shows it) and end the scenario. A scenario may
# define on_fail, which then prints what would explain the failure into the log.
fail() {
	printf '%s' "$*" | tr '\n' ' ' >"$VMTEST_FAILFILE"
	echo "FAIL: $*"
	if [ -z "${in_on_fail:-}" ] && command -v on_fail >/dev/null 2>&1; then
		in_on_fail=1
		on_fail 2>&1 | sed 's/^/on_fail: /'
	fi
	exit 1
}
# later CHECK ARGS...: run an assertion without ending the scenario on failure; the scenario
# still fails at its end, with every such reason (so that one failure does not hide the next)
later() {
	local f="$T/.later.tmp"
	(VMTEST_FAILFILE=$f "$@") && return 0
	{
		cat "$f"
		echo
	} >>"$T/.later"
	rm -f "$f"
	return 1
}
note() { echo "- $*"; }
# now: seconds since boot, with their fraction; since T0: seconds from T0 (a `now`) to now
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
# clock_s: whole seconds since boot into $_clock (read without a subshell: waits read it often)
clock_s() {
	read -r _clock _ </proc/uptime
	_clock=${_clock%.*}
}
# joined: the lines of stdin on one line, separated by "; "
joined() { awk 'NR > 1 { printf "; " } { printf "%s", $0 } END { if (NR) print "" }'; }

# cgroup_of PID: the process's cgroup path (relative to the cgroup2 mount)
cgroup_of() { sed -n 's/^0:://p' "/proc/$1/cgroup"; }
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

# --- running claude-cage ---
# cage TAG CLAUDE-CAGE-RUN-ARGS...: run claude-cage in the foreground; events, stdout and stderr
# go to $T/TAG.events, $T/TAG.out, $T/TAG.err; exit status in $rc. CAGE_AS=bot runs it as the
# user bot (as_bot, systemd suite).
cage() {
	local tag="$1" t0
	shift
	t0=$(now)
	${CAGE_AS:+as_bot} claude-cage run --events "$T/$tag.events" "$@" >"$T/$tag.out" 2>"$T/$tag.err"
	rc=$?
	note "cage $tag: status $rc after $(since "$t0")s"
}
# cage_bg TAG ARGS...: the same in the background; $! is its pid (runuser's with CAGE_AS=bot),
# `wait` gives its status.
cage_bg() {
	local tag="$1"
	shift
	${CAGE_AS:+as_bot} claude-cage run --events "$T/$tag.events" "$@" >"$T/$tag.out" 2>"$T/$tag.err" &
}
# op TAG ARGS...: `claude-cage ARGS...` (ps, kill, reap, check...) in the foreground; stdout and
# stderr go to $T/TAG.out and $T/TAG.err, the exit status to $rc.
op() {
	local tag="$1"
	shift
	claude-cage "$@" >"$T/$tag.out" 2>"$T/$tag.err"
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

# --- events (JSON lines) ---
# ev_lines FILE EVENT: the lines of that event. ev_field FILE EVENT FIELD: FIELD of the last
# EVENT line, strings unquoted. Where jq is (the systemd guest) they parse JSON, and a field that
# is null or missing reads "null"; busybox has no jq, and there they read claude-cage's lines
# (one object a line) with grep and sed: null reads "null", a missing field "".
if command -v jq >/dev/null 2>&1; then
	ev_lines() { jq -c --arg e "$2" 'select(.event == $e)' "$1" 2>/dev/null; }
	ev_field() { jq -r --arg e "$2" --arg f "$3" 'select(.event == $e) | .[$f] | tostring' "$1" 2>/dev/null | tail -n 1; }
else
	ev_lines() { grep -E "\"event\" *: *\"$2\"" "$1" 2>/dev/null; }
	ev_field() {
		ev_lines "$1" "$2" | tail -n 1 |
			sed -nE "s/.*\"$3\" *: *(\"[^\"]*\"|[^,}]*).*/\1/p" |
			sed -E 's/^"(.*)"$/\1/; s/[[:space:]]+$//'
	}
fi
ev_count() { ev_lines "$1" "$2" | wc -l | tr -d ' '; }
has_event() { [ "$(ev_count "$1" "$2")" -ge 1 ]; }
cage_id() { ev_field "$1" start cage; }
cage_dir() { ev_field "$1" start cgroup; }

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
assert_event() { has_event "$1" "$2" || fail "no '$2' event in $(basename "$1")"; }
assert_no_event() { [ "$(ev_count "$1" "$2")" = 0 ] || fail "unexpected '$2' event in $(basename "$1"): $(ev_lines "$1" "$2" | head -n 1)"; }

# check_exit FILE RC STATUS REASON: claude-cage returned STATUS, one start and one exit event,
# the exit event says STATUS and REASON and names the cage of the start event
check_exit() {
	local b
	b=$(basename "$1")
	[ -s "$1" ] || fail "$b: events file missing or empty (status $2; stderr: $(head -c 300 "${1%.events}.err" 2>/dev/null))"
	assert_eq "$2" "$3" "$(basename "$1" .events): claude-cage exit status"
	assert_eq "$(ev_count "$1" start)" 1 "$b: number of start events"
	assert_eq "$(ev_count "$1" exit)" 1 "$b: number of exit events"
	assert_eq "$(ev_field "$1" exit status)" "$3" "$b: exit event status"
	assert_eq "$(ev_field "$1" exit reason)" "$4" "$b: exit event reason"
	assert_eq "$(ev_field "$1" exit cage)" "$(cage_id "$1")" "$b: exit event cage"
}

# cage_lines FILE: claude-cage's own stderr lines
cage_lines() { grep '^claude-cage: ' "$1"; }
# check_one_line ERRFILE EVENTS [ERE]: exactly one "claude-cage: <cage-id>: " line (matching
# ERE, -i); the cage id is the start event's, any when there is no start event (a set-up that
# failed)
check_one_line() {
	local b n line id
	b=$(basename "$1")
	n=$(cage_lines "$1" | wc -l | tr -d ' ')
	[ "$n" = 1 ] || fail "$b: expected exactly one 'claude-cage: ' line, got $n: $(cage_lines "$1" | head -n 3)"
	line=$(cage_lines "$1")
	id=$(cage_id "$2")
	if [ -n "$id" ]; then
		case "$line" in
		"claude-cage: $id: "*) ;;
		*) fail "$b: the line does not start with 'claude-cage: $id: ': $line" ;;
		esac
	else
		printf '%s\n' "$line" | grep -qE '^claude-cage: [^:]+: ' ||
			fail "$b: the line does not start with 'claude-cage: <cage-id>: ': $line"
	fi
	[ -z "${3:-}" ] || printf '%s\n' "$line" | grep -qiE "$3" || fail "$b: the line does not match /$3/: $line"
}
check_no_line() {
	[ -z "$(cage_lines "$1")" ] || fail "$(basename "$1"): unexpected claude-cage line: $(cage_lines "$1" | head -n 1)"
}
# check_no_warning ERRFILE: no "claude-cage warning:" line
check_no_warning() {
	! grep -q '^claude-cage warning' "$1" || fail "$(basename "$1"): unexpected warning: $(grep '^claude-cage warning' "$1" | head -n 1)"
}
# check_no_state CAGE-ID...: no state file left for these cages (root's, or the user bot's)
check_no_state() {
	local c
	for c in "$@"; do
		[ ! -e "$STATE_DIR/$c.json" ] || fail "state file left behind: $STATE_DIR/$c.json"
		[ ! -e "/run/user/1000/claude-cage/$c.json" ] || fail "state file left behind: /run/user/1000/claude-cage/$c.json"
	done
}

# check_gone EVENTS [bot]: the cage dir from the start event is gone (and its bot dir, with "bot")
check_gone() {
	local d
	d=$(cage_dir "$1")
	[ -n "$d" ] || fail "$(basename "$1"): no cgroup in the start event"
	case "$d" in "$CG"/*) ;; *) fail "$(basename "$1"): start cgroup '$d' is not under $CG" ;; esac
	[ ! -e "$d" ] || fail "cage dir left behind: $d ($(find "$d" -type d | wc -l) dirs, procs: $(find "$d" -name cgroup.procs | xargs cat | tr '\n' ' '))"
	if [ "${2:-}" = bot ]; then
		[ ! -e "${d%/*}" ] || fail "bot dir left behind: ${d%/*} (subdirs: $(find "${d%/*}" -mindepth 1 -type d | tr '\n' ' '))"
	fi
}
# check_no_dir NAME: no cgroup dir called NAME anywhere
check_no_dir() {
	local l
	l=$(find "$CG" -mindepth 1 -type d -name "$1" | tr '\n' ' ')
	[ -z "$l" ] || fail "cgroup dir left: $l"
}

# alive PID: the process exists and is not a zombie
alive() {
	local s
	s=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
	[ -n "$s" ] && [ "$s" != Z ]
}
dead() { ! alive "$1"; }
# live_procs COMM: pids of live (not zombie) processes whose comm is COMM
live_procs() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = "$1" ] || continue
		alive "${p#/proc/}" && echo "${p#/proc/}"
	done
}
check_no_proc() {
	local l
	l=$(live_procs "$1" | tr '\n' ' ')
	# shellcheck disable=SC2086 # split into words, to count and cut them
	[ -z "$l" ] || fail "$(echo $l | wc -w) '$1' process(es) still alive: $(echo $l | cut -d' ' -f1-10)"
}

# --- waiting ---
# Every wait is bounded by the clock, in seconds, whatever each try costs (a jq under emulation
# is slow), and runs its condition anew on every try: the condition is a command (a function, or
# a command and its arguments), never a value the caller expanded once with $(...).
#
# poll SECONDS CMD...: run CMD (its output discarded) until it succeeds; status 1 when it has
# not after SECONDS
poll() {
	local end
	clock_s
	end=$((_clock + $1 + 1))
	shift
	until "$@" >/dev/null 2>&1; do
		clock_s
		[ "$_clock" -lt "$end" ] || return 1
		sleep "$POLL_TICK"
	done
}
# wait_for SECONDS WHAT CMD...: poll CMD; fail with "WHAT: not after SECONDS s"
wait_for() {
	local lim="$1" what="$2"
	shift 2
	poll "$lim" "$@" || fail "$what: not after $lim s"
}
# wait_event FILE EVENT SECONDS: poll the events file (written as things happen) for an event
wait_event() {
	poll "$3" has_event "$1" "$2" ||
		fail "no '$2' event in $(basename "$1") after $3 s (stderr: $(head -c 400 "${1%.events}.err" 2>/dev/null))"
}
# wait_match FILE ERE SECONDS: poll a file (one a payload writes when it is ready) for a line
wait_match() {
	poll "$3" grep -qE "$2" "$1" || fail "no /$2/ in $(basename "$1") after $3 s"
}
# wait_dead PID SECONDS: the process is gone or a zombie
wait_dead() {
	poll "$2" dead "$1" || fail "process $1 ($(cat "/proc/$1/comm" 2>/dev/null)) still alive after $2 s"
}

# --- the runner's loop ---
# run_scenarios SHELL DEFAULT-TIMEOUT: run each /vmtest/scenarios/*.sh in order, each in a new
# SHELL (a command: `sh`, `bash -u`) that sources /vmtest/scenario.sh, /vmtest/lib.sh, then the
# scenario, in its own work dir, with stdin /dev/null, killed after the "# vmtest-timeout: N"
# seconds the scenario states (DEFAULT-TIMEOUT when it states none). Each scenario is reported
# on the console:
#   VMTEST PASS <name> (<secs>s) | VMTEST FAIL <name>: <why> (<secs>s)
# with its files (the log first) when it failed or /vmtest/verbose exists. The runner defines
#   leftovers        what a scenario may leave behind, a line for each kind; nothing when clean
#   force_clean      removes it
#   failure_report   more lines for a failed scenario's report (kernel log, journal)
# Whatever a scenario leaves behind fails it and is cleaned up before the next; what is left
# after the last is one more failure (final-check). Ends with the line
#   vmtest: <pass> passed, <failed> failed, at <secs>s
# and leaves the counts in $pass and $failed.
run_scenarios() {
	local shell="$1" dflt="$2" f name lim work ff t0 st dur why left
	pass=0
	failed=0
	mkdir -p /tmp/vmtest
	for f in /vmtest/scenarios/*.sh; do
		[ -e "$f" ] || continue
		name=${f##*/}
		name=${name%.sh}
		lim=$(sed -n 's/^# vmtest-timeout: *\([0-9][0-9]*\).*/\1/p' "$f" | head -n 1)
		lim=${lim:-$dflt}
		work=/tmp/vmtest/$name
		mkdir -p "$work"
		chmod 755 "$work"
		ff=/tmp/vmtest/$name.fail
		t0=$(now)
		# shellcheck disable=SC2016,SC2086 # $0 is the scenario's; $shell is a command with options
		VMTEST_NAME=$name T=$work VMTEST_FAILFILE=$ff \
			timeout -s KILL "$lim" $shell -c '. /vmtest/scenario.sh; . /vmtest/lib.sh; . "$0"' "$f" \
			>"$work/.log" 2>&1 </dev/null
		st=$?
		dur=$(since "$t0")
		why=
		if [ -s "$ff" ]; then
			why=$(head -n 1 "$ff")
			[ -s "$work/.later" ] && why="$why; also: $(joined <"$work/.later")"
		elif [ -s "$work/.later" ]; then
			why=$(joined <"$work/.later")
		elif [ "$st" = 137 ] && awk -v d="$dur" -v l="$lim" 'BEGIN{exit !(d >= l - 1)}'; then
			why="timed out after ${lim}s"
		elif [ "$st" != 0 ]; then
			why="the scenario's shell ended with status $st"
		fi
		left=$(leftovers)
		if [ -n "$left" ]; then
			why="${why:+$why; }left behind: $(echo "$left" | joined)"
			echo "left behind after the scenario: $left" >>"$work/.log"
			force_clean
			left=$(leftovers)
			[ -n "$left" ] && echo "vmtest: could not clean up after $name: $(echo "$left" | joined)"
		fi
		if [ -z "$why" ]; then
			pass=$((pass + 1))
			echo "VMTEST PASS $name (${dur}s)"
			[ -e /vmtest/verbose ] && dump_dir "$work"
		else
			failed=$((failed + 1))
			echo "VMTEST FAIL $name: $why (${dur}s)"
			dump_dir "$work"
			failure_report "$dur"
		fi
		rm -rf "$work"
	done
	left=$(leftovers)
	if [ -n "$left" ]; then
		failed=$((failed + 1))
		echo "VMTEST FAIL final-check: left behind after the last scenario: $(echo "$left" | joined)"
	else
		echo "vmtest: nothing left behind"
	fi
	echo "vmtest: $pass passed, $failed failed, at $(now)s"
}
# dump_dir DIR: a scenario's files, indented, for its report (more of the log, which carries
# on_fail's report)
dump_dir() {
	local x n
	for x in "$1"/.log "$1"/*; do
		[ -f "$x" ] || continue
		n=4000
		[ "${x##*/}" = .log ] && n=16000
		echo "  --- ${x##*/} ($(wc -c <"$x") bytes)"
		head -c "$n" "$x" | awk '{ print "  | " $0 }'
	done
}

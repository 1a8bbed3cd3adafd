# Set-up that fails halfway leaves nothing behind. Under a parent cgroup whose
# cgroup.max.descendants or cgroup.max.depth has room for the bot's cgroup but not for the cage,
# or for the cage but not for its leaf `main`, the kernel refuses that mkdir with EAGAIN:
# `run --parent` exits 125 with one line naming the cgroup it could not create, starts nothing,
# and the parent has no child cgroup afterwards (the bot's cgroup it had just made is removed
# too). Control: a plain mkdir under the same limit shows the level the kernel refuses, and
# that what came before it was created (and so had to be removed).
# vmtest-timeout: 90

P=$CG/vm-setup-parent
mkdir "$P" || fail "mkdir $P"
trap 'for d in $(find "$P" -mindepth 1 -type d | sort -r); do rmdir "$d"; done; rmdir "$P"' EXIT

children() { find "$P" -mindepth 1 -type d | tr '\n' ' '; }

# refused FILE VALUE DEPTH: with FILE = VALUE in the parent, a mkdir at DEPTH below it (1 is a
# child of the parent) is the first the kernel refuses
refused() {
	echo "$2" >"$P/$1" || fail "cannot write $2 to $P/$1"
	_d=$P
	_i=1
	while [ $_i -lt "$3" ]; do
		_d=$_d/probe$_i
		mkdir "$_d" || fail "control, $1 = $2: mkdir at depth $_i was refused: $_d"
		_i=$((_i + 1))
	done
	if mkdir "$_d/probe$3" 2>"$T/probe.err"; then
		fail "control, $1 = $2: mkdir at depth $3 was allowed"
	fi
	grep -qi 'resource temporarily unavailable' "$T/probe.err" ||
		fail "control, $1 = $2: mkdir at depth $3 failed otherwise: $(cat "$T/probe.err")"
	for _x in $(find "$P" -mindepth 1 -type d | sort -r); do rmdir "$_x"; done
	[ -z "$(children)" ] || fail "control, $1 = $2: could not clean up: $(children)"
}

# check TAG FILE VALUE WHAT: with FILE = VALUE the cage (WHAT = cage) or its main (WHAT = main)
# cannot be created
check() {
	refused "$2" "$3" $([ "$4" = cage ] && echo 2 || echo 3)
	cage "$1" --parent /vm-setup-parent --name vm-setup -- sh -c 'echo ran'
	assert_eq "$rc" 125 "$1: claude-cage exit status with $2 = $3"
	case $4 in
	cage) re="failed to create cgroup $P/vm-setup/vm-setup-[0-9]+-[0-9]+: resource temporarily unavailable" ;;
	main) re="failed to create cgroup $P/vm-setup/vm-setup-[0-9]+-[0-9]+/main: resource temporarily unavailable" ;;
	esac
	check_one_line "$T/$1.err" "$T/$1.events" "$re"
	[ ! -s "$T/$1.out" ] || fail "$1: the program ran: $(cat "$T/$1.out")"
	assert_eq "$(ev_count "$T/$1.events" start)" 0 "$1: start events"
	[ -z "$(children)" ] || fail "$1: cgroups left in $P with $2 = $3: $(children)"
	ls "$STATE_DIR" 2>/dev/null | grep -q '^vm-setup-.*\.json$' && fail "$1: state file left: $(ls "$STATE_DIR")"
	echo max >"$P/$2" || fail "cannot reset $P/$2"
}

check desc-cage cgroup.max.descendants 1 cage
check desc-main cgroup.max.descendants 2 main
check depth-cage cgroup.max.depth 1 cage
check depth-main cgroup.max.depth 2 main

# With the limits back at max the same run works and leaves nothing.
cage ok --parent /vm-setup-parent --name vm-setup -- sh -c 'echo ran'
check_exit "$T/ok.events" "$rc" 0 exited
assert_eq "$(cat "$T/ok.out")" ran "ok: the program's output"
check_gone "$T/ok.events" bot
[ -z "$(children)" ] || fail "ok: cgroups left in $P: $(children)"

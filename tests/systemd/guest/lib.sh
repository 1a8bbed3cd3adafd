# The systemd suite's own helpers (bash, as root, inside the systemd test VM), sourced by every
# scenario after the shared library, /vmtest/scenario.sh (tests/lib/scenario.sh), which has the
# rest. Scenarios run with `set -u`.

# claude-cage.slice is below claude.slice (a dash in a slice name is a level: systemd.slice(5))
SLICE_CG=/claude.slice/claude-cage.slice
# bot_slice BOT: the slice of BOT's cages in claude-cage.slice (the bot's dashes escaped as
# systemd-escape does); bot_cg BOT: its cgroup
bot_slice() { echo "claude-cage-$(echo "$1" | sed 's/-/\\x2d/g').slice"; }
bot_cg() { echo "$SLICE_CG/$(bot_slice "$1")"; }
BOT_ENV=(env XDG_RUNTIME_DIR=/run/user/1000)

# as_bot CMD...: run CMD as the user bot (uid 1000), with its user manager reachable
as_bot() { runuser -u bot -- "${BOT_ENV[@]}" "$@"; }

scope_of() { echo "claude-cage-$(cage_id "$1").scope"; }

# unit_prop [--user] UNIT PROP: one property's value (--user: bot's user manager)
unit_prop() {
	if [ "$1" = --user ]; then
		as_bot systemctl --user show -P "$3" "$2"
	else
		systemctl show -P "$2" "$1"
	fi
}
# cage_units [--user]: the loaded cage scopes (claude-cage-*.scope), one name a line (a bot's
# slice, claude-cage-<bot>.slice, stays: it carries the bot's limits, like claude-cage.slice)
cage_units() {
	if [ "${1:-}" = --user ]; then
		as_bot systemctl --user list-units --all --no-legend --plain 'claude-cage-*.scope' | awk '{print $1}'
	else
		systemctl list-units --all --no-legend --plain 'claude-cage-*.scope' | awk '{print $1}'
	fi
}
no_cage_units() { [ -z "$(cage_units "$@")" ]; }
# check_no_units [--user]: no claude-cage-* unit is left (waits up to 10 s for the stop to settle)
check_no_units() {
	poll 10 no_cage_units "$@" || fail "claude-cage units left${1:+ ($1)}: $(cage_units "$@" | tr '\n' ' ')"
}

# capture NAME: stdin becomes /vmtest/captures/NAME (printed on the console at the end, and
# saved by tests/systemd/run as target/systemd/captured/NAME.txt)
capture() { cat >"/vmtest/captures/$1"; }

# ended_clean TAG [--user]: the run TAG ($rc, $T/TAG.*) exited 0, said no warning, and left no
# claude-cage unit (of bot's user manager with --user) and no state file
ended_clean() {
	local tag=$1
	shift
	cat "$T/$tag.err"
	check_exit "$T/$tag.events" "$rc" 0 exited
	later check_no_warning "$T/$tag.err"
	check_no_units "$@"
	later check_no_state "$(cage_id "$T/$tag.events")"
}

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

# --- the example bot (30-example-bot, 36-delegate-subgroup) ---
# example_bot_policy: /etc/claude-cage/example-bot.toml, the example bot's policy in the test VM
# (small limits)
example_bot_policy() {
	mkdir -p /etc/claude-cage
	cat >/etc/claude-cage/example-bot.toml <<'P'
# the example bot's policy in the test VM (small limits)
program = "claude"

[cage]
name = "example-bot"
parent = "auto"
require = ["memory", "pids"]

[memory]
high = "48M"
max = "64M"
swap-max = "0"

[pids]
max = 32

[events]
file = "/var/lib/example-bot/events.jsonl"
P
}
# example_bot_cleanup: stops example-bot.service and removes its unit, policy and state
example_bot_cleanup() {
	systemctl stop example-bot.service 2>/dev/null
	rm -f /etc/systemd/system/example-bot.service /etc/claude-cage/example-bot.toml
	rm -rf /var/lib/example-bot
	systemctl daemon-reload
	systemctl reset-failed example-bot.service 2>/dev/null
	return 0
}

# --- containers (70-crun, tests/systemd/podman) ---
# container_rootfs DIR: a container's root with the guest's /usr (bound in by the runtime: sh,
# claude-cage, the payloads) behind the usual links, and its users
container_rootfs() {
	mkdir -p "$1"
	(cd "$1" && mkdir -p proc dev sys tmp run work usr etc && ln -s usr/bin bin && ln -s usr/lib lib &&
		ln -s usr/lib64 lib64 && ln -s usr/sbin sbin)
	cp /etc/passwd /etc/group "$1/etc/"
}
# container_policy FILE BOT: a policy for cages inside a container's cgroup namespace (parent
# "/"): memory.max 100M, pids.max 64, oom-group
container_policy() {
	cat >"$1" <<P
[cage]
name = "$2"
parent = "/"
require = ["memory", "pids"]

[memory]
max = "100M"
swap-max = "0"
oom-group = true

[pids]
max = 64
P
}

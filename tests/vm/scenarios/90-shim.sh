# Shim mode (the Python SDK runs cli_path with Claude's own arguments): claude-cage invoked as
# "claude" runs the program in a cage, the policy from $CLAUDE_CAGE_POLICY; the program is
# "claude" found in PATH skipping the shim itself, or $CLAUDE_CAGE_PROGRAM where the policy sets
# program-from-env = true (as root, shim mode takes the program from the environment only then).
# vmtest-timeout: 60

mkdir -p "$T/shim" "$T/real"
ln -s /bin/claude-cage "$T/shim/claude"
cat >"$T/real/claude" <<'C'
#!/bin/sh
if [ "$1" = -v ]; then echo "2.1.0 (Claude Code)"; exit 0; fi
echo "args=$*"
echo "cage=$CLAUDE_CAGE_ID"
exit 3
C
chmod 755 "$T/real/claude"
cat >"$T/policy.toml" <<P
[cage]
name = "vm-shim"

[memory]
max = "64M"

[events]
file = "$T/shim.events"
P
export CLAUDE_CAGE_POLICY="$T/policy.toml"
PATH="$T/shim:$T/real:$PATH" claude --output-format stream-json --verbose >"$T/a.out" 2>"$T/a.err"
rc=$?
note "shim: status $rc"
check_exit "$T/shim.events" "$rc" 3 exited
grep -qx 'args=--output-format stream-json --verbose' "$T/a.out" || fail "the program did not get Claude's arguments: $(head -n 1 "$T/a.out")"
grep -qx "cage=$(cage_id "$T/shim.events")" "$T/a.out" || fail "the program did not run in the cage: $(sed -n 2p "$T/a.out")"
assert_eq "$(ev_field "$T/shim.events" start program)" "$T/real/claude" "start event program"
assert_eq "$(ev_field "$T/shim.events" start memory-max)" 67108864 "start limits memory-max"
check_gone "$T/shim.events" bot

# the SDK's preflight, `cli_path -v`, answered by the program
rm -f "$T/shim.events"
t0=$(now)
out=$(PATH="$T/shim:$T/real:$PATH" claude -v 2>"$T/v.err")
rc=$?
assert_eq "$rc" 0 "claude -v: status"
assert_eq "$out" "2.1.0 (Claude Code)" "claude -v: output"
awk -v a="$t0" -v b="$(now)" 'BEGIN{exit !(b - a < 2)}' || fail "claude -v took 2 s or more (the Python SDK's preflight timeout)"
check_gone "$T/shim.events" bot

# As root, CLAUDE_CAGE_PROGRAM is ignored (one warning) unless the policy opts in; then it wins
# over the search
rm -f "$T/shim.events"
CLAUDE_CAGE_PROGRAM=/bin/true PATH="$T/shim:$T/real:$PATH" claude --anything >"$T/p.out" 2>"$T/p.err"
rc=$?
check_exit "$T/shim.events" "$rc" 3 exited
assert_eq "$(ev_field "$T/shim.events" start program)" "$T/real/claude" "CLAUDE_CAGE_PROGRAM ignored: start event program"
grep -q '^claude-cage warning: ignored CLAUDE_CAGE_PROGRAM=/bin/true' "$T/p.err" || fail "no warning of the ignored CLAUDE_CAGE_PROGRAM: $(cat "$T/p.err")"
check_gone "$T/shim.events" bot
rm -f "$T/shim.events"
{ echo 'program-from-env = true'; cat "$T/policy.toml"; } >"$T/policy.new" && mv "$T/policy.new" "$T/policy.toml"
CLAUDE_CAGE_PROGRAM=/bin/true PATH="$T/shim:$T/real:$PATH" claude --anything >"$T/p.out" 2>"$T/p.err"
rc=$?
check_exit "$T/shim.events" "$rc" 0 exited
assert_eq "$(ev_field "$T/shim.events" start program)" /bin/true "CLAUDE_CAGE_PROGRAM: start event program"
check_gone "$T/shim.events" bot

# The policy search without CLAUDE_CAGE_POLICY: $XDG_CONFIG_HOME/claude-cage/policy.toml, else
# ~/.config/claude-cage/policy.toml, else /etc/claude-cage/policy.toml, else the built-in
# default. Each candidate names its own bot and events file, so the run shows which one it read.
unset CLAUDE_CAGE_POLICY
xdg=$T/xdg
home=$T/home
mkdir -p "$xdg/claude-cage" "$home/.config/claude-cage" /etc/claude-cage
for w in xdg home etc; do
	case $w in xdg) f=$xdg/claude-cage/policy.toml ;; home) f=$home/.config/claude-cage/policy.toml ;; etc) f=/etc/claude-cage/policy.toml ;; esac
	printf 'program-from-env = true\n[cage]\nname = "vm-shim-%s"\n[events]\nfile = "%s"\n' "$w" "$T/search-$w.events" >"$f"
done
# shim_from WHICH: one shim run, which must have read the candidate WHICH and been cleaned up
shim_from() {
	rm -f "$T"/search-*.events
	CLAUDE_CAGE_PROGRAM=/bin/true PATH="$T/shim:$T/real:$PATH" claude >"$T/s.out" 2>"$T/s.err"
	rc=$?
	check_exit "$T/search-$1.events" "$rc" 0 exited
	assert_eq "$(ev_field "$T/search-$1.events" start bot)" "vm-shim-$1" "policy search: the bot of the run"
	for o in xdg home etc; do
		[ "$o" = "$1" ] || [ ! -e "$T/search-$o.events" ] || fail "policy search: the $o policy was read too"
	done
	check_gone "$T/search-$1.events" bot
}
XDG_CONFIG_HOME=$xdg HOME=$home shim_from xdg
# an empty XDG_CONFIG_HOME counts as unset
XDG_CONFIG_HOME= HOME=$home shim_from home
rm "$xdg/claude-cage/policy.toml"
XDG_CONFIG_HOME=$xdg HOME=$home shim_from etc
rm "$home/.config/claude-cage/policy.toml"
XDG_CONFIG_HOME= HOME=$home shim_from etc
rm /etc/claude-cage/policy.toml
rmdir /etc/claude-cage
# no file anywhere: the built-in default (no events file; the cage is named after the program),
# which as root runs its own program, "claude", not CLAUDE_CAGE_PROGRAM
rm -f "$T"/search-*.events
XDG_CONFIG_HOME=$xdg HOME=$home CLAUDE_CAGE_PROGRAM=/bin/true PATH="$T/shim:$T/real:$PATH" claude >"$T/d.out" 2>"$T/d.err"
rc=$?
assert_eq "$rc" 3 "policy search, built-in default: status"
grep -qx 'args=' "$T/d.out" || fail "policy search, built-in default: not the policy's program: $(cat "$T/d.out")"
[ -z "$(ls "$T"/search-*.events 2>/dev/null)" ] || fail "policy search: a removed policy was read: $(ls "$T"/search-*.events)"

# No program to be found (only the shim itself in PATH): 127, one line naming what was searched,
# and nothing created
rm -f "$T/shim.events"
CLAUDE_CAGE_POLICY="$T/policy.toml" PATH="$T/shim" claude -v >"$T/nf.out" 2>"$T/nf.err"
rc=$?
assert_eq "$rc" 127 "shim without a program: status"
assert_eq "$(wc -l <"$T/nf.err")" 1 "shim without a program: lines on stderr"
grep -qF "claude: not found (searched PATH=$T/shim)" "$T/nf.err" || fail "shim without a program: $(cat "$T/nf.err")"
[ ! -s "$T/shim.events" ] || [ "$(ev_count "$T/shim.events" start)" = 0 ] || fail "shim without a program: a cage was started"
check_no_dir vm-shim

# Shim mode (the Python SDK runs cli_path with Claude's own arguments): claude-cage invoked as
# "claude" runs the program in a cage, the policy from $CLAUDE_CAGE_POLICY; the program is
# "claude" found in PATH skipping the shim itself, or $CLAUDE_CAGE_PROGRAM.
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

# CLAUDE_CAGE_PROGRAM wins over the search
rm -f "$T/shim.events"
CLAUDE_CAGE_PROGRAM=/bin/true PATH="$T/shim:$T/real:$PATH" claude --anything >"$T/p.out" 2>"$T/p.err"
rc=$?
check_exit "$T/shim.events" "$rc" 0 exited
assert_eq "$(ev_field "$T/shim.events" start program)" /bin/true "CLAUDE_CAGE_PROGRAM: start event program"
check_gone "$T/shim.events" bot

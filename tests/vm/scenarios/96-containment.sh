# Containment: a child running as another user cannot raise its own limits (and its
# over-allocation is OOM-killed); with [cage] cgroupns on a cgroup2 mounted with nsdelegate, a
# root child cannot move itself out of its cage, which it can without the namespace.
# vmtest-timeout: 120

cat >"$T/user.toml" <<'P'
[cage]
name = "vm-user"
user = "65534"
group = "65534"

[memory]
max = "48M"
swap-max = "0"
P
cage user --policy "$T/user.toml" -- sh -c '
id -u
grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status
if echo max > "$CLAUDE_CAGE_CGROUP/memory.max" 2>/dev/null; then echo raised; else echo refused; fi
exec alloc 100'
check_exit "$T/user.events" "$rc" 137 oom-killed
grep -qx 65534 "$T/user.out" || fail "the child did not run as uid 65534: $(head -n 1 "$T/user.out")"
grep -q 'CapEff:.*0000000000000000' "$T/user.out" || fail "the child kept capabilities: $(cat "$T/user.out")"
grep -q 'CapBnd:.*0000000000000000' "$T/user.out" || fail "the bounding set was not cleared"
grep -q 'NoNewPrivs:.*1' "$T/user.out" || fail "no_new_privs is not set"
grep -qx refused "$T/user.out" || fail "the child raised its own memory.max"
assert_eq "$(ev_field "$T/user.events" start memory-max)" 50331648 "memory-max"
check_gone "$T/user.events" bot

# The escape: the shell writes its own pid into the root cgroup's cgroup.procs.
escape='grep ^0:: /proc/self/cgroup
if echo $$ > /sys/fs/cgroup/cgroup.procs 2>/dev/null; then echo escaped; else echo contained; fi
grep ^0:: /proc/self/cgroup'

# Negative control: without a namespace a root child leaves its cage.
cage open --name vm-open -- sh -c "$escape"
check_exit "$T/open.events" "$rc" 0 exited
grep -qx escaped "$T/open.out" || fail "negative control: the escape did not work without a namespace: $(cat "$T/open.out")"
check_gone "$T/open.events" bot

cat >"$T/ns.toml" <<'P'
[cage]
name = "vm-ns"
cgroupns = true
P
cage ns --policy "$T/ns.toml" -- sh -c "$escape"
check_exit "$T/ns.events" "$rc" 0 exited
assert_eq "$(sed -n 1p "$T/ns.out")" "0::/main" "cgroup as seen in the namespace"
grep -qx contained "$T/ns.out" || fail "the child left its cage despite the namespace: $(cat "$T/ns.out")"
assert_eq "$(sed -n 3p "$T/ns.out")" "0::/main" "cgroup after the attempt"
grep -q nsdelegate "$T/ns.err" && fail "a warning about nsdelegate although the mount has it: $(cat "$T/ns.err")"
check_gone "$T/ns.events" bot

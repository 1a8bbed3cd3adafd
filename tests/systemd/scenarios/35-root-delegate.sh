# A root service with Delegate= (no User=) on systemd 252, started through `claude-cage
# subgroup`: backend = "auto" recognises the delegated service cgroup (systemd marks it with the
# trusted.delegate xattr) and puts the cage below it, not in claude-cage.slice. A custom subgroup
# name (--name) works too. Nothing is left after the unit ends.
# vmtest-timeout: 60

cat >"$T/p.toml" <<'P'
[cage]
name = "root-deleg"

[memory]
max = "64M"

[pids]
max = 16
P
systemd-run --quiet --wait --pipe --collect --unit cc-root-deleg -p Delegate=yes \
	/usr/bin/claude-cage subgroup --name sup -- \
	/usr/bin/claude-cage run --policy "$T/p.toml" -- sh -c 'cat /proc/self/cgroup; cat "$CLAUDE_CAGE_CGROUP/pids.max"' \
	>"$T/out" 2>"$T/err"
rc=$?
cat "$T/out" "$T/err"
assert_eq "$rc" 0 "systemd-run ... claude-cage subgroup -- claude-cage run: status"
grep -qE '^0::/system.slice/cc-root-deleg.service/root-deleg/root-deleg-[0-9]+-1/main$' "$T/out" ||
	fail "the child did not run below the delegated service: $(head -n 1 "$T/out")"
assert_eq "$(sed -n 2p "$T/out")" 16 "pids.max of the cage"
[ ! -s "$T/err" ] || fail "unexpected stderr: $(head -n 2 "$T/err")"
[ -z "$(cage_units)" ] || fail "the systemd backend was used: $(cage_units)"
wait_for 10 "the transient service is gone" test ! -e "$CG/system.slice/cc-root-deleg.service"

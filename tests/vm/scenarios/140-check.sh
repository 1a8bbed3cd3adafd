# `claude-cage check`: exit 0 on this VM (root cgroup, memory/pids/cpu) with the default policy
# and with a realistic bot policy; exit 1 with the advice on stdout for three broken set-ups:
# (a) claude-cage in a service cgroup whose parent is not delegated, (b) a required controller
# (pids) that the parent's parent does not enable, (c) a bad policy (file:line: key: message).
# A `run` in set-ups (a) and (b) fails the same way (125) and creates nothing.
# vmtest-timeout: 90

# the good set-up
op good check
cat "$T/good.out" "$T/good.err"
assert_eq "$rc" 0 "check (default policy): status"
grep -q '^PROBLEM' "$T/good.out" && fail "check (default policy): $(grep -A1 '^PROBLEM' "$T/good.out" | head -n 2)"
grep -qxF 'OK       policy <built-in default policy> is valid' "$T/good.out" || fail "check: no 'policy is valid' line"
grep -qxF 'OK       cgroup v2 is mounted at /sys/fs/cgroup; claude-cage runs in cgroup /' "$T/good.out" || fail "check: no cgroup v2 line"
grep -q '^OK       parent = "auto" puts cages in .*(/sys/fs/cgroup/<program name>)$' "$T/good.out" || fail "check: no placement line"
grep -qE '^OK       controllers available to cages: memory pids cpu$' "$T/good.out" || fail "check: controllers line: $(grep controllers "$T/good.out")"
for f in 'clone3 with CLONE_INTO_CGROUP' cgroup.kill memory.peak 'pressure stall information (PSI)'; do
	grep -qxF "OK       kernel $(uname -r) supports $f" "$T/good.out" || fail "check: no 'kernel supports $f' line: $(grep kernel "$T/good.out" | tr '\n' ';')"
done
assert_eq "$(tail -n 1 "$T/good.out")" "claude-cage check: a run with this policy enforces everything it requires" "check: last line"

# a realistic bot policy (policies/example-bot.toml)
cat >"$T/example-bot.toml" <<'P'
program = "claude"

[cage]
name = "example-bot"
parent = "auto"
require = ["memory", "pids"]

[bot]
memory-max = "6G"
pids-max = 2048

[memory]
high = "3G"
max = "4G"
swap-max = "0"
oom-group = true

[pids]
max = 512

[cpu]
max = "150%"
weight = 100

[lifetime]
max-runtime = "4h"
stdin-eof-grace = "10s"
term-grace = "3s"
parent-death = "kill"

[events]
file = "/var/log/claude-cage/example-bot.jsonl"
P
op example check --policy "$T/example-bot.toml"
cat "$T/example.out" "$T/example.err"
assert_eq "$rc" 0 "check (example-bot policy): status"
grep -qE '^OK       controllers available to cages: memory pids cpu$' "$T/example.out" || fail "check example-bot: controllers line: $(grep controllers "$T/example.out")"
grep -qF 'OK       bot limits: memory.max 6442450944 (6.0 GiB), pids.max 2048' "$T/example.out" || fail "check example-bot: no bot limits line"
check_no_dir example-bot

# (a) no delegation: claude-cage in /svc.service/sub, its parent /svc.service is not delegated
# (and has the memory controller enabled for sub, so that check finds memory.peak there)
mkdir "$CG/svc.service" "$CG/svc.service/sub"
echo +memory >"$CG/svc.service/cgroup.subtree_control"
sh -c 'echo $$ >"$1/cgroup.procs" && exec claude-cage check' _ "$CG/svc.service/sub" >"$T/nodeleg.out" 2>"$T/nodeleg.err"
rc=$?
sh -c 'echo $$ >"$1/cgroup.procs" && exec claude-cage run --name vm-check-a --events "$2" -- true' _ "$CG/svc.service/sub" "$T/nodeleg-run.events" >"$T/nodeleg-run.out" 2>"$T/nodeleg-run.err"
rrc=$?
rmdir "$CG/svc.service/sub" "$CG/svc.service" || fail "could not remove $CG/svc.service: $(cat "$CG/svc.service/sub/cgroup.procs" 2>/dev/null)"
cat "$T/nodeleg.out" "$T/nodeleg.err"
assert_eq "$rc" 1 "check without delegation: status"
grep -qxF 'OK       cgroup v2 is mounted at /sys/fs/cgroup; claude-cage runs in cgroup /svc.service/sub' "$T/nodeleg.out" || fail "check (a): own cgroup line"
grep -qF 'PROBLEM  placement: cannot place cages automatically: claude-cage runs in cgroup /svc.service/sub, and its parent /svc.service is not delegated to it.' "$T/nodeleg.out" ||
	fail "check (a): no placement PROBLEM: $(grep -A1 PROBLEM "$T/nodeleg.out" | head -n 2)"
grep -A1 '^PROBLEM  placement' "$T/nodeleg.out" | grep -E '^         fix: .*Delegate=' | grep -qF 'svc.service' ||
	fail "check (a): the fix does not name Delegate= for svc.service: $(grep -A1 '^PROBLEM' "$T/nodeleg.out" | tail -n 1)"
assert_eq "$(grep -c '^PROBLEM' "$T/nodeleg.out")" 1 "check (a): PROBLEM lines"
# the kernel's features, read off the files of claude-cage's own cgroup there
grep -qxF "OK       kernel $(uname -r) supports cgroup.kill" "$T/nodeleg.out" || fail "check (a): no cgroup.kill line: $(grep kernel "$T/nodeleg.out" | tr '\n' ';')"
grep -qxF "OK       kernel $(uname -r) supports memory.peak" "$T/nodeleg.out" || fail "check (a): no memory.peak line: $(grep kernel "$T/nodeleg.out" | tr '\n' ';')"
assert_eq "$(tail -n 1 "$T/nodeleg.out")" "claude-cage check: 1 problem" "check (a): last line"
cat "$T/nodeleg-run.err"
assert_eq "$rrc" 125 "run without delegation: status"
grep -q '^claude-cage: cannot place cages automatically' "$T/nodeleg-run.err" || fail "run (a): stderr: $(cat "$T/nodeleg-run.err")"
check_no_dir vm-check-a

# (b) a required controller that is not delegated: /outer enables only memory for /outer/inner
before=$(cat "$CG/cgroup.subtree_control")
echo "+memory +pids" >"$CG/cgroup.subtree_control" || fail "could not enable memory and pids in the root"
mkdir "$CG/outer" "$CG/outer/inner"
echo +memory >"$CG/outer/cgroup.subtree_control" || fail "could not enable memory in /outer"
note "root subtree_control: $(cat "$CG/cgroup.subtree_control"); /outer/inner controllers: $(cat "$CG/outer/inner/cgroup.controllers")"
cat >"$T/nopids.toml" <<'P'
[cage]
name = "vm-check-b"
parent = "/outer/inner"
require = ["pids"]

[pids]
max = 100
P
op nopids check --policy "$T/nopids.toml"
crc=$rc
cage nopids-run --policy "$T/nopids.toml" -- true
leftb=$(find "$CG/outer" -mindepth 1 -type d | grep -vx "$CG/outer/inner")
rmdir "$CG/outer/inner" "$CG/outer" || fail "could not remove $CG/outer"
for c in memory pids; do
	case " $before " in *" $c "*) ;; *) echo "-$c" >"$CG/cgroup.subtree_control" 2>/dev/null ;; esac
done
cat "$T/nopids.out" "$T/nopids.err" "$T/nopids-run.err"
assert_eq "$crc" 1 "check (b): status"
assert_eq "$(grep -c '^PROBLEM' "$T/nopids.out")" 1 "check (b): PROBLEM lines"
assert_eq "$rc" 125 "run (b): status"
[ -z "$leftb" ] || fail "run (b) created $leftb"
grep -qxF 'OK       the policy'"'"'s parent puts cages in /outer/inner/vm-check-b/ (/sys/fs/cgroup/outer/inner/vm-check-b)' "$T/nopids.out" || fail "check (b): placement line"
grep -qE '^PROBLEM  the pids controller is required by the policy but cannot be used: .*not delegated to /outer/inner' "$T/nopids.out" ||
	fail "check (b): no pids PROBLEM: $(grep -A1 '^PROBLEM' "$T/nopids.out" | head -n 2)"
grep -qF 'claude-cage: the pids controller is required by the policy but cannot be used' "$T/nopids-run.err" || fail "run (b): stderr: $(cat "$T/nopids-run.err")"

# (c) bad policies: the PROBLEM names file:line: key
cat >"$T/bad.toml" <<'P'
[cage]
name = "vm-check-c"

[memory]
max = "lots"
P
op bad check --policy "$T/bad.toml"
cat "$T/bad.out" "$T/bad.err"
assert_eq "$rc" 1 "check (c, bad size): status"
grep -qF "PROBLEM  policy: $T/bad.toml:5: memory.max: " "$T/bad.out" || fail "check (c): no file:line: key PROBLEM: $(grep '^PROBLEM' "$T/bad.out")"
grep -A1 '^PROBLEM  policy' "$T/bad.out" | grep -qF '         fix: correct the policy file (docs/policy.md lists every key)' || fail "check (c): no fix line"
cat >"$T/bad2.toml" <<'P'
[cage]
name = "vm-check-c"

[memory]
max = "4G"
high = "5G"
P
op bad2 check --policy "$T/bad2.toml"
cat "$T/bad2.out"
assert_eq "$rc" 1 "check (c, high above max): status"
grep -qF "PROBLEM  policy: $T/bad2.toml:6: memory.high: " "$T/bad2.out" || fail "check (c2): no file:line: key PROBLEM: $(grep '^PROBLEM' "$T/bad2.out")"
check_no_dir vm-check-c
check_no_dir outer
check_no_dir svc.service

# The child nests its own cgroups and enables controllers in them: tools/ beside main with
# +memory +pids for its children, leaves tools/a (memory.max 20M, pids.max 10) and tools/b/c
# (tools/b enables +pids), processes in the leaves (a sleeper and a stopped one), and a hog in
# tools/a that tools/a's own memory.max OOM-kills. When the child exits, every process is
# killed and every cgroup removed, bottom-up.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-nestctl"

[memory]
max = "200M"
swap-max = "0"

[pids]
max = 200
P
cat >"$T/child.sh" <<'C'
set -e
c=$CLAUDE_CAGE_CGROUP
mkdir "$c/tools" "$c/tools/a" "$c/tools/b" "$c/tools/b/c"
echo "+memory +pids" >"$c/tools/cgroup.subtree_control"
echo "+pids" >"$c/tools/b/cgroup.subtree_control"
echo 20M >"$c/tools/a/memory.max"
echo 10 >"$c/tools/a/pids.max"
echo 0 >"$c/tools/a/memory.swap.max" 2>/dev/null || true
echo "a-controllers=$(cat "$c/tools/a/cgroup.controllers")"
echo "c-controllers=$(cat "$c/tools/b/c/cgroup.controllers")"
# each sleeper: a shell that moves itself into a leaf and execs sleep ($! is that process)
sh -c 'echo $$ >"$0/cgroup.procs" && exec sleep 1000' "$c/tools/a" &
sh -c 'echo $$ >"$0/cgroup.procs" && exec sleep 1000' "$c/tools/b/c" &
sh -c 'echo $$ >"$0/cgroup.procs" && exec sleep 1000' "$c/tools/b/c" &
last=$!
i=0
until [ "$(cat "$c/tools/a/cgroup.procs" "$c/tools/b/c/cgroup.procs" | wc -l)" = 3 ]; do
	i=$((i + 1)); [ $i -le 200 ] || exit 12; sleep 0.05
done
kill -STOP $last
set +e
sh -c 'echo $$ >"$0/cgroup.procs" && exec alloc 100' "$c/tools/a"
echo "hog=$?"
echo "a-oom_kill=$(grep oom_kill "$c/tools/a/memory.events" | head -n 1)"
echo "dirs=$(find "$c" -mindepth 1 -type d | wc -l)"
exit 0
C
cage nest --policy "$T/policy.toml" -- sh "$T/child.sh"
cat "$T/nest.out" "$T/nest.err"
check_exit "$T/nest.events" "$rc" 0 exited
grep -qx 'a-controllers=memory pids' "$T/nest.out" || fail "tools/a did not get memory and pids: $(grep a-controllers "$T/nest.out")"
grep -qx 'c-controllers=pids' "$T/nest.out" || fail "tools/b/c did not get pids: $(grep c-controllers "$T/nest.out")"
grep -qx 'hog=137' "$T/nest.out" || fail "the hog in tools/a (memory.max 20M) was not OOM-killed: $(grep hog= "$T/nest.out")"
grep -qx 'a-oom_kill=oom_kill 1' "$T/nest.out" || fail "tools/a's memory.events: $(grep a-oom_kill "$T/nest.out")"
grep -qx 'dirs=5' "$T/nest.out" || fail "expected 5 cgroups in the cage (main tools a b c): $(grep dirs= "$T/nest.out")"
assert_ge "$(ev_field "$T/nest.events" exit oom-kills)" 1 "exit event oom-kills (the hog, counted hierarchically)"
assert_eq "$(ev_field "$T/nest.events" exit leftover)" 3 "exit event leftover (the three sleepers)"
check_gone "$T/nest.events" bot
check_no_proc sleep
check_no_proc alloc

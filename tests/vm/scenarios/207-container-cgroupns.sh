# Running in a container whose cgroup namespace root holds processes. The `container` payload
# makes what a runtime makes (busybox's unshare has no -C): a cgroup namespace rooted at
# /vm-ctr, which holds the container's shell, and a fresh cgroup2 mount of it at
# /sys/fs/cgroup. Inside, claude-cage sees itself in the root ("0::/") of a mount whose root is
# not the real root, so the kernel's no-internal-process rule applies to it: `run` refuses with
# exit 125 and one line naming the rule and the fix, and creates no cgroup and no event. After
# the fix it names (the shell moves into a leaf, /init), a run with `--parent /` works and its
# cage is removed. Nothing is left in the namespace's tree but /init.
# vmtest-timeout: 90

echo "+memory +pids" >"$CG/cgroup.subtree_control" || fail "cannot enable memory and pids in the root"
C=$CG/vm-ctr
mkdir "$C" || fail "mkdir $C"
cleanup() {
	rmdir "$C/init" "$C" 2>/dev/null
}
trap cleanup EXIT

cat >"$T/inner.sh" <<'I'
T=$1
echo "cgroup=$(cat /proc/self/cgroup)"
echo "mount-root=$(grep ' /sys/fs/cgroup ' /proc/self/mountinfo | cut -d' ' -f4)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
claude-cage run --name vm-ctr-in --events "$T/in.events" -- true >"$T/in.out" 2>"$T/in.err"
echo "run=$?"
echo "dirs-after-refusal=$(find /sys/fs/cgroup -mindepth 1 -type d | wc -l)"
claude-cage check >"$T/check.out" 2>&1
echo "check=$?"
# the fix the refusal names: the container's own processes move into a leaf
mkdir /sys/fs/cgroup/init
echo $$ >/sys/fs/cgroup/init/cgroup.procs
echo "root-procs-after-move=$(cat /sys/fs/cgroup/cgroup.procs | wc -l)"
claude-cage run --parent / --name vm-ctr-in --events "$T/ok.events" -- sh -c 'cat /proc/self/cgroup' >"$T/ok.out" 2>"$T/ok.err"
echo "run-after-fix=$?"
echo "dirs-at-end=$(find /sys/fs/cgroup -mindepth 1 -type d | tr '\n' ' ')"
I
sh -c 'echo $$ >"$0/cgroup.procs" && exec container sh "$1" "$2"' "$C" "$T/inner.sh" "$T" >"$T/inner.out" 2>&1
note "container shell: status $?"
cat "$T/inner.out"
note "refused run:"
cat "$T/in.err"
note "check:"
cat "$T/check.out"

grep -qx 'cgroup=0::/' "$T/inner.out" || fail "the container shell does not see itself at its namespace's root: $(grep cgroup= "$T/inner.out")"
grep -qx 'mount-root=/' "$T/inner.out" || fail "the container's cgroup2 mount is not rooted at its namespace: $(grep mount-root= "$T/inner.out")"
grep -qx 'run=125' "$T/inner.out" || fail "run in a namespace root that holds processes: expected 125, got $(grep '^run=' "$T/inner.out")"
n=$(grep -c '^claude-cage: ' "$T/in.err")
assert_eq "$n" 1 "refused run: 'claude-cage: ' lines"
grep -q "no-internal-process rule" "$T/in.err" || fail "refused run: the line does not name the no-internal-process rule: $(cat "$T/in.err")"
grep -q "move those processes into a child cgroup" "$T/in.err" || fail "refused run: the line does not say how to fix it: $(cat "$T/in.err")"
grep -qx 'dirs-after-refusal=0' "$T/inner.out" || fail "the refused run left cgroups: $(grep dirs-after-refusal "$T/inner.out")"
[ ! -s "$T/in.events" ] || fail "the refused run wrote events: $(cat "$T/in.events")"
grep -qx 'run-after-fix=0' "$T/inner.out" || fail "run after moving the shell into a leaf: $(grep run-after-fix "$T/inner.out"): $(cat "$T/ok.err")"
grep -qE '^0::/vm-ctr-in/vm-ctr-in-[0-9]+-1/main$' "$T/ok.out" || fail "the caged child's cgroup in the container: $(cat "$T/ok.out")"
check_exit "$T/ok.events" 0 0 exited
grep -qx 'dirs-at-end=/sys/fs/cgroup/init ' "$T/inner.out" || fail "cgroups left in the container: $(grep dirs-at-end "$T/inner.out")"
check_no_dir 'vm-ctr-in*'
l=$(ls "$STATE_DIR" 2>/dev/null | grep 'vm-ctr-in.*\.json$')
[ -z "$l" ] || fail "state files left: $l"
rmdir "$C/init" "$C" || fail "cannot remove $C: $(find "$C" -mindepth 1 -type d | tr '\n' ' ') procs: $(cat "$C/cgroup.procs" | tr '\n' ' ')"

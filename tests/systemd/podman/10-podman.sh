# claude-cage in a Podman container (Debian's Podman; the guest's /usr bound in, no image):
# by default Podman mounts the container's cgroup read-only, and the entry point
# `claude-cage subgroup` refuses (125) with one line naming the setting; with --systemd=always
# (no privilege) the cgroup is the container's own and writable: a cage whose child allocates
# past its 100M is OOM-killed alone (137, oom-limit cage) while a sibling cage lives on until
# `kill`, the container ends normally, and nothing but `supervisor` is left in its cgroup.
# vmtest-timeout: 240

command -v podman >/dev/null || fail "podman is not installed in the image"
R=$T/rootfs
mkdir -p "$T/work"
chmod 755 "$T/work"
container_rootfs "$R"
cleanup() {
	podman rm -af >/dev/null 2>&1
	rmdir /sys/fs/cgroup/libpod_parent/* /sys/fs/cgroup/libpod_parent 2>/dev/null
	return 0
}
trap cleanup EXIT
on_fail() {
	for f in "$T"/*.out "$T"/work/*.err "$T"/work/*.out "$T"/work/results; do
		[ -s "$f" ] && echo "--- $f" && head -c 2000 "$f"
	done
}
container_policy "$T/work/policy.toml" pod
cat >"$T/work/in.sh" <<'I'
W=/work
claude-cage run --policy $W/policy.toml --events $W/sib.events -- alloc 20 600 >$W/sib.out 2>$W/sib.err &
sib=$!
i=0; until grep -q touched $W/sib.out 2>/dev/null || [ $i -ge 300 ]; do i=$((i+1)); sleep 0.1; done
claude-cage run --policy $W/policy.toml --events $W/hog.events -- alloc 200 >$W/hog.out 2>$W/hog.err
echo "hog=$?" >>$W/results
claude-cage kill --name pod >$W/kill.out 2>&1
echo "kill=$?" >>$W/results
wait $sib
echo "sib=$?" >>$W/results
echo "left=$(cd /sys/fs/cgroup && find . -mindepth 1 -type d | sort | tr '\n' ' ')" >>$W/results
I
# pod_run TAG FLAGS...: the container, its entry point behind claude-cage subgroup; status in rc
pod_run() {
	local tag=$1
	shift
	timeout 120 podman --log-level=error run --rm --network=none --cgroupns=private "$@" --memory 300m --pids-limit 256 \
		-v /usr:/usr:ro -v "$T/work:/work" --rootfs "$R" \
		/usr/bin/claude-cage subgroup -- /bin/sh /work/in.sh >"$T/$tag.out" 2>&1
	rc=$?
	note "podman run $*: status $rc"
}

# --- the default: a read-only cgroup, refused with the setting to change
pod_run ro
assert_eq "$rc" 125 "the container whose cgroup is read-only"
grep -qx 'claude-cage: the cgroup2 mount at /sys/fs/cgroup is read-only, .*Podman: --systemd=always.*' "$T/ro.out" ||
	fail "the refusal: $(joined <"$T/ro.out")"
[ ! -e "$T/work/results" ] || fail "the container's script ran: $(joined <"$T/work/results")"

# --- --systemd=always: the container's own cgroup, writable, no privilege
pod_run sd --systemd=always
assert_eq "$rc" 0 "the container with --systemd=always (it survived its cage's OOM kill)"
res() { sed -n "s/^$1=//p" "$T/work/results" | tail -n 1; }
assert_eq "$(res hog)" 137 "the 200 MB allocation's run"
check_exit "$T/work/hog.events" 137 137 oom-killed
assert_eq "$(ev_field "$T/work/hog.events" exit oom-limit)" cage "the hog's oom-limit"
check_one_line "$T/work/hog.err" "$T/work/hog.events" 'killed by the kernel OOM killer at memory\.max 100\.0 MiB'
assert_eq "$(res kill)" 0 "kill --name pod in the container"
check_exit "$T/work/sib.events" "$(res sib)" 137 killed
assert_eq "$(res left)" "./supervisor " "cgroups left in the container's namespace"

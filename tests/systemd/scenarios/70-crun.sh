# claude-cage inside an OCI container started by a real runtime (crun, Debian's package), with a
# private cgroup namespace and its cgroup mounted writable, under the container's own limits
# (memory 300M, 256 pids). The container starts `claude-cage subgroup -- sh inner.sh`, as a
# container's entry point should (its processes leave the namespace's root cgroup). Inside:
# `check` passes; a cage of 100M whose child allocates 200 MB is OOM-killed alone (137,
# oom-limit cage) while a sibling cage holding 20 MB lives on and the container survives; `ps`
# lists the sibling, `kill` ends it; a cage left by a SIGKILLed supervisor (a setsid'd
# grandchild in it) is found by `ps` and removed by `reap`; nothing but `supervisor` is left in
# the container's cgroup. The controls: the same 200 MB allocation without claude-cage in a
# container of 150M takes the whole container (its init is OOM-killed); with the cgroup mounted
# read-only (the runtimes' default), `run` exits 125 with one line naming the setting, and
# `check` says the same.
# vmtest-timeout: 180

command -v crun >/dev/null || fail "crun is not installed in the image"
# (--no-pivot: the guest's root is its initramfs, where pivot_root(2) is refused)
B=$T/bundle
mkdir -p "$T/work"
chmod 755 "$T/work"
container_rootfs "$B/rootfs"
cleanup() {
	for c in cc-ok cc-ro cc-bare; do crun delete -f "$c" >/dev/null 2>&1; done
	rmdir /sys/fs/cgroup/cagetest 2>/dev/null
	return 0
}
trap cleanup EXIT
on_fail() {
	for f in "$T"/work/*.err "$T"/work/*.out; do
		[ -s "$f" ] && echo "--- $f" && head -c 2000 "$f"
	done
}

# The cgroup mount and the namespaces of the OCI recipe in docs/containers.md, as installed.
doc=/usr/share/doc/claude-cage/docs/containers.md
recipe=$(awk '/^```json$/ { on = 1; next } /^```$/ { on = 0 } on' "$doc")
echo "$recipe" | jq -e '.mounts[0].destination == "/sys/fs/cgroup" and (.linux.namespaces | any(.type == "cgroup"))' >/dev/null ||
	fail "no OCI recipe with a cgroup mount and a cgroup namespace in $doc"
assert_eq "$(echo "$recipe" | jq -c '.process.args[0:3]')" '["/usr/bin/claude-cage","subgroup","--"]' "the recipe's entry point"
# bundle NAME CGROUP-MODE MEMORY ARGS-JSON: $B/config.json for the container NAME; CGROUP-MODE
# rw is the recipe's cgroup mount, ro the same read-only
bundle() {
	local name=$1
	shift
	(cd "$B" && rm -f config.json && crun spec) || fail "crun spec failed"
	jq --arg name "$name" --arg mode "$1" --argjson mem "$2" --argjson args "$3" --arg work "$T/work" --argjson recipe "$recipe" '
		.process.terminal = false
		| .process.args = $args
		| .process.capabilities |= with_entries(.value = ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_MKNOD","CAP_AUDIT_WRITE","CAP_SETFCAP"])
		| .mounts |= map(if .destination == "/sys/fs/cgroup" then $recipe.mounts[0] else . end)
		| .mounts |= map(if .destination == "/sys/fs/cgroup" and $mode == "ro" then .options |= map(if . == "rw" then "ro" else . end) else . end)
		| .mounts += [
			{"destination":"/usr","type":"bind","source":"/usr","options":["rbind","ro"]},
			{"destination":"/work","type":"bind","source":$work,"options":["rbind","rw"]},
			{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","mode=1777"]},
			{"destination":"/run","type":"tmpfs","source":"tmpfs","options":["nosuid","nodev","mode=755"]}]
		| .linux.namespaces = $recipe.linux.namespaces
		| .linux.cgroupsPath = "/cagetest/\($name)"
		| .linux.resources = {"memory": {"limit": $mem, "swap": $mem}, "pids": {"limit": 256}}
	' "$B/config.json" >"$B/config.json.new" && mv "$B/config.json.new" "$B/config.json" || fail "jq on config.json failed"
}

container_policy "$T/work/policy.toml" ctr
cat >"$T/work/inner.sh" <<'I'
W=/work
exec >$W/inner.log 2>&1
set -x
echo "cgroup $(cat /proc/self/cgroup)"
claude-cage check --policy $W/policy.toml >$W/check.out 2>&1
echo "check=$?" >>$W/results
claude-cage run --policy $W/policy.toml --events $W/sib.events -- alloc 20 600 >$W/sib.out 2>$W/sib.err &
sib=$!
i=0; until grep -q touched $W/sib.out 2>/dev/null || [ $i -ge 300 ]; do i=$((i+1)); sleep 0.1; done
claude-cage run --policy $W/policy.toml --events $W/hog.events -- alloc 200 >$W/hog.out 2>$W/hog.err
echo "hog=$?" >>$W/results
claude-cage ps >$W/ps.out 2>&1
echo "ps=$?" >>$W/results
claude-cage kill --name ctr >$W/kill.out 2>&1
echo "kill=$?" >>$W/results
wait $sib
echo "sib=$?" >>$W/results
# a cage whose supervisor is SIGKILLed, with a setsid'd grandchild that outlives its parent
claude-cage run --policy $W/policy.toml --events $W/orph.events -- sh -c 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo up; exec sleep 600' >$W/orph.out 2>&1 &
orph=$!
i=0; until grep -q up $W/orph.out 2>/dev/null || [ $i -ge 300 ]; do i=$((i+1)); sleep 0.1; done
kill -KILL $orph
wait $orph
claude-cage ps >$W/ps2.out 2>&1
claude-cage reap >$W/reap.out 2>&1
echo "reap=$?" >>$W/results
echo "left=$(cd /sys/fs/cgroup && find . -mindepth 1 -type d | sort | tr '\n' ' ')" >>$W/results
echo "sleeps=$(pgrep -c sleep)" >>$W/results
echo done >>$W/results
I
cat >"$T/work/ro.sh" <<'I'
W=/work
grep cgroup /proc/self/mountinfo >$W/ro-mountinfo.out
claude-cage run --policy $W/policy.toml --events $W/ro.events -- true >$W/ro.out 2>$W/ro.err
echo "ro-run=$?" >>$W/results
claude-cage check --policy $W/policy.toml >$W/ro-check.out 2>&1
echo "ro-check=$?" >>$W/results
I

# --- the container with a writable cgroup
bundle cc-ok rw 314572800 '["/usr/bin/claude-cage","subgroup","--","/bin/sh","/work/inner.sh"]'
crun run --no-pivot -b "$B" cc-ok >"$T/crun-ok.out" 2>&1
rc=$?
cat "$T/work/inner.log" 2>/dev/null | tail -n 40
cat "$T/work/results"
assert_eq "$rc" 0 "crun run (the container survived its cage's OOM kill): status ($(tail -n 3 "$T/crun-ok.out" | joined))"
res() { sed -n "s/^$1=//p" "$T/work/results" | tail -n 1; }
grep -qx done "$T/work/results" || fail "the container's script did not finish: $(joined <"$T/work/results")"
assert_eq "$(res check)" 0 "check inside the container ($(grep -A1 PROBLEM "$T/work/check.out" | joined))"
capture crun-check <"$T/work/check.out"
assert_eq "$(res hog)" 137 "the 200 MB allocation's run"
check_exit "$T/work/hog.events" 137 137 oom-killed
assert_eq "$(ev_field "$T/work/hog.events" exit oom-limit)" cage "the hog's oom-limit"
check_one_line "$T/work/hog.err" "$T/work/hog.events" 'killed by the kernel OOM killer at memory\.max 100\.0 MiB'
grep -q "^$(cage_id "$T/work/sib.events") " "$T/work/ps.out" || fail "ps in the container does not list the sibling: $(joined <"$T/work/ps.out")"
capture crun-ps <"$T/work/ps.out"
assert_eq "$(res kill)" 0 "kill --name ctr in the container"
check_exit "$T/work/sib.events" "$(res sib)" 137 killed
grep -q "orphaned" "$T/work/ps2.out" || fail "ps does not show the orphaned cage: $(joined <"$T/work/ps2.out")"
assert_eq "$(res reap)" 0 "reap in the container"
grep -q "reaped orphaned cage $(cage_id "$T/work/orph.events")" "$T/work/reap.out" || fail "reap: $(joined <"$T/work/reap.out")"
assert_eq "$(res left)" "./supervisor " "cgroups left in the container's namespace"
assert_eq "$(res sleeps)" 0 "sleep processes left in the container"

# --- the control: the same allocation without claude-cage takes the whole container
bundle cc-bare rw 157286400 '["/usr/local/bin/alloc","200"]'
crun run --no-pivot -b "$B" cc-bare >"$T/crun-bare.out" 2>&1
rc=$?
note "bare container: status $rc"
assert_eq "$rc" 137 "crun run of a container whose init allocates past the container's limit"

# --- read-only cgroup: refused with the setting to change
rm -f "$T/work/results"
bundle cc-ro ro 314572800 '["/bin/sh","/work/ro.sh"]'
crun run --no-pivot -b "$B" cc-ro >"$T/crun-ro.out" 2>&1 || fail "crun run (read-only cgroup): $(tail -n 3 "$T/crun-ro.out" | joined)"
assert_eq "$(res ro-run)" 125 "run in a container with a read-only cgroup"
assert_eq "$(wc -l <"$T/work/ro.err")" 1 "lines of the refusal"
grep -q '^claude-cage: the cgroup2 mount at /sys/fs/cgroup is read-only, as container runtimes mount it by default, so no cage can be made: .*"rw"' "$T/work/ro.err" ||
	fail "the refusal: $(cat "$T/work/ro.err")"
[ ! -e "$T/work/ro.events" ] || [ ! -s "$T/work/ro.events" ] || fail "the refused run wrote events"
assert_eq "$(res ro-check)" 1 "check in a container with a read-only cgroup"
grep -q '^PROBLEM  the cgroup2 mount at /sys/fs/cgroup is read-only' "$T/work/ro-check.out" || fail "check: $(grep PROBLEM "$T/work/ro-check.out" | joined)"
capture crun-ro-check <"$T/work/ro-check.out"

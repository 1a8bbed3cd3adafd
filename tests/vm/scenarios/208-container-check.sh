# `claude-cage check` in the container of 207 (a cgroup namespace whose root holds the
# container's shell, with its own cgroup2 mount): `run` refuses there (exit 125, the
# no-internal-process rule), so `check` must not say that a run would work: it must exit 1
# with a PROBLEM line about the processes in the namespace's root. After the fix (the shell in
# a leaf), `check --policy` with `parent = "/"` is clean (exit 0) and a run works.
# vmtest-timeout: 60

echo "+memory +pids" >"$CG/cgroup.subtree_control" || fail "cannot enable memory and pids in the root"
C=$CG/vm-ctrchk
mkdir "$C" || fail "mkdir $C"
trap 'rmdir "$C/init" "$C" 2>/dev/null' EXIT
cat >"$T/p.toml" <<'P'
[cage]
name = "vm-ctrchk-in"
parent = "/"
P
chmod 644 "$T/p.toml"
cat >"$T/inner.sh" <<'I'
T=$1
claude-cage run --policy "$T/p.toml" -- true >/dev/null 2>"$T/run.err"
echo "run=$?"
claude-cage check --policy "$T/p.toml" >"$T/check.out" 2>&1
echo "check=$?"
mkdir /sys/fs/cgroup/init
echo $$ >/sys/fs/cgroup/init/cgroup.procs
claude-cage check --policy "$T/p.toml" >"$T/check2.out" 2>&1
echo "check-after-fix=$?"
claude-cage run --policy "$T/p.toml" -- true >/dev/null 2>"$T/run2.err"
echo "run-after-fix=$?"
I
sh -c 'echo $$ >"$0/cgroup.procs" && exec container sh "$1" "$2"' "$C" "$T/inner.sh" "$T" >"$T/inner.out" 2>&1
cat "$T/inner.out" "$T/run.err"
note "check before the fix:"
cat "$T/check.out"
note "check after the fix:"
cat "$T/check2.out"
grep -qx 'run=125' "$T/inner.out" || fail "run in the namespace root: expected 125, got $(grep '^run=' "$T/inner.out")"
grep -qx 'run-after-fix=0' "$T/inner.out" || fail "run after the fix: $(grep run-after-fix "$T/inner.out"): $(cat "$T/run2.err")"
grep -qx 'check-after-fix=0' "$T/inner.out" || fail "check after the fix: $(grep check-after-fix "$T/inner.out"): $(grep PROBLEM "$T/check2.out")"
grep -qx 'check=1' "$T/inner.out" ||
	fail "check says a run would work ($(grep '^check=' "$T/inner.out"), '$(tail -n 1 "$T/check.out")') where run refuses with 125: $(head -c 200 "$T/run.err")"
grep -q '^PROBLEM.*holds processes' "$T/check.out" || fail "check names no PROBLEM about the processes in the namespace's root: $(grep -c PROBLEM "$T/check.out") PROBLEM lines"
check_no_dir 'vm-ctrchk-in*'
rmdir "$C/init" "$C" || fail "cannot remove $C"

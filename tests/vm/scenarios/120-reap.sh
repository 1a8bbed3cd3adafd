# `claude-cage reap`: a cage whose supervisor was SIGKILLed while a setsid'd grandchild keeps it
# populated is listed as orphaned; reap --dry-run names it and changes nothing; reap kills and
# removes it (grandchild, cgroup, state file) with one line; a second reap prints nothing.
# A stale state file (no cage) is removed by reap; an unreadable one is reported and kept.
# `kill` of an orphaned cage kills and removes it directly.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-reap"

[memory]
max = "64M"
P
orphan o1 --policy "$T/policy.toml"
id=$ORPHAN_ID
dir=$ORPHAN_DIR
gc=$ORPHAN_GC

op ps ps
cat "$T/ps.out" "$T/ps.err"
assert_eq "$(ps_col "$T/ps.out" "$id" STATE)" orphaned "ps: state of the orphan"
op json ps --json --name vm-reap
assert_eq "$(json_field "$T/json.out" "$id" state)" orphaned "ps --json: state of the orphan"
assert_eq "$(json_field "$T/json.out" "$id" supervisor-pid)" "$ORPHAN_SUP" "ps --json: supervisor-pid of the orphan"
assert_eq "$(json_field "$T/json.out" "$id" pids-current)" 1 "ps --json: pids-current of the orphan"
op prom ps --format prometheus --name vm-reap
grep -qF "claude_cage_pids_current{cage=\"$id\",bot=\"vm-reap\",state=\"orphaned\"} 1" "$T/prom.out" ||
	fail "prometheus: no orphaned pids_current line: $(grep pids_current "$T/prom.out")"

# --dry-run: names it, changes nothing
op dry reap --dry-run
cat "$T/dry.out" "$T/dry.err"
assert_eq "$rc" 0 "reap --dry-run: status"
assert_eq "$(cat "$T/dry.out")" "would reap orphaned cage $id (1 process) in $dir" "reap --dry-run: stdout"
[ ! -s "$T/dry.err" ] || fail "reap --dry-run: unexpected stderr: $(head -n 2 "$T/dry.err")"
[ -d "$dir" ] || fail "reap --dry-run removed $dir"
[ -e "$STATE_DIR/$id.json" ] || fail "reap --dry-run removed the state file"
alive "$gc" || fail "reap --dry-run killed the grandchild $gc"
assert_eq "$(cat "$dir/main/cgroup.procs")" "$gc" "reap --dry-run: the cage's processes"

# reap: one line, everything gone
op reap reap
cat "$T/reap.out" "$T/reap.err"
assert_eq "$rc" 0 "reap: status"
assert_eq "$(cat "$T/reap.out")" "reaped orphaned cage $id: killed 1 process, removed $dir" "reap: stdout"
[ ! -s "$T/reap.err" ] || fail "reap: unexpected stderr: $(head -n 2 "$T/reap.err")"
alive "$gc" && fail "reap: the grandchild $gc is still alive"
[ ! -e "$dir" ] || fail "reap: cage dir left: $dir"
[ ! -e "${dir%/*}" ] || fail "reap: bot dir left: ${dir%/*}"
check_no_state "$id"
check_no_proc alloc

# a second reap: nothing to do, nothing printed
op again reap
assert_eq "$rc" 0 "second reap: status"
[ ! -s "$T/again.out" ] || fail "second reap printed: $(head -n 2 "$T/again.out")"
[ ! -s "$T/again.err" ] || fail "second reap printed on stderr: $(head -n 2 "$T/again.err")"

# a stale state file: its cage does not exist
stale=$STATE_DIR/vm-reap-stale-999999-1.json
mkdir -p "$STATE_DIR"
printf '%s\n' '{"cage":"vm-reap-stale-999999-1","bot":"vm-reap-stale","cgroup":"/sys/fs/cgroup/vm-reap-stale/vm-reap-stale-999999-1","supervisor-pid":999999,"supervisor-start":1,"child-pid":999998,"policy":"/nowhere.toml","argv":["claude","-p"],"started-ms":1700000000000,"events":null}' >"$stale"
op sps ps
cat "$T/sps.err"
grep -qF "claude-cage warning: stale state file $stale (its cage is gone; \`claude-cage reap\` removes it)" "$T/sps.err" ||
	fail "ps: no stale warning: $(cat "$T/sps.err")"
op sdry reap --dry-run
assert_eq "$(cat "$T/sdry.out")" "would remove stale state file $stale" "reap --dry-run with a stale file: stdout"
[ -e "$stale" ] || fail "reap --dry-run removed the stale state file"
op sreap reap
cat "$T/sreap.out"
assert_eq "$rc" 0 "reap of a stale state file: status"
assert_eq "$(cat "$T/sreap.out")" "removed stale state file $stale" "reap of a stale state file: stdout"
[ ! -e "$stale" ] || fail "reap left the stale state file $stale"
op sagain reap
[ ! -s "$T/sagain.out" ] || fail "reap after the stale file: printed $(head -n 2 "$T/sagain.out")"

# an unreadable state file: reported on stderr, kept, status 0
bad=$STATE_DIR/vm-reap-bad-1-1.json
echo '{ not json' >"$bad"
op ureap reap
cat "$T/ureap.err"
assert_eq "$rc" 0 "reap with an unreadable state file: status"
grep -qF "claude-cage warning: unreadable state file $bad" "$T/ureap.err" || fail "reap: no warning for the unreadable state file: $(cat "$T/ureap.err")"
[ -e "$bad" ] || fail "reap removed the unreadable state file"
rm -f "$bad"

# kill of an orphaned cage: killed and removed directly
orphan o2 --policy "$T/policy.toml"
op kill kill "$ORPHAN_ID"
cat "$T/kill.out" "$T/kill.err"
assert_eq "$rc" 0 "kill of an orphan: status"
assert_eq "$(cat "$T/kill.out")" "killed orphaned cage $ORPHAN_ID (1 process) and removed it" "kill of an orphan: stdout"
alive "$ORPHAN_GC" && fail "kill of an orphan: the grandchild $ORPHAN_GC is still alive"
[ ! -e "$ORPHAN_DIR" ] || fail "kill of an orphan: cage dir left: $ORPHAN_DIR"
[ ! -e "${ORPHAN_DIR%/*}" ] || fail "kill of an orphan: bot dir left"
check_no_state "$ORPHAN_ID"
check_no_proc alloc

# A cgroup shaped like a cage (<bot>/<bot>-<pid>-<n>/main) that claude-cage did not make: no
# cage mark, no state file, a process in it. ps does not list it, and neither reap nor kill --all
# touches it: its process lives on and the cgroup stays. (The orphans above, which carry the
# mark, are the control: the same commands reaped and killed them.)
foreign=$CG/vm-foreign/vm-foreign-4242-1
mkdir -p "$foreign/main"
sleep 997 &
fp=$!
echo "$fp" >"$foreign/main/cgroup.procs"
op fps ps --json
assert_eq "$(json_field "$T/fps.out" vm-foreign-4242-1 cage)" "" "ps --json lists an unmarked cgroup"
op freap reap
assert_eq "$rc" 0 "reap beside an unmarked cgroup: status"
grep -qF vm-foreign "$T/freap.out" && fail "reap acted on an unmarked cgroup: $(cat "$T/freap.out")"
op fkill kill --all
grep -qF vm-foreign "$T/fkill.out" && fail "kill --all acted on an unmarked cgroup: $(cat "$T/fkill.out")"
alive "$fp" || fail "reap or kill --all killed the process $fp of an unmarked cgroup"
[ -d "$foreign/main" ] || fail "reap or kill --all removed the unmarked cgroup $foreign"
assert_eq "$(cat "$foreign/main/cgroup.procs")" "$fp" "the unmarked cgroup's process"
kill -KILL "$fp"
wait "$fp" 2>/dev/null
wait_match "$foreign/cgroup.events" '^populated 0$' 5
rmdir "$foreign/main" "$foreign" "$CG/vm-foreign" || fail "could not remove the unmarked cgroup"

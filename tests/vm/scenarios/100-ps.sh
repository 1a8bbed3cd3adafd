# `claude-cage ps`: two running cages of two bots with different limits are listed with their
# memory.max, pids.max, child pid and state, in the table, in --json (full values) and in the
# Prometheus text format; --name filters. Then both are ended and nothing is listed.
# vmtest-timeout: 90

cat >"$T/a.toml" <<'P'
[cage]
name = "vm-ps-a"

[memory]
max = "64M"

[pids]
max = 50
P
cat >"$T/b.toml" <<'P'
[cage]
name = "vm-ps-b"

[memory]
max = "128M"

[pids]
max = 100
P
cage_bg a --policy "$T/a.toml" -- alloc 8 600
pa=$!
cage_bg b --policy "$T/b.toml" -- sleep 600
pb=$!
wait_event "$T/a.events" start 20
wait_event "$T/b.events" start 20
wait_match "$T/a.out" touched 20
ida=$(cage_id "$T/a.events")
idb=$(cage_id "$T/b.events")
assert_eq "$ida" "vm-ps-a-$pa-1" "cage id of a"
assert_eq "$idb" "vm-ps-b-$pb-1" "cage id of b"
[ -s "$STATE_DIR/$ida.json" ] || fail "no state file $STATE_DIR/$ida.json"
[ -s "$STATE_DIR/$idb.json" ] || fail "no state file $STATE_DIR/$idb.json"

# the table
op ps ps
assert_eq "$rc" 0 "ps: status"
cat "$T/ps.out"
head -n 1 "$T/ps.out" | grep -qE '^CAGE +BOT +PID +AGE +MEMORY +PEAK +PIDS +THROTTLED +OOM +STATE +COMMAND$' ||
	fail "ps: unexpected header: $(head -n 1 "$T/ps.out")"
assert_eq "$(ps_col "$T/ps.out" "$ida" BOT)" vm-ps-a "ps: BOT of a"
assert_eq "$(ps_col "$T/ps.out" "$ida" PID)" "$(ev_field "$T/a.events" start pid)" "ps: PID of a"
assert_eq "$(ps_col "$T/ps.out" "$ida" STATE)" running "ps: STATE of a"
assert_eq "$(ps_col "$T/ps.out" "$idb" STATE)" running "ps: STATE of b"
ps_col "$T/ps.out" "$ida" MEMORY | grep -qE '^[0-9.]+ MiB / 64\.0 MiB$' || fail "ps: MEMORY of a: '$(ps_col "$T/ps.out" "$ida" MEMORY)'"
ps_col "$T/ps.out" "$idb" MEMORY | grep -qE ' / 128\.0 MiB$' || fail "ps: MEMORY of b: '$(ps_col "$T/ps.out" "$idb" MEMORY)'"
assert_eq "$(ps_col "$T/ps.out" "$ida" PIDS)" "1 / 50" "ps: PIDS of a"
assert_eq "$(ps_col "$T/ps.out" "$idb" PIDS)" "1 / 100" "ps: PIDS of b"
assert_eq "$(ps_col "$T/ps.out" "$ida" COMMAND)" "alloc 8 600" "ps: COMMAND of a"
assert_eq "$(ps_col "$T/ps.out" "$idb" OOM)" 0 "ps: OOM of b"
[ ! -s "$T/ps.err" ] || fail "ps: unexpected stderr: $(head -n 2 "$T/ps.err")"

# --json: full values
op json ps --json
assert_eq "$rc" 0 "ps --json: status"
cat "$T/json.out"
assert_eq "$(json_field "$T/json.out" "$ida" memory-max)" 67108864 "json: memory-max of a"
assert_eq "$(json_field "$T/json.out" "$idb" memory-max)" 134217728 "json: memory-max of b"
assert_eq "$(json_field "$T/json.out" "$ida" pids-max)" 50 "json: pids-max of a"
assert_eq "$(json_field "$T/json.out" "$idb" pids-max)" 100 "json: pids-max of b"
assert_eq "$(json_field "$T/json.out" "$ida" pid)" "$(ev_field "$T/a.events" start pid)" "json: pid of a vs start event"
assert_eq "$(json_field "$T/json.out" "$idb" pid)" "$(ev_field "$T/b.events" start pid)" "json: pid of b vs start event"
assert_eq "$(json_field "$T/json.out" "$ida" supervisor-pid)" "$pa" "json: supervisor-pid of a"
assert_eq "$(json_field "$T/json.out" "$ida" state)" running "json: state of a"
assert_eq "$(json_field "$T/json.out" "$idb" state)" running "json: state of b"
assert_eq "$(json_field "$T/json.out" "$ida" bot)" vm-ps-a "json: bot of a"
assert_eq "$(json_field "$T/json.out" "$ida" cgroup)" "$(cage_dir "$T/a.events")" "json: cgroup of a"
assert_eq "$(json_field "$T/json.out" "$ida" policy)" "$T/a.toml" "json: policy of a"
assert_eq "$(json_field "$T/json.out" "$ida" state-file)" true "json: state-file of a"
assert_eq "$(json_field "$T/json.out" "$ida" pids-current)" 1 "json: pids-current of a"
assert_ge "$(json_field "$T/json.out" "$ida" memory-current)" $((8 * 1048576)) "json: memory-current of a (alloc holds 8 MB)"
assert_ge "$(json_field "$T/json.out" "$ida" memory-peak)" $((8 * 1048576)) "json: memory-peak of a"
assert_num "$(json_field "$T/json.out" "$ida" age-seconds)" "json: age-seconds of a"
assert_eq "$(grep -c '"cage":' "$T/json.out")" 2 "json: number of cages"

# --name filters
op name ps --name vm-ps-b
assert_eq "$rc" 0 "ps --name: status"
assert_eq "$(wc -l <"$T/name.out" | tr -d ' ')" 2 "ps --name vm-ps-b: lines (header and one row)"
assert_eq "$(ps_col "$T/name.out" "$idb" BOT)" vm-ps-b "ps --name vm-ps-b: the row"
op namej ps --json --name vm-ps-a
assert_eq "$(grep -c '"cage":' "$T/namej.out")" 1 "ps --json --name vm-ps-a: number of cages"
assert_eq "$(json_field "$T/namej.out" "$ida" bot)" vm-ps-a "ps --json --name vm-ps-a: the cage"
op none ps --name vm-ps-nobody
assert_eq "$(wc -l <"$T/none.out" | tr -d ' ')" 1 "ps --name of a bot without cages: lines (the header only)"

# Prometheus text format
op prom ps --format prometheus
assert_eq "$rc" 0 "ps --format prometheus: status"
cat "$T/prom.out"
for l in \
	"claude_cage_memory_max_bytes{cage=\"$ida\",bot=\"vm-ps-a\",state=\"running\"} 67108864" \
	"claude_cage_memory_max_bytes{cage=\"$idb\",bot=\"vm-ps-b\",state=\"running\"} 134217728" \
	"claude_cage_pids_max{cage=\"$ida\",bot=\"vm-ps-a\",state=\"running\"} 50" \
	"claude_cage_pids_max{cage=\"$idb\",bot=\"vm-ps-b\",state=\"running\"} 100" \
	"claude_cage_pids_current{cage=\"$ida\",bot=\"vm-ps-a\",state=\"running\"} 1" \
	"claude_cage_oom_kills_total{cage=\"$idb\",bot=\"vm-ps-b\",state=\"running\"} 0" \
	'claude_cage_bot_cages{bot="vm-ps-a"} 1' \
	'claude_cage_bot_cages{bot="vm-ps-b"} 1'; do
	grep -qxF "$l" "$T/prom.out" || fail "prometheus: no line '$l'"
done
grep -qE "^claude_cage_memory_current_bytes\{cage=\"$ida\",bot=\"vm-ps-a\",state=\"running\"\} [0-9]+$" "$T/prom.out" || fail "prometheus: no memory_current line for a"
grep -qE "^claude_cage_age_seconds\{cage=\"$idb\",bot=\"vm-ps-b\",state=\"running\"\} [0-9]+$" "$T/prom.out" || fail "prometheus: no age line for b"
bad=$(grep -v '^#' "$T/prom.out" | awk 'NF != 2 || $2 !~ /^[0-9]+$/' | head -n 1)
[ -z "$bad" ] || fail "prometheus: malformed sample line: $bad"
bad=$(grep '^#' "$T/prom.out" | grep -vE '^# (HELP [a-z_]+ .+|TYPE [a-z_]+ (gauge|counter))$' | head -n 1)
[ -z "$bad" ] || fail "prometheus: malformed comment line: $bad"

# end both; nothing is listed any more
kill -TERM $pa $pb
wait $pa
rca=$?
wait $pb
rcb=$?
assert_eq "$(ev_field "$T/a.events" exit reason)" terminated "a: exit event reason"
assert_eq "$(ev_field "$T/b.events" exit reason)" terminated "b: exit event reason"
note "a: $rca, b: $rcb"
check_gone "$T/a.events" bot
check_gone "$T/b.events" bot
check_no_state "$ida" "$idb"
op after ps --json
assert_eq "$(grep -cE "\"cage\": \"vm-ps-" "$T/after.out")" 0 "ps --json after the end: cages of vm-ps-*"
check_no_proc alloc

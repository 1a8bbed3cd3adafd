# The slice's aggregate ceiling holds over two cages each under their own limit: with
# claude-cage.slice at MemoryMax=120M and two cages of MemoryMax=100M each allocating 75 MB, one
# cage is OOM-killed (137, oom-killed, its peak below its own limit), the other completes, and
# the OOM is charged to the slice. `systemctl revert` restores the shipped slice.
# vmtest-timeout: 120

slice=$CG$SLICE_CG
shipped=$(systemctl show -P MemoryMax claude-cage.slice)
trap 'systemctl revert claude-cage.slice >/dev/null 2>&1' EXIT
systemctl start claude-cage.slice || fail "systemctl start claude-cage.slice failed"
systemctl set-property --runtime claude-cage.slice MemoryMax=120M MemoryHigh=infinity || fail "set-property failed"
assert_eq "$(systemctl show -P MemoryMax claude-cage.slice)" 125829120 "claude-cage.slice MemoryMax after set-property"
assert_eq "$(cat "$slice/memory.max")" 125829120 "$slice/memory.max"
oom0=$(awk '$1 == "oom" {print $2}' "$slice/memory.events")
kill0=$(awk '$1 == "oom_kill" {print $2}' "$slice/memory.events")

systemd_policy "$T/p.toml" sd-agg '[memory]' 'max = "100M"' 'swap-max = "0"' 'oom-group = true'
cage_bg a --policy "$T/p.toml" -- alloc 75 12
pa=$!
wait_for 40 "cage a touched its 75 MB" grep -q 'alloc: touched' "$T/a.out"
assert_eq "$(systemctl show -P MemoryMax "$(scope_of "$T/a.events")")" 104857600 "cage a MemoryMax"
cage_bg b --policy "$T/p.toml" -- alloc 75 12
pb=$!
wait "$pa"
ra=$?
wait "$pb"
rb=$?
note "a: $ra $(ev_field "$T/a.events" exit reason) peak $(ev_field "$T/a.events" exit memory-peak); b: $rb $(ev_field "$T/b.events" exit reason) peak $(ev_field "$T/b.events" exit memory-peak)"
cat "$T/a.err" "$T/b.err"
if [ "$ra" = 137 ]; then
	killed=a ok=b rk=$ra ro=$rb
else
	killed=b ok=a rk=$rb ro=$ra
fi
assert_eq "$rk" 137 "status of the cage killed at the slice's ceiling"
later check_exit "$T/$killed.events" "$rk" 137 oom-killed
later check_one_line "$T/$killed.err" "$T/$killed.events" 'memory|oom'
check_exit "$T/$ok.events" "$ro" 0 exited
later assert_le "$(ev_field "$T/$killed.events" exit memory-peak)" 104857600 "memory-peak of the killed cage (its own limit was not the one hit)"
assert_ge "$(awk '$1 == "oom" {print $2}' "$slice/memory.events")" $((oom0 + 1)) "oom in claude-cage.slice memory.events"
assert_ge "$(awk '$1 == "oom_kill" {print $2}' "$slice/memory.events")" $((kill0 + 1)) "oom_kill in claude-cage.slice memory.events"
check_no_units
later check_no_state "$(cage_id "$T/a.events")" "$(cage_id "$T/b.events")"

systemctl revert claude-cage.slice >/dev/null || fail "systemctl revert claude-cage.slice failed"
assert_eq "$(systemctl show -P MemoryMax claude-cage.slice)" "$shipped" "claude-cage.slice MemoryMax after revert"

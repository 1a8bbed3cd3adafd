# The slice's aggregate ceiling holds over two cages each under their own limit: with
# claude-cage.slice at MemoryMax=120M and two cages of MemoryMax=100M, a holding 40 MB and b
# then allocating 85 MB, b is OOM-killed (137, oom-killed, its peak below its own limit), a
# completes, and the OOM is charged to the slice. `systemctl revert` restores the shipped slice.
#
# The cage that allocates is the larger one, so the kernel's victim is the cage whose
# allocation hit the ceiling and nothing allocates after the kill. With two 75 MB cages the
# victim was the holder, and once on CI the allocator was killed too, 30 ms later (both runs
# 137, oom-killed): the kernel stops waiting for a dying victim (MMF_OOM_SKIP, set in its
# exit_mmap) before every page of it is uncharged, and an allocation in that window starts a
# second OOM kill.
#
# Then the same with the ceiling as the policy's [bot] memory-max, which the systemd backend puts
# on the bot's own slice (claude-cage-sd\x2dbot.slice): the exit event says the bot's limit.
# vmtest-timeout: 150

slice=$CG$SLICE_CG
shipped=$(systemctl show -P MemoryMax claude-cage.slice)
trap 'systemctl revert claude-cage.slice >/dev/null 2>&1' EXIT
on_fail() {
	echo "$slice: memory.oom.group $(cat "$slice/memory.oom.group"), memory.events $(tr '\n' ' ' <"$slice/memory.events")"
	dmesg | grep -E 'oom-kill:|Killed process|invoked oom-killer|oom_reaper' | tail -n 20
}
systemctl start claude-cage.slice || fail "systemctl start claude-cage.slice failed"
systemctl set-property --runtime claude-cage.slice MemoryMax=120M MemoryHigh=infinity || fail "set-property failed"
assert_eq "$(systemctl show -P MemoryMax claude-cage.slice)" 125829120 "claude-cage.slice MemoryMax after set-property"
assert_eq "$(cat "$slice/memory.max")" 125829120 "$slice/memory.max"
oom0=$(awk '$1 == "oom" {print $2}' "$slice/memory.events")
kill0=$(awk '$1 == "oom_kill" {print $2}' "$slice/memory.events")

systemd_policy "$T/p.toml" sd-agg '[memory]' 'max = "100M"' 'swap-max = "0"' 'oom-group = true'
cage_bg a --policy "$T/p.toml" -- alloc 40 12
pa=$!
wait_for 40 "cage a touched its 40 MB" grep -q 'alloc: touched' "$T/a.out"
assert_eq "$(systemctl show -P MemoryMax "$(scope_of "$T/a.events")")" 104857600 "cage a MemoryMax"
cage_bg b --policy "$T/p.toml" -- alloc 85 12
pb=$!
wait "$pa"
ra=$?
wait "$pb"
rb=$?
note "a: $ra $(ev_field "$T/a.events" exit reason) peak $(ev_field "$T/a.events" exit memory-peak); b: $rb $(ev_field "$T/b.events" exit reason) peak $(ev_field "$T/b.events" exit memory-peak)"
cat "$T/a.err" "$T/b.err"
killed=b ok=a rk=$rb ro=$ra
assert_eq "$rk" 137 "status of b, the larger cage, killed at the slice's ceiling"
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

# --- the same ceiling as the policy's [bot] memory-max, on the bot's own slice: b is OOM-killed
# at the bot's ceiling (oom-limit "bot" in its exit event, "bot" in its line) and a completes ---
bslice=$(bot_slice sd-bot)
bcg=$CG$(bot_cg sd-bot)
systemd_policy "$T/bot.toml" sd-bot '[bot]' 'memory-max = "120M"' '[memory]' 'max = "100M"' 'swap-max = "0"' 'oom-group = true'
cage_bg ba --policy "$T/bot.toml" -- alloc 40 12
pa=$!
wait_for 40 "cage ba touched its 40 MB" grep -q 'alloc: touched' "$T/ba.out"
assert_eq "$(systemctl show -P MemoryMax "$bslice")" 125829120 "$bslice MemoryMax"
assert_eq "$(cat "$bcg/memory.max")" 125829120 "$bcg/memory.max"
cage_bg bb --policy "$T/bot.toml" -- alloc 85 12
pb=$!
wait "$pa"
ra=$?
wait "$pb"
rb=$?
note "ba: $ra $(ev_field "$T/ba.events" exit reason); bb: $rb $(ev_field "$T/bb.events" exit reason) oom-limit $(ev_field "$T/bb.events" exit oom-limit)"
cat "$T/ba.err" "$T/bb.err"
assert_eq "$rb" 137 "status of bb, killed at the bot's ceiling"
check_exit "$T/bb.events" "$rb" 137 oom-killed
assert_eq "$(ev_field "$T/bb.events" exit oom-limit)" bot "bb's exit event oom-limit"
later check_one_line "$T/bb.err" "$T/bb.events" 'bot'
check_exit "$T/ba.events" "$ra" 0 exited
assert_ge "$(awk '$1 == "oom_kill" {print $2}' "$bcg/memory.events")" 1 "oom_kill in $bslice memory.events"
check_no_units
later check_no_state "$(cage_id "$T/ba.events")" "$(cage_id "$T/bb.events")"
systemctl revert "$bslice" >/dev/null 2>&1

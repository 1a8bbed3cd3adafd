# memory.high only: an allocation slightly above it is throttled, not killed:
# exit 0, a memory-high event, no oom-kill.
# vmtest-timeout: 240

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-high"

[memory]
high = "32M"
P
cage high --policy "$T/policy.toml" -- alloc 36
check_exit "$T/high.events" "$rc" 0 exited
assert_event "$T/high.events" memory-high
assert_ge "$(ev_field "$T/high.events" memory-high count)" 1 "memory-high event count"
assert_no_event "$T/high.events" oom-kill
assert_eq "$(ev_field "$T/high.events" exit oom-kills)" 0 "exit event oom-kills"
assert_eq "$(ev_field "$T/high.events" start memory-high)" 33554432 "start limits memory-high"
assert_eq "$(ev_field "$T/high.events" start memory-max)" null "start limits memory-max"
grep -q 'alloc: touched 36 MB' "$T/high.out" || fail "alloc did not finish"
check_no_line "$T/high.err"
check_gone "$T/high.events" bot

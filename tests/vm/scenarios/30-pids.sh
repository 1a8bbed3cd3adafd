# A fork bomb under pids.max=64 is held there (pids-max event) until max-runtime kills the
# cage: 124, reason timeout, no forkbomb left, cgroups gone.
# vmtest-timeout: 90

cat >"$T/policy.toml" <<'P'
[cage]
name = "vm-pids"

[pids]
max = 64

[lifetime]
max-runtime = "5s"
term-grace = "1s"
P
cage bomb --policy "$T/policy.toml" -- forkbomb
check_exit "$T/bomb.events" "$rc" 124 timeout
assert_event "$T/bomb.events" pids-max
assert_ge "$(ev_field "$T/bomb.events" pids-max count)" 1 "pids-max event count"
assert_eq "$(ev_field "$T/bomb.events" start pids-max)" 64 "start limits pids-max"
assert_ge "$(ev_field "$T/bomb.events" exit leftover)" 1 "exit event leftover"
ms=$(ev_field "$T/bomb.events" exit duration-ms)
assert_ge "$ms" 5000 "exit event duration-ms"
check_one_line "$T/bomb.err" "$T/bomb.events"
check_no_proc forkbomb
check_gone "$T/bomb.events" bot

# `systemd-analyze verify` accepts every unit the package ships (the slice, the reap service and
# timer, and the example bot service, whose ExecStart= names /usr/bin/claude-cage and whose bot
# is the stand-in /usr/bin/example-bot), with no warning at all.
# vmtest-timeout: 60

units="/lib/systemd/system/claude-cage.slice /lib/systemd/system/claude-cage-reap.service /lib/systemd/system/claude-cage-reap.timer /lib/systemd/system/claude-cage-metrics.service /lib/systemd/system/claude-cage-metrics.timer"
# The example is verified where an admin would put it.
cp /usr/share/doc/claude-cage/packaging/systemd/example-bot.service /etc/systemd/system/example-bot.service
systemd-analyze verify $units /etc/systemd/system/example-bot.service >"$T/verify.out" 2>&1
rc=$?
rm -f /etc/systemd/system/example-bot.service
cat "$T/verify.out"
assert_eq "$rc" 0 "systemd-analyze verify: status"
[ ! -s "$T/verify.out" ] || fail "systemd-analyze verify printed: $(head -n 3 "$T/verify.out")"
# the loaded units carry what the files say
assert_eq "$(systemctl show -P LoadState claude-cage.slice)" loaded "claude-cage.slice LoadState"
assert_eq "$(systemctl show -P TasksMax claude-cage.slice)" 8192 "claude-cage.slice TasksMax"
assert_eq "$(systemctl show -P MemorySwapMax claude-cage.slice)" 0 "claude-cage.slice MemorySwapMax"
assert_eq "$(systemctl show -P ExecStart claude-cage-reap.service | grep -o 'argv\[\]=[^;]*' | sed 's/ *$//')" "argv[]=/usr/bin/claude-cage reap" "claude-cage-reap.service ExecStart"
assert_eq "$(systemctl show -P Unit claude-cage-reap.timer)" claude-cage-reap.service "claude-cage-reap.timer Unit"

# The .deb (installed with `apt install ./claude-cage_*.deb` when the image was made): the
# binary, the units, the man page, the completions and the examples are where the package puts
# them; dpkg knows them; `claude-cage check` reports OK (exit 0) for a suitable policy.
# vmtest-timeout: 60

grep -qE '^(Setting up|Unpacking) claude-cage ' /var/log/claude-cage-install.log ||
	fail "apt install log does not show claude-cage being set up: $(tail -n 3 /var/log/claude-cage-install.log)"
assert_eq "$(dpkg-query -W -f '${db:Status-Status}' claude-cage)" installed "dpkg status of claude-cage"
for f in /usr/bin/claude-cage \
	/lib/systemd/system/claude-cage.slice /lib/systemd/system/claude-cage-reap.service /lib/systemd/system/claude-cage-reap.timer \
	/usr/share/man/man1/claude-cage.1.gz /usr/share/man/man1/claude-cage-run.1.gz /usr/share/man/man1/claude-cage-check.1.gz \
	/usr/share/bash-completion/completions/claude-cage /usr/share/zsh/vendor-completions/_claude-cage \
	/usr/share/fish/vendor_completions.d/claude-cage.fish \
	/usr/share/doc/claude-cage/policies/default.toml /usr/share/doc/claude-cage/policies/example-bot.toml \
	/usr/share/doc/claude-cage/packaging/systemd/example-bot.service /usr/share/doc/claude-cage/README.md \
	/usr/share/doc/claude-cage/docs/systemd.md /usr/share/doc/claude-cage/docs/security.md \
	/usr/share/doc/claude-cage/docs/policy.md /usr/share/doc/claude-cage/docs/events.md /usr/share/doc/claude-cage/docs/operations.md; do
	[ -s "$f" ] || fail "missing or empty after install: $f"
	dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not owned by any package"
done
[ -x /usr/bin/claude-cage ] || fail "/usr/bin/claude-cage is not executable"
deps=$(dpkg-query -W -f '${Depends}' claude-cage)
note "Depends: $deps"
echo "$deps" | grep -q 'libc6' || fail "the package does not depend on libc6: '$deps'"
claude-cage --version >"$T/version" 2>&1 || fail "claude-cage --version failed: $(cat "$T/version")"
note "$(cat "$T/version")"
grep -qE '^claude-cage [0-9]' "$T/version" || fail "claude-cage --version: $(cat "$T/version")"
# The man page is found by man(1) and names the command.
man -w claude-cage >"$T/manpath" 2>&1 || fail "man -w claude-cage: $(cat "$T/manpath")"
assert_eq "$(cat "$T/manpath")" /usr/share/man/man1/claude-cage.1.gz "man -w claude-cage"
zcat /usr/share/man/man1/claude-cage.1.gz | grep -q '^\.TH claude-cage 1' || fail "the man page has no '.TH claude-cage 1' header"
MANWIDTH=80 man claude-cage 2>/dev/null | col -b >"$T/man.txt"
grep -q 'claude-cage' "$T/man.txt" || fail "man claude-cage renders nothing"
# one page per subcommand, with its exit statuses
# (ASCII and wide: groff 1.23 renders "-" as U+2010 in a UTF-8 locale, and no line wraps)
LC_ALL=C MANWIDTH=200 man claude-cage-run 2>/dev/null | col -b >"$T/man-run.txt"
grep -q '^EXIT STATUS' "$T/man-run.txt" || fail "man claude-cage-run has no EXIT STATUS section"
grep -q 'max-runtime or stdin-eof-grace ran out' "$T/man-run.txt" || fail "man claude-cage-run does not explain 124"
# every relative link of the installed README and docs leads to an installed file
for md in /usr/share/doc/claude-cage/README.md /usr/share/doc/claude-cage/docs/*.md; do
	for link in $(grep -oE '\]\([^)#:]+(#[^)]*)?\)' "$md" | sed -E 's/^\]\(//; s/\)$//; s/#.*//'); do
		[ -e "$(dirname "$md")/$link" ] || fail "$md links to $link, which is not installed"
	done
done
grep -q 'complete -F' /usr/share/bash-completion/completions/claude-cage || fail "bash completion has no 'complete -F'"
grep -q '^#compdef claude-cage' /usr/share/zsh/vendor-completions/_claude-cage || fail "zsh completion has no '#compdef claude-cage'"
grep -q '^complete -c claude-cage' /usr/share/fish/vendor_completions.d/claude-cage.fish || fail "fish completion has no 'complete -c claude-cage'"
# bash completion offers the subcommands
out=$(bash -c '. /usr/share/bash-completion/completions/claude-cage
	fn=$(complete -p claude-cage | sed -n "s/.*-F \([^ ]*\).*/\1/p")
	COMP_WORDS=(claude-cage re); COMP_CWORD=1; COMP_LINE="claude-cage re"; COMP_POINT=14
	"$fn" claude-cage re claude-cage; echo "${COMPREPLY[*]}"' 2>&1)
echo "$out" | grep -qw reap || fail "bash completion of 'claude-cage re' does not offer reap: $out"

# check, cgroupfs backend: a policy with an explicit parent (the VM's service cgroup is not
# delegated, so parent = "auto" has no place for cages here)
mkdir -p "$CG/cagetest"
cat >"$T/cgfs.toml" <<'P'
[cage]
name = "deb-check"
backend = "cgroupfs"
parent = "/cagetest"
require = ["memory", "pids"]

[memory]
max = "64M"

[pids]
max = 64
P
op cgfs check --policy "$T/cgfs.toml"
cat "$T/cgfs.out" "$T/cgfs.err"
assert_eq "$rc" 0 "claude-cage check --policy (cgroupfs, parent /cagetest): status"
grep -q '^PROBLEM' "$T/cgfs.out" && fail "check (cgroupfs): $(grep -A1 '^PROBLEM' "$T/cgfs.out" | head -n 2)"
# check, systemd backend: the default slice, as root
cat >"$T/sd.toml" <<'P'
[cage]
name = "deb-check"
backend = "systemd"
require = ["memory", "pids"]

[memory]
max = "64M"

[pids]
max = 64
P
op sd check --policy "$T/sd.toml"
cat "$T/sd.out" "$T/sd.err"
capture check-systemd <"$T/sd.out"
assert_eq "$rc" 0 "claude-cage check --policy (systemd backend): status"
grep -q '^PROBLEM' "$T/sd.out" && fail "check (systemd): $(grep -A1 '^PROBLEM' "$T/sd.out" | head -n 2)"
rmdir "$CG/cagetest/deb-check" 2>/dev/null
rmdir "$CG/cagetest" || fail "check left something in /cagetest: $(find "$CG/cagetest" -mindepth 1 -type d)"

//! Cage ids and the names of the systemd units that hold cages: built here, and parsed here.
//!
//! A cage id is `<bot>-<pid>-<n>`: the bot's name, the pid of the supervisor that made it, and
//! a serial that makes it unique when an old cage still holds the id. A cgroupfs cage is the
//! directory `<bot>/<id>`; a systemd cage is the scope `claude-cage-<id>.scope` in a slice.

/// The id of the `serial`th cage that the supervisor `pid` tries for `bot`.
pub fn cage_id(bot: &str, pid: u32, serial: u32) -> String {
    format!("{bot}-{pid}-{serial}")
}

/// The pid in a cage id `<bot>-<pid>-<n>`, if `id` is one for `bot`.
pub fn cage_pid(bot: &str, id: &str) -> Option<i32> {
    let rest = id.strip_prefix(bot)?.strip_prefix('-')?;
    let (pid, n) = rest.split_once('-')?;
    if !is_serial(n) {
        return None;
    }
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

/// Splits a cage id `<bot>-<pid>-<n>` into the bot and the pid.
pub fn split_id(id: &str) -> Option<(&str, i32)> {
    let mut parts = id.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    let bot = parts.next()?;
    if !is_serial(n) || bot.is_empty() {
        return None;
    }
    pid.parse().ok().filter(|p: &i32| *p > 0).map(|p| (bot, p))
}

fn is_serial(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
}

/// The unit name of a cage's scope.
pub fn scope_name(cage_id: &str) -> String {
    format!("{SCOPE_PREFIX}{cage_id}{SCOPE_SUFFIX}")
}

/// The cage id in a systemd scope's name, `claude-cage-<id>.scope`.
pub fn scope_cage_id(name: &str) -> Option<&str> {
    name.strip_prefix(SCOPE_PREFIX)?.strip_suffix(SCOPE_SUFFIX)
}

/// The slice of a bot's cages under the systemd backend, a child of `slice`: a dash in a
/// slice's name is a level (systemd.slice(5)), so the bot's own dashes are escaped as
/// systemd-escape(1) does ("claude-cage.slice" and "ts-bot": "claude-cage-ts\x2dbot.slice").
pub fn bot_slice(slice: &str, bot: &str) -> String {
    let bot = bot.replace('-', "\\x2d");
    match slice.strip_suffix(".slice") {
        Some("-") | Some("") | None => format!("{bot}.slice"),
        Some(stem) => format!("{stem}-{bot}.slice"),
    }
}

/// Whether a cgroup directory's name is the slice [`bot_slice`] makes for `bot`.
pub fn is_bot_slice(dir_name: &str, bot: &str) -> bool {
    let own = bot_slice("-.slice", bot);
    dir_name == own || dir_name.ends_with(&format!("-{own}"))
}

const SCOPE_PREFIX: &str = "claude-cage-";
const SCOPE_SUFFIX: &str = ".scope";

/// Whether a cgroup directory's name is a systemd scope's (which then holds a holder).
pub fn is_scope(dir_name: &std::ffi::OsStr) -> bool {
    std::path::Path::new(dir_name)
        .extension()
        .is_some_and(|e| e == &SCOPE_SUFFIX[1..])
}

/// The tasks a cage's cgroup holds besides the cage's own: a systemd scope's holder
/// (`sys::spawn_holder`), which the scope's `pids.max` and `TasksMax=` allow for.
pub fn holders(cage_dir: &std::path::Path) -> u64 {
    u64::from(cage_dir.file_name().is_some_and(is_scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cage_ids() {
        assert_eq!(cage_id("my-bot", 42, 1), "my-bot-42-1");
        assert_eq!(cage_pid("bot", "bot-42-1"), Some(42));
        assert_eq!(cage_pid("my-bot", "my-bot-42-12"), Some(42));
        assert_eq!(cage_pid("bot", "bot-42"), None);
        assert_eq!(cage_pid("bot", "bot-x-1"), None);
        assert_eq!(cage_pid("bot", "other-42-1"), None);
        assert_eq!(cage_pid("bot", "bot-42-1x"), None);
        assert_eq!(cage_pid("bot", "main"), None);
        assert_eq!(cage_pid("bot", "bot-0-1"), None);
        assert_eq!(split_id("my-bot-42-1"), Some(("my-bot", 42)));
        assert_eq!(split_id("bot-x-1"), None);
        assert_eq!(split_id("-42-1"), None);
        // What is built parses back.
        let id = cage_id("a-b", 7, 3);
        assert_eq!(cage_pid("a-b", &id), Some(7));
        assert_eq!(split_id(&id), Some(("a-b", 7)));
    }

    #[test]
    fn scope_names() {
        assert_eq!(scope_name("bot-12-1"), "claude-cage-bot-12-1.scope");
        assert_eq!(
            scope_cage_id("claude-cage-my-bot-42-1.scope"),
            Some("my-bot-42-1")
        );
        assert_eq!(scope_cage_id(&scope_name("bot-12-1")), Some("bot-12-1"));
        assert_eq!(scope_cage_id("session-1.scope"), None);
        assert!(is_scope("claude-cage-bot-1-1.scope".as_ref()));
        assert!(!is_scope("bot-1-1".as_ref()));
        assert_eq!(
            bot_slice("claude-cage.slice", "ts-bot"),
            "claude-cage-ts\\x2dbot.slice"
        );
        assert_eq!(bot_slice("bots.slice", "a"), "bots-a.slice");
        assert_eq!(bot_slice("-.slice", "a-b"), "a\\x2db.slice");
        assert!(is_bot_slice("claude-cage-ts\\x2dbot.slice", "ts-bot"));
        assert!(!is_bot_slice("claude-cage.slice", "ts-bot"));
        assert!(!is_bot_slice("claude-cage-xts\\x2dbot.slice", "ts-bot"));
    }
}

//! sudoers as sudo reads it, in one place for pimd (the `sudoers-outside-pim` alert) and
//! `pim doctor` (its Defaults and `%group` checks): the files sudo reads (`/etc/sudoers`, its
//! `@include`/`#include` and `@includedir`/`#includedir` directives, files of an included
//! directory skipped as sudo skips them), logical lines (comments dropped, `\` continuations
//! joined, each with the line it starts on), `Defaults` options, and the rules that let
//! someone run commands as root, with `User_Alias` and `Runas_Alias` expanded and negation
//! (`!`) taken into account.
//!
//! What is not read: rules from sources other than files (LDAP, SSSD; nsswitch.conf's
//! `sudoers:` line), and `Host_Alias`/host lists, which are taken to match this host (the safe
//! side for an alert: a rule for another host is still reported).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const SUDOERS: &str = "/etc/sudoers";
pub const SUDOERS_DIR: &str = "/etc/sudoers.d";
/// sudo's own bound on nested includes.
const MAX_DEPTH: usize = 128;
/// Alias expansion deeper than this is a loop (sudo refuses such files; we stop).
const MAX_ALIAS_DEPTH: usize = 64;

/// The text of /etc/sudoers, of the files sudo reads from /etc/sudoers.d, and of every file
/// an include directive brings in, wherever it is; read as root (unreadable files are left
/// out).
pub fn read_system() -> Vec<(PathBuf, String)> {
    read_from(Path::new(SUDOERS), Path::new(SUDOERS_DIR))
}

/// [`read_system`] with other places for /etc/sudoers and /etc/sudoers.d (tests, sandboxes).
pub fn read_from(sudoers: &Path, dir: &Path) -> Vec<(PathBuf, String)> {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let mut found = files(sudoers, &read, &included_dir);
    // Debian's /etc/sudoers ends with `@includedir /etc/sudoers.d`; one without the directive
    // does not read the directory, but a file put there is still worth an alert (a later edit
    // of /etc/sudoers brings it in), so the directory is always read, after.
    for path in included_dir(dir) {
        if !found.iter().any(|(seen, _)| *seen == path) {
            found.extend(files(&path, &read, &included_dir));
        }
    }
    found
}

/// The files of `dir` that sudo reads for `@includedir`, in its order (sorted by name): it
/// skips names that contain a dot or end in `~`.
pub fn included_dir(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| read_in_dir(&e.file_name().to_string_lossy()))
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Whether sudo reads a file of this name in an included directory.
pub fn read_in_dir(name: &str) -> bool {
    !name.contains('.') && !name.ends_with('~')
}

/// `first` and the files its include directives bring in, depth first as sudo reads them,
/// each once. A relative path is relative to the including file's directory.
pub fn files(
    first: &Path,
    read: &dyn Fn(&Path) -> Option<String>,
    list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
) -> Vec<(PathBuf, String)> {
    fn visit(
        path: &Path,
        depth: usize,
        read: &dyn Fn(&Path) -> Option<String>,
        list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
        out: &mut Vec<(PathBuf, String)>,
    ) {
        if depth > MAX_DEPTH || out.iter().any(|(seen, _)| seen == path) {
            return;
        }
        let Some(text) = read(path) else { return };
        out.push((path.to_path_buf(), text.clone()));
        let base = path.parent().unwrap_or(Path::new("/"));
        for (directive, target) in includes(&text) {
            let target = base.join(target);
            if directive == "includedir" {
                for file in list_dir(&target) {
                    visit(&file, depth + 1, read, list_dir, out);
                }
            } else {
                visit(&target, depth + 1, read, list_dir, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(first, 0, read, list_dir, &mut out);
    out
}

/// The include directives of sudoers text: (`include` or `includedir`, path), from
/// `@include`, `#include`, `@includedir` and `#includedir` lines (a path may be quoted).
pub fn includes(text: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix('@').or_else(|| line.strip_prefix('#')) else {
            continue;
        };
        let (directive, path) = if let Some(path) = rest.strip_prefix("includedir") {
            ("includedir", path)
        } else if let Some(path) = rest.strip_prefix("include") {
            ("include", path)
        } else {
            continue;
        };
        if !path.starts_with(char::is_whitespace) {
            continue;
        }
        let path = path.trim();
        let path = path
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or(path);
        if !path.is_empty() {
            found.push((directive, path.to_string()));
        }
    }
    found
}

/// The code of a sudoers line: up to a `#` that starts a comment (`#1000`, a uid, does not;
/// nor does an escaped `\#`).
pub fn code(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'#' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// The logical lines of sudoers text: comments dropped, lines ending in `\` joined with the
/// next, blank ones left out; each with the (1-based) line it starts on.
pub fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut logical = String::new();
    let mut first = 0;
    for (index, line) in text.lines().enumerate() {
        if logical.is_empty() {
            first = index + 1;
        }
        let line = code(line);
        match line.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            None => logical.push_str(line),
        }
        let done = std::mem::take(&mut logical);
        if !done.trim().is_empty() {
            lines.push((first, done.trim().to_string()));
        }
    }
    if !logical.trim().is_empty() {
        lines.push((first, logical.trim().to_string()));
    }
    lines
}

/// The options of the `Defaults` lines of sudoers text (`Defaults`, `Defaults:user`,
/// `Defaults>runas`, ...), each with its line number, as written (`!pam_acct_mgmt`,
/// `targetpw`, `env_keep+=...`). Comments are skipped, continued lines joined. A binding may
/// be a uid (`Defaults:#1000`) and, as sudo takes it, a list with blanks (`Defaults: alice`,
/// `Defaults:alice, bob`).
pub fn defaults(text: &str) -> Vec<(usize, String)> {
    let mut options = Vec::new();
    for (line, code) in logical_lines(text) {
        let Some(rest) = code.strip_prefix("Defaults") else {
            continue;
        };
        let settings = if rest.starts_with([':', '@', '>', '!']) {
            after_binding(&rest[1..])
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            continue;
        };
        for option in settings.split(',') {
            let option = option.trim();
            if !option.is_empty() {
                options.push((line, option.to_string()));
            }
        }
    }
    options
}

/// What follows a Defaults binding list (`alice`, `alice, bob`, ` #1000`, `"x y"`): items
/// separated by commas, blanks allowed around them.
fn after_binding(text: &str) -> &str {
    let mut rest = text.trim_start();
    loop {
        // One item: a quoted string, or up to a blank or a comma.
        let end = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').map_or(rest.len(), |at| at + 2)
        } else {
            rest.find(|c: char| c.is_whitespace() || c == ',')
                .unwrap_or(rest.len())
        };
        let after = rest[end..].trim_start();
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None => return after,
        }
    }
}

/// The `%group` names in sudoers text (comments skipped; `#123` uids are not comments).
pub fn group_names(text: &str) -> BTreeSet<String> {
    let mut groups = BTreeSet::new();
    for line in text.lines() {
        let mut rest = code(line);
        while let Some(at) = rest.find('%') {
            let after = &rest[at + 1..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
                .collect();
            if !name.is_empty() {
                groups.insert(name.clone());
            }
            rest = &after[name.len()..];
        }
    }
    groups
}

/// Groups named in every file (`%name`).
pub fn groups(files: &[(PathBuf, String)]) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|(_, text)| group_names(text))
        .collect()
}

/// Someone a rule's user list names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    /// Every user.
    All,
    User(String),
    /// `#1000`
    Uid(u32),
    /// `%wheel`
    Group(String),
    /// `%#10`
    Gid(u32),
    /// `%:name`, `%:#10`: a group from sudo's group plugin, outside the Unix group database.
    NonUnixGroup(String),
    /// `+name`
    Netgroup(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::All => f.write_str("ALL"),
            Who::User(name) => f.write_str(name),
            Who::Uid(uid) => write!(f, "#{uid}"),
            Who::Group(name) => write!(f, "%{name}"),
            Who::Gid(gid) => write!(f, "%#{gid}"),
            Who::NonUnixGroup(name) => write!(f, "%:{name}"),
            Who::Netgroup(name) => write!(f, "+{name}"),
        }
    }
}

impl Who {
    fn parse(item: &str) -> Who {
        let item = unquote(item);
        if item == "ALL" {
            Who::All
        } else if let Some(rest) = item.strip_prefix("%:") {
            Who::NonUnixGroup(rest.to_string())
        } else if let Some(gid) = item.strip_prefix("%#").and_then(|g| g.parse().ok()) {
            Who::Gid(gid)
        } else if let Some(group) = item.strip_prefix('%') {
            Who::Group(group.to_string())
        } else if let Some(uid) = item.strip_prefix('#').and_then(|u| u.parse().ok()) {
            Who::Uid(uid)
        } else if let Some(netgroup) = item.strip_prefix('+') {
            Who::Netgroup(netgroup.to_string())
        } else {
            Who::User(item.to_string())
        }
    }
}

/// A rule that lets the users it names run commands as root: where it is, whom it names (the
/// items that match positively, aliases expanded), its text, and the definitions of the
/// aliases it uses (what it grants depends on them as much as on its text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRule {
    pub file: PathBuf,
    /// 1-based, the line the rule starts on.
    pub line: usize,
    pub who: Vec<Who>,
    pub text: String,
    /// The aliases its text uses, directly or through other aliases, each as
    /// `Kind NAME = items`, sorted.
    pub aliases: Vec<String>,
}

/// The aliases of one kind: name to its items as written.
type Aliases = BTreeMap<String, Vec<String>>;

#[derive(Default)]
struct AllAliases {
    user: Aliases,
    runas: Aliases,
    cmnd: Aliases,
}

/// The rules of `files` (as from [`read_system`], in the order sudo reads them) that let
/// someone run a command as root: a user specification whose run-as list is absent (root is
/// sudo's default target), or names `ALL`, `root` or `#0` (directly or through a
/// `Runas_Alias`), for at least one command that is not negated. Aliases are those defined
/// anywhere in the files (sudo requires definition before use; a file that breaks that is
/// refused by visudo, and reported here anyway).
pub fn root_rules(files: &[(PathBuf, String)]) -> Vec<RootRule> {
    let mut aliases = AllAliases::default();
    let mut specs = Vec::new();
    for (path, text) in files {
        for (line, code) in logical_lines(text) {
            let word = code.split_whitespace().next().unwrap_or("");
            let table = match word {
                "User_Alias" => Some(&mut aliases.user),
                "Runas_Alias" => Some(&mut aliases.runas),
                "Cmnd_Alias" | "Cmd_Alias" => Some(&mut aliases.cmnd),
                "Host_Alias" => None,
                _ => {
                    if !word.starts_with("Defaults") && !code.starts_with('@') {
                        specs.push((path.clone(), line, code));
                    }
                    continue;
                }
            };
            if let Some(table) = table {
                define_aliases(&code[word.len()..], table);
            }
        }
    }
    specs
        .into_iter()
        .filter_map(|(file, line, text)| {
            let who = root_grant(&text, &aliases)?;
            Some(RootRule {
                file,
                line,
                who,
                aliases: aliases_used(&text, &aliases),
                text,
            })
        })
        .collect()
}

/// The definitions of the aliases `text` uses, directly or through other aliases, as
/// `Kind NAME = items`, sorted. A name may be an alias of several kinds (sudo keeps them
/// apart): each is taken.
fn aliases_used(text: &str, aliases: &AllAliases) -> Vec<String> {
    let tables = [
        ("User_Alias", &aliases.user),
        ("Runas_Alias", &aliases.runas),
        ("Cmnd_Alias", &aliases.cmnd),
    ];
    let mut used = BTreeSet::new();
    let mut to_read = vec![text.to_string()];
    while let Some(text) = to_read.pop() {
        let names =
            text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        for name in names.filter(|n| !n.is_empty()) {
            for (kind, table) in tables {
                if let Some(items) = table.get(name) {
                    if used.insert(format!("{kind} {name} = {}", items.join(", "))) {
                        to_read.push(items.join(", "));
                    }
                }
            }
        }
    }
    used.into_iter().collect()
}

/// `NAME = a, b : NAME2 = c` into `table`.
fn define_aliases(text: &str, table: &mut Aliases) {
    for definition in split_outside(text, ':') {
        if let Some((name, items)) = definition.split_once('=') {
            let items = split_outside(items, ',')
                .into_iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect();
            table.insert(name.trim().to_string(), items);
        }
    }
}

/// `text` split at `sep`, except where escaped with `\`, inside parentheses or quotes.
fn split_outside(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut start = 0;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(item: &str) -> &str {
    item.strip_prefix('"')
        .and_then(|i| i.strip_suffix('"'))
        .unwrap_or(item)
}

/// The user list of a user specification and the rest: the list ends at the first blank
/// that no comma is next to.
fn user_list(spec: &str) -> (Vec<&str>, &str) {
    let mut items = Vec::new();
    let mut rest = spec.trim_start();
    loop {
        let end = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.find('"').map_or(rest.len(), |at| at + 2)
        } else {
            let mut end = rest.len();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '\\' {
                    chars.next();
                } else if c.is_whitespace() || c == ',' {
                    end = i;
                    break;
                }
            }
            end
        };
        items.push(&rest[..end]);
        let after = rest[end..].trim_start();
        match after.strip_prefix(',') {
            Some(next) => rest = next.trim_start(),
            None => return (items, after),
        }
    }
}

/// Expands `items` (with `!` negation, possibly repeated, and aliases) into the set of
/// subjects that match positively: a subject named both positively and negatively is taken
/// away only when the negation comes later (sudo's last match wins).
fn expand_who(items: &[String], aliases: &Aliases, depth: usize, out: &mut Vec<(Who, bool)>) {
    for item in items {
        let mut item = item.trim();
        let mut positive = true;
        while let Some(rest) = item.strip_prefix('!') {
            positive = !positive;
            item = rest.trim_start();
        }
        match aliases.get(item) {
            Some(inner) if depth < MAX_ALIAS_DEPTH => {
                let mut nested = Vec::new();
                expand_who(inner, aliases, depth + 1, &mut nested);
                out.extend(nested.into_iter().map(|(w, p)| (w, p == positive)));
            }
            Some(_) => {}
            None => out.push((Who::parse(item), positive)),
        }
    }
}

/// The subjects that still match after the list's negations, in the order first named.
fn matching(items: &[String], aliases: &Aliases) -> Vec<Who> {
    let mut expanded = Vec::new();
    expand_who(items, aliases, 0, &mut expanded);
    let mut last: BTreeMap<Who, bool> = BTreeMap::new();
    let mut order = Vec::new();
    for (who, positive) in expanded {
        if !last.contains_key(&who) {
            order.push(who.clone());
        }
        last.insert(who, positive);
    }
    // `ALL, !bob` still matches everyone else: ALL stays.
    order.into_iter().filter(|w| last[w]).collect()
}

/// Whether a run-as user list lets the command run as root: the last item that matches root
/// (`ALL`, `root`, `#0`) decides, as in sudo.
fn runas_root(items: &[String], aliases: &Aliases) -> bool {
    let mut expanded = Vec::new();
    expand_who(items, aliases, 0, &mut expanded);
    expanded
        .into_iter()
        .rfind(|(w, _)| matches!(w, Who::All | Who::Uid(0)) || *w == Who::User("root".into()))
        .is_some_and(|(_, positive)| positive)
}

/// Whether a command list item (after its run-as, options and tags) is a command granted
/// (not negated, not an alias of negated commands only).
fn command_granted(command: &str, aliases: &Aliases, depth: usize) -> bool {
    let mut command = command.trim();
    let mut positive = true;
    while let Some(rest) = command.strip_prefix('!') {
        positive = !positive;
        command = rest.trim_start();
    }
    let name = command.split_whitespace().next().unwrap_or("");
    match aliases.get(name) {
        Some(inner) if depth < MAX_ALIAS_DEPTH => {
            let any = inner.iter().any(|c| command_granted(c, aliases, depth + 1));
            any == positive
        }
        Some(_) => false,
        None => positive && !command.is_empty(),
    }
}

/// Options a command may carry before it (`ROLE=x`, `TIMEOUT=1h`, ...).
const OPTIONS: &[&str] = &[
    "ROLE=",
    "TYPE=",
    "TIMEOUT=",
    "NOTBEFORE=",
    "NOTAFTER=",
    "CWD=",
    "CHROOT=",
    "APPARMOR_PROFILE=",
    "PRIVS=",
    "LIMITPRIVS=",
];

/// Strips options, tags (`NOPASSWD:` and the like) and digests (`sha256:...`) from the front
/// of a command.
fn strip_tags(mut command: &str) -> &str {
    loop {
        command = command.trim_start();
        let word_end = command.find(char::is_whitespace).unwrap_or(command.len());
        let word = &command[..word_end];
        if OPTIONS.iter().any(|o| word.starts_with(o)) {
            command = &command[word_end..];
            continue;
        }
        if let Some(colon) = command.find(':') {
            let tag = &command[..colon];
            let is_tag = !tag.is_empty() && tag.chars().all(|c| c.is_ascii_uppercase() || c == '_');
            let is_digest = ["sha224", "sha256", "sha384", "sha512"].contains(&tag);
            if is_tag {
                command = &command[colon + 1..];
                continue;
            }
            if is_digest {
                let rest = command[colon + 1..].trim_start();
                let digest_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                command = &rest[digest_end..];
                continue;
            }
        }
        return command;
    }
}

/// Whom a user specification lets run a command as root, or None when it lets nobody.
fn root_grant(spec: &str, aliases: &AllAliases) -> Option<Vec<Who>> {
    let (users, rest) = user_list(spec);
    if users.iter().all(|u| u.is_empty()) || rest.is_empty() {
        return None;
    }
    let users: Vec<String> = users.iter().map(|u| u.to_string()).collect();
    // Host specs: `HOSTS = cmnds : HOSTS = cmnds`; a `:` that separates them is one followed
    // by a host list and `=`.
    let mut granted = false;
    for host_spec in host_specs(rest) {
        let Some((_, commands)) = host_spec.split_once('=') else {
            continue;
        };
        // The run-as list carries over to the next commands until another is given.
        let mut root = true;
        for command in split_outside(commands, ',') {
            let mut command = command.trim_start();
            if let Some(inner) = command.strip_prefix('(') {
                let close = inner.find(')').unwrap_or(inner.len());
                let runas = &inner[..close];
                let (users_part, _groups) = runas.split_once(':').unwrap_or((runas, ""));
                let items: Vec<String> = split_outside(users_part, ',')
                    .into_iter()
                    .map(|i| i.trim().to_string())
                    .filter(|i| !i.is_empty())
                    .collect();
                // `()` and `(:group)` run as the invoking user; `(root)`, `(ALL)` as root.
                root = runas_root(&items, &aliases.runas);
                command = inner.get(close + 1..).unwrap_or("");
            }
            if root && command_granted(strip_tags(command), &aliases.cmnd, 0) {
                granted = true;
            }
        }
    }
    if !granted {
        return None;
    }
    let who = matching(&users, &aliases.user);
    (!who.is_empty()).then_some(who)
}

/// The host specifications of what follows a user list: split at each `:` (outside
/// parentheses, not escaped, not ending a tag or a digest) that is followed by `HOSTS =`.
fn host_specs(rest: &str) -> Vec<&str> {
    let mut specs = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b':' if depth == 0 => {
                let before = rest[start..i]
                    .rsplit(|c: char| c.is_whitespace() || c == ',')
                    .next()
                    .unwrap_or("");
                let tag = !before.is_empty()
                    && (before.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                        || before.starts_with("sha"));
                let after = &rest[i + 1..];
                let next_spec = after.split(',').next().unwrap_or("").contains('=')
                    && rest[start..i].contains('=');
                if !tag && next_spec {
                    specs.push(&rest[start..i]);
                    start = i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    specs.push(&rest[start..]);
    specs
}

#[cfg(test)]
mod tests;

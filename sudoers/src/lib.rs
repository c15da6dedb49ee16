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

/// Bytes of one sudoers file pim reads, at most: a larger one is not read (and so the view
/// is not judged), so that a huge file cannot hold the look at the host.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The sudoers files as read: the text of each file sudo reads, and the files that should
/// have been read and could not be (what they grant is unknown: the view is not judged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sudoers {
    pub files: Vec<(PathBuf, String)>,
    /// Each file that could not be read, with why.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Each file sudo refuses to read (its owner or mode), with why: it grants nothing, but
    /// someone put it there.
    pub refused: Vec<(PathBuf, String)>,
}

/// What reading one file gave.
pub enum FileRead {
    Text(String),
    /// Not a file sudo reads (missing, or not a regular file: sudo requires one): it grants
    /// nothing.
    Skipped,
    /// It could not be read, for this reason.
    Failed(String),
    /// sudo refuses it (owner or mode), for this reason.
    Refused(String),
}

/// Why sudo refuses a sudoers file of this owner, group and mode (its `sudo_secure_file`):
/// not owned by root, writable by all, or writable by a group other than root's.
pub fn refused_for(uid: u32, gid: u32, mode: u32) -> Option<String> {
    if uid != 0 {
        Some(format!("it is owned by uid {uid}, not root"))
    } else if mode & 0o002 != 0 {
        Some("it is writable by everyone".into())
    } else if mode & 0o020 != 0 && gid != 0 {
        Some(format!("it is writable by group {gid}"))
    } else {
        None
    }
}

/// The text of /etc/sudoers, of the files sudo reads from /etc/sudoers.d, and of every file
/// an include directive brings in, wherever it is; read as root.
pub fn read_system() -> Sudoers {
    read_from(Path::new(SUDOERS), Path::new(SUDOERS_DIR))
}

/// One sudoers file as sudo would take it: opened without waiting (a FIFO must not hold the
/// reader), only a regular file, at most [`MAX_FILE_BYTES`], bytes that are not UTF-8
/// replaced (a rule around them is still read).
pub fn read_file(path: &Path) -> FileRead {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Skipped,
        Err(e) => return FileRead::Failed(e.to_string()),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return FileRead::Failed(e.to_string()),
    };
    if !meta.is_file() {
        return FileRead::Skipped;
    }
    if let Some(why) = refused_for(meta.uid(), meta.gid(), meta.mode()) {
        return FileRead::Refused(why);
    }
    if meta.len() > MAX_FILE_BYTES {
        return FileRead::Failed(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    match file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
            FileRead::Failed(format!("it is larger than {MAX_FILE_BYTES} bytes"))
        }
        Ok(_) => FileRead::Text(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => FileRead::Failed(e.to_string()),
    }
}

/// [`read_system`] with other places for /etc/sudoers and /etc/sudoers.d (tests, sandboxes).
pub fn read_from(sudoers: &Path, dir: &Path) -> Sudoers {
    let mut found = files(sudoers, &read_file, &included_dir);
    // Debian's /etc/sudoers ends with `@includedir /etc/sudoers.d`; one without the directive
    // does not read the directory, but a file put there is still worth an alert (a later edit
    // of /etc/sudoers brings it in), so the directory is always read, after.
    for path in included_dir(dir) {
        if !found.files.iter().any(|(seen, _)| *seen == path) {
            let more = files(&path, &read_file, &included_dir);
            found.files.extend(more.files);
            found.unreadable.extend(more.unreadable);
            found.refused.extend(more.refused);
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
/// each once, and those that could not be read. A relative path is relative to the including
/// file's directory.
pub fn files(
    first: &Path,
    read: &dyn Fn(&Path) -> FileRead,
    list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
) -> Sudoers {
    fn visit(
        path: &Path,
        depth: usize,
        read: &dyn Fn(&Path) -> FileRead,
        list_dir: &dyn Fn(&Path) -> Vec<PathBuf>,
        out: &mut Sudoers,
    ) {
        if depth > MAX_DEPTH || out.files.iter().any(|(seen, _)| seen == path) {
            return;
        }
        let text = match read(path) {
            FileRead::Text(text) => text,
            FileRead::Skipped => return,
            FileRead::Failed(why) => {
                out.unreadable.push((path.to_path_buf(), why));
                return;
            }
            FileRead::Refused(why) => {
                out.refused.push((path.to_path_buf(), why));
                return;
            }
        };
        out.files.push((path.to_path_buf(), text.clone()));
        let base = path.parent().unwrap_or(Path::new("/"));
        for (directive, target) in includes(&text) {
            let target = base.join(expand_host(&target, &short_host_name()));
            if directive == "includedir" {
                for file in list_dir(&target) {
                    visit(&file, depth + 1, read, list_dir, out);
                }
            } else {
                visit(&target, depth + 1, read, list_dir, out);
            }
        }
    }
    let mut out = Sudoers::default();
    visit(first, 0, read, list_dir, &mut out);
    out
}

/// The include directives of sudoers text: (`include` or `includedir`, path), from
/// `@include`, `#include`, `@includedir` and `#includedir` lines, read as sudo reads them: a
/// path quoted (`@include"x y"`, no blank needed before the quote) or with escaped blanks
/// (`x\ y`), a comment allowed after it.
pub fn includes(text: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix('@').or_else(|| line.strip_prefix('#')) else {
            continue;
        };
        let (directive, rest) = if let Some(path) = rest.strip_prefix("includedir") {
            ("includedir", path)
        } else if let Some(path) = rest.strip_prefix("include") {
            ("include", path)
        } else {
            continue;
        };
        if !rest.starts_with(|c: char| c.is_whitespace() || c == '"') {
            continue;
        }
        if let Some(path) = include_path(rest.trim_start()) {
            found.push((directive, path));
        }
    }
    found
}

/// The path of an include line (after the directive and blanks), escapes taken away; None
/// when there is none or something other than a comment follows it.
fn include_path(text: &str) -> Option<String> {
    let mut path = String::new();
    let mut chars = text.chars();
    let quoted = text.starts_with('"');
    if quoted {
        chars.next();
    }
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => path.push(chars.next()?),
            '"' if quoted => {
                closed = true;
                break;
            }
            c if !quoted && c.is_whitespace() => break,
            c => path.push(c),
        }
    }
    let after = chars.as_str().trim_start();
    let well_ended = (closed || !quoted) && (after.is_empty() || after.starts_with('#'));
    (well_ended && !path.is_empty()).then_some(path)
}

/// An include path with sudo's `%h` (the short host name) and `%%` expanded.
pub fn expand_host(path: &str, short_host: &str) -> String {
    let mut out = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('h')) => {
                out.push_str(short_host);
                chars.next();
            }
            ('%', Some('%')) => {
                out.push('%');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// This host's short name (up to the first `.`), as sudo expands `%h`.
fn short_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    name.trim().split('.').next().unwrap_or("").to_string()
}

/// The code of a sudoers line: up to a `#` that starts a comment (`#1000` and `#-1`, uids, do
/// not; nor does an escaped `\#`).
pub fn code(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'#' if !is_uid(&bytes[i + 1..]) => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// Whether what follows a `#` makes it a uid: digits, after an optional `-` (sudo's `#-1`).
fn is_uid(after: &[u8]) -> bool {
    let digits = after.strip_prefix(b"-").unwrap_or(after);
    digits.first().is_some_and(u8::is_ascii_digit)
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
        // `\` then blanks at the end of a line continues it, as in sudo.
        match line.trim_end_matches([' ', '\t']).strip_suffix('\\') {
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

/// A rule that lets the users it names run commands as root, or with a group (`sudo -g`):
/// where it is, whom it names (the
/// items that match positively, aliases expanded), its text, and the definitions of the
/// aliases it uses (what it grants depends on them as much as on its text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootRule {
    pub file: PathBuf,
    /// 1-based, the line the rule starts on.
    pub line: usize,
    pub who: Vec<Who>,
    /// Whether it gives root; when not, it gives `groups`.
    pub root: bool,
    /// The groups its run-as group lists let its commands run with (`sudo -g`): `ALL`, a
    /// group (`Who::Group`) or a gid (`Who::Gid`, written `#gid` there).
    pub groups: Vec<Who>,
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
    read_rules(files)
        .root
        .into_iter()
        .filter(|r| r.root)
        .collect()
}

/// A logical line pim cannot read with sudo's grammar: what sudo makes of it is unknown (it
/// may give root), so it is reported rather than passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unparsed {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
}

/// What the rules of the files are: those that give root ([`root_rules`]) or a run-as group,
/// and the lines
/// that are neither a `Defaults` line, an alias definition, an include nor a rule pim reads
/// to the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub root: Vec<RootRule>,
    pub unparsed: Vec<Unparsed>,
}

/// Whether a logical line is a `Defaults` line: the keyword alone, or followed by a blank or
/// a binding (`:`, `@`, `>`, `!`); `Defaultsx` is a user name (sudo takes the longest word).
fn is_defaults(code: &str) -> bool {
    code.strip_prefix("Defaults").is_some_and(|rest| {
        rest.is_empty() || rest.starts_with(|c: char| c.is_whitespace() || ":@>!".contains(c))
    })
}

/// [`root_rules`], and the lines pim cannot read; a run-as group counts as root (see
/// [`read_rules_knowing`]).
pub fn read_rules(files: &[(PathBuf, String)]) -> Rules {
    read_rules_knowing(files, &|_| false)
}

/// [`read_rules`], knowing which run-as groups root is provably not in.
pub fn read_rules_knowing(files: &[(PathBuf, String)], root_outside: &RootOutside<'_>) -> Rules {
    let mut aliases = AllAliases::default();
    let mut specs = Vec::new();
    let mut out = Rules::default();
    for (path, text) in files {
        for (line, code) in logical_lines(text) {
            let word = code.split_whitespace().next().unwrap_or("");
            let mut host_aliases = Aliases::new();
            let table = match word {
                "User_Alias" => &mut aliases.user,
                "Runas_Alias" => &mut aliases.runas,
                "Cmnd_Alias" | "Cmd_Alias" => &mut aliases.cmnd,
                "Host_Alias" => &mut host_aliases,
                _ => {
                    let include = ["@include ", "@includedir ", "@include\"", "@includedir\""]
                        .iter()
                        .any(|d| code.starts_with(d));
                    if !is_defaults(&code) && !include {
                        specs.push((path.clone(), line, code));
                    }
                    continue;
                }
            };
            if !define_aliases(&code[word.len()..], table) {
                out.unparsed.push(Unparsed {
                    file: path.clone(),
                    line,
                    text: code,
                });
            }
        }
    }
    for (file, line, text) in specs {
        match root_grant(&text, &aliases, root_outside) {
            None => out.unparsed.push(Unparsed { file, line, text }),
            Some(grant) if grant.who.is_empty() || !grant.root && grant.groups.is_empty() => {}
            Some(grant) => out.root.push(RootRule {
                file,
                line,
                who: grant.who,
                root: grant.root,
                groups: grant.groups,
                aliases: aliases_used(&text, &aliases),
                text,
            }),
        }
    }
    out
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

/// `NAME = a, b : NAME2 = c` into `table`; false when a definition is not `NAME = items`
/// (NAME in capitals, digits and `_`, starting with a capital). A name defined again keeps
/// its first definition, as sudo does.
fn define_aliases(text: &str, table: &mut Aliases) -> bool {
    let mut read = true;
    for definition in split_outside(text, ':') {
        let Some((name, items)) = definition.split_once('=') else {
            read = false;
            continue;
        };
        let name = name.trim();
        let well_named = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        let items: Vec<String> = split_outside(items, ',')
            .into_iter()
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect();
        if !well_named || items.is_empty() {
            read = false;
            continue;
        }
        table.entry(name.to_string()).or_insert(items);
    }
    read
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
///
/// A group, netgroup or plugin group (`%wheel`, `%#0`, `%:admins`, `+ops`) lets `sudo -u
/// root` work when root is in it: it counts as root unless `root_outside` says root is
/// provably not in it. A negated one is not taken to leave root out (root may not be in it).
fn runas_root(items: &[String], aliases: &Aliases, root_outside: &RootOutside<'_>) -> bool {
    let mut expanded = Vec::new();
    expand_who(items, aliases, 0, &mut expanded);
    expanded
        .into_iter()
        .rfind(|(w, positive)| match w {
            Who::All | Who::Uid(0) => true,
            Who::User(name) => name == "root",
            Who::Group(_) | Who::Gid(_) | Who::NonUnixGroup(_) | Who::Netgroup(_) => {
                *positive && !root_outside(w)
            }
            Who::Uid(_) => false,
        })
        .is_some_and(|(_, positive)| positive)
}

/// Whether root is provably not a member of a group (or netgroup) a run-as list names.
pub type RootOutside<'a> = dyn Fn(&Who) -> bool + 'a;

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

/// sudo's tags: only these, followed by `:`, are tags (`ALL:` is not one; there a `:`
/// separates host specifications).
const TAGS: &[&str] = &[
    "NOPASSWD",
    "PASSWD",
    "NOEXEC",
    "EXEC",
    "SETENV",
    "NOSETENV",
    "LOG_INPUT",
    "NOLOG_INPUT",
    "LOG_OUTPUT",
    "NOLOG_OUTPUT",
    "MAIL",
    "NOMAIL",
    "FOLLOW",
    "NOFOLLOW",
    "INTERCEPT",
    "NOINTERCEPT",
];

const DIGESTS: &[&str] = &["sha224", "sha256", "sha384", "sha512"];

/// One command of a rule: its run-as list (users, and groups after `:`) if it gives one, and
/// the command as written (escapes removed), with its `!`s.
struct CmndSpec {
    runas: Option<(Vec<String>, Vec<String>)>,
    command: String,
}

/// A cursor over what follows a user list, read with sudo's grammar:
/// `hosts = cmndspec, cmndspec : hosts = cmndspec`, a cmndspec being
/// `[(runas)] [options] [tags] [digest] [!]command [args]`.
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl Scan<'_> {
    fn blanks(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.blanks();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A word: up to a blank or one of `stop`, `\` escaping the next character; as written.
    fn word(&mut self, stop: &[u8]) -> &str {
        self.blanks();
        let start = self.at;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                self.at = (self.at + 2).min(self.text.len());
                continue;
            }
            if c.is_ascii_whitespace() || stop.contains(&c) {
                break;
            }
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at]).unwrap_or("")
    }

    /// Whether `keyword`, then blanks, then `:` follow; if so they are consumed.
    fn keyword_colon(&mut self, keyword: &str) -> bool {
        let rest = &self.text[self.at..];
        if !rest.starts_with(keyword.as_bytes()) {
            return false;
        }
        let mut end = keyword.len();
        while rest.get(end).is_some_and(u8::is_ascii_whitespace) {
            end += 1;
        }
        if rest.get(end) == Some(&b':') {
            self.at += end + 1;
            true
        } else {
            false
        }
    }

    /// A list of words separated by `,` (each maybe with `!`s), as written.
    fn list(&mut self, stop: &[u8]) -> Option<Vec<String>> {
        let mut items = Vec::new();
        loop {
            let mut item = String::new();
            while self.eat(b'!') {
                item.push('!');
            }
            let word = self.word(stop);
            if word.is_empty() {
                return None;
            }
            item.push_str(&unescape(word));
            items.push(item);
            if !self.eat(b',') {
                return Some(items);
            }
        }
    }

    fn cmndspec(&mut self) -> Option<CmndSpec> {
        let mut spec = CmndSpec {
            runas: None,
            command: String::new(),
        };
        if self.eat(b'(') {
            let mut users = Vec::new();
            let mut groups = Vec::new();
            self.blanks();
            if !matches!(self.peek(), Some(b':' | b')')) {
                users = self.list(b",:()=")?;
            }
            if self.eat(b':') {
                self.blanks();
                if self.peek() != Some(b')') {
                    groups = self.list(b",:()=")?;
                }
            }
            if !self.eat(b')') {
                return None;
            }
            spec.runas = Some((users, groups));
        }
        loop {
            self.blanks();
            let rest = &self.text[self.at..];
            if let Some(option) = OPTIONS.iter().find(|o| rest.starts_with(o.as_bytes())) {
                self.at += option.len();
                if self.word(b",:=").is_empty() {
                    return None;
                }
                continue;
            }
            if TAGS.iter().any(|t| self.keyword_colon(t)) {
                continue;
            }
            if DIGESTS.iter().any(|d| self.keyword_colon(d)) {
                if self.word(b",:=").is_empty() {
                    return None;
                }
                continue;
            }
            break;
        }
        while self.eat(b'!') {
            spec.command.push('!');
        }
        // The command and its arguments: quotes and parentheses are ordinary characters here;
        // an unescaped `,` or `:` ends it (`=` may not appear unescaped).
        self.blanks();
        let start = self.at;
        while let Some(c) = self.peek() {
            match c {
                b'\\' => self.at = (self.at + 2).min(self.text.len()),
                b',' | b':' | b'=' => break,
                _ => self.at += 1,
            }
        }
        let written = std::str::from_utf8(&self.text[start..self.at])
            .ok()?
            .trim_end();
        if written.is_empty() {
            return None;
        }
        spec.command.push_str(&unescape(written));
        Some(spec)
    }

    /// The privileges: for each host specification, its commands; None when the text is not
    /// what sudo's grammar allows.
    fn privileges(&mut self) -> Option<Vec<Vec<CmndSpec>>> {
        let mut privileges = Vec::new();
        loop {
            self.list(b",:=()")?;
            if !self.eat(b'=') {
                return None;
            }
            let mut commands = Vec::new();
            loop {
                commands.push(self.cmndspec()?);
                if !self.eat(b',') {
                    break;
                }
            }
            privileges.push(commands);
            self.blanks();
            match self.peek() {
                None => return Some(privileges),
                Some(b':') => self.at += 1,
                Some(_) => return None,
            }
        }
    }
}

/// A word as sudo reads it: `\x41` is the byte 0x41, `\c` is `c`.
fn unescape(word: &str) -> String {
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            let hex = bytes
                .get(i + 2..i + 4)
                .filter(|_| bytes[i + 1] == b'x')
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(byte) => {
                    out.push(byte);
                    i += 4;
                }
                None => {
                    out.push(bytes[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a user specification gives: whom, whether root, and the groups a run-as group list
/// lets its commands run with (`sudo -g`: `ALL`, a name or `#gid`).
struct Grant {
    who: Vec<Who>,
    root: bool,
    groups: Vec<Who>,
}

/// What a user specification gives; None when pim cannot read it with sudo's grammar.
fn root_grant(spec: &str, aliases: &AllAliases, root_outside: &RootOutside<'_>) -> Option<Grant> {
    let (users, rest) = user_list(spec);
    if users.iter().any(|u| u.is_empty()) || rest.is_empty() {
        return None;
    }
    let users: Vec<String> = users.iter().map(|u| unescape(u)).collect();
    let privileges = Scan {
        text: rest.as_bytes(),
        at: 0,
    }
    .privileges()?;
    let mut root_granted = false;
    let mut groups = Vec::new();
    for commands in privileges {
        // The run-as list carries over to the next commands until another is given.
        let mut root = true;
        let mut runas_groups: Vec<Who> = Vec::new();
        for spec in commands {
            if let Some((users, group_items)) = &spec.runas {
                // `()` and `(:group)` run as the invoking user; `(root)`, `(ALL)` as root.
                root = runas_root(users, &aliases.runas, root_outside);
                runas_groups = matching(group_items, &aliases.runas)
                    .into_iter()
                    .map(|w| match w {
                        Who::User(name) => Who::Group(name),
                        Who::Uid(gid) => Who::Gid(gid),
                        other => other,
                    })
                    .collect();
            }
            if command_granted(&spec.command, &aliases.cmnd, 0) {
                root_granted |= root;
                for group in &runas_groups {
                    if !groups.contains(group) {
                        groups.push(group.clone());
                    }
                }
            }
        }
    }
    Some(Grant {
        who: matching(&users, &aliases.user),
        root: root_granted,
        groups,
    })
}

#[cfg(test)]
mod tests;

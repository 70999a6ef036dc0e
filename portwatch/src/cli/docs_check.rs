//! The documentation cannot drift from the code: every `portwatch` command
//! shown in README.md and docs/ parses with today's flags; every JSON line
//! shown reads as a wire line, and every rules file shown as a rules file;
//! each page's contents list is its headings; every relative link finds
//! its file and heading; README.md stays a front door (under 15 KiB); and
//! docs/commands.md holds every command's help as the binary prints it.
//!
//! `PORTWATCH_WRITE_DOCS=1 cargo test -p portwatch --bin portwatch docs_check`
//! (what `cargo xtask docs` runs) writes the generated parts instead.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use clap::{CommandFactory as _, Parser as _};
use portwatch::wire::Line;

use crate::args::Cli;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn writing() -> bool {
    std::env::var_os("PORTWATCH_WRITE_DOCS").is_some_and(|v| v == "1")
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The fenced blocks of a page: (language, lines).
fn blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => open = Some((lang.trim().to_string(), Vec::new())),
            }
        } else if let Some((_, lines)) = &mut open {
            lines.push(line.to_string());
        }
    }
    out
}

/// Headings outside code blocks: (level, text).
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let level = line.chars().take_while(|c| *c == '#').count();
            if let Some(t) = line[level..].strip_prefix(' ') {
                out.push((level, t.trim().to_string()));
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces
/// as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Splits a shell line into words: quotes kept together, stopping at a
/// pipe, a redirection, `&`, `;` or a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '|' | '>' | '<' | '&' | ';' | '#') if cur.is_empty() => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// The portwatch arguments a shown command line runs, if it runs
/// portwatch: after `sudo`, `VAR=value`, or `cargo xtask run --`.
fn portwatch_args(line: &str) -> Option<Vec<String>> {
    let mut w = words(line);
    while w
        .first()
        .is_some_and(|x| x == "sudo" || x == "-E" || x.contains('='))
    {
        w.remove(0);
    }
    if w.len() >= 4 && w[..4] == ["cargo", "xtask", "run", "--"] {
        w.drain(..4);
        w.insert(0, "portwatch".into());
    }
    (w.first()
        .is_some_and(|x| x == "portwatch" || x.ends_with("/portwatch")))
    .then_some(w)
}

#[test]
fn every_command_shown_parses_with_todays_flags() {
    let mut checked = 0;
    for page in pages() {
        for (lang, lines) in blocks(&read(&page)) {
            let commands: Vec<&str> = match lang.as_str() {
                "console" => lines.iter().filter_map(|l| l.strip_prefix("$ ")).collect(),
                "sh" => lines.iter().map(String::as_str).collect(),
                _ => continue,
            };
            for line in commands {
                let Some(args) = portwatch_args(line) else {
                    continue;
                };
                checked += 1;
                if let Err(e) = Cli::try_parse_from(&args) {
                    assert!(
                        matches!(
                            e.kind(),
                            clap::error::ErrorKind::DisplayHelp
                                | clap::error::ErrorKind::DisplayVersion
                        ),
                        "{}: `{line}` does not parse: {e}",
                        page.display()
                    );
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} commands found");
}

#[test]
fn every_json_shown_reads_as_portwatch_reads_it() {
    let mut lines_read = 0;
    let mut files_read = 0;
    let mut policies_read = 0;
    for page in pages() {
        for (lang, lines) in blocks(&read(&page)) {
            if !matches!(lang.as_str(), "json" | "console") {
                continue;
            }
            for l in lines.iter().filter(|l| l.starts_with("{\"event\"")) {
                let line = Line::parse(l).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
                assert_ne!(line, Line::Unknown, "{}: {l}", page.display());
                // Written back, it is the same object: no field renamed,
                // left out or made up.
                let shown: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                let written: serde_json::Value =
                    serde_json::from_str(&line.to_json()).unwrap_or_default();
                assert_eq!(shown, written, "{}: {l}", page.display());
                lines_read += 1;
            }
            let text = lines.join("\n");
            // A `list --json` array reads as list entries and writes back
            // the same.
            if lang == "json" && text.trim_start().starts_with('[') {
                let rows: Vec<portwatch::wire::ListEntry> = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
                let shown: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let written = serde_json::to_value(&rows).unwrap_or_default();
                assert_eq!(shown, written, "{}", page.display());
            }
            // A policy file shown loads as `--policy` loads it.
            if lang == "json"
                && text.trim_start().starts_with('{')
                && text.contains("\"version\"")
                && text.contains("\"expected\"")
            {
                portwatch::policy::Policy::parse(text.as_bytes())
                    .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
                policies_read += 1;
            }
            if lang == "json" && text.trim_start().starts_with('{') && text.contains("\"rules\"") {
                portwatch::rules::validate::load_bytes(text.as_bytes(), &page)
                    .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
                files_read += 1;
            }
        }
    }
    assert!(
        lines_read >= 10 && files_read >= 1 && policies_read >= 1,
        "{lines_read} lines, {files_read} rules files, {policies_read} policies"
    );
}

/// Every long flag of every command.
fn known_flags() -> std::collections::BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                out.insert(format!("--{long}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = std::collections::BTreeSet::new();
    walk(&cmd, &mut out);
    out.extend(["--help".to_string(), "--version".to_string()]);
    out
}

/// Flags the docs name that belong to other tools.
const OTHER_TOOLS_FLAGS: [&str; 4] = [
    "--now",     // systemctl enable --now
    "--offline", // systemd-analyze security --offline
    "--only",    // cargo xtask bench --only
    "--quick",   // cargo xtask bench --quick
];

/// Synopses and prose name flags too: each is one portwatch has today.
#[test]
fn every_flag_named_anywhere_exists() {
    let known = known_flags();
    for page in pages() {
        let text = read(&page);
        for (i, _) in text.match_indices("--") {
            let before = text[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_') {
                continue;
            }
            let flag: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if flag.len() < 3 || !flag[2..].starts_with(|c: char| c.is_ascii_lowercase()) {
                continue;
            }
            assert!(
                known.contains(&flag) || OTHER_TOOLS_FLAGS.contains(&flag.as_str()),
                "{}: `{flag}` is no flag of portwatch's",
                page.display()
            );
        }
    }
}

/// A page's contents: its `##` and `###` headings, as links (not those
/// of the generated help, which has one per command).
fn contents(text: &str) -> String {
    let text = between(text, "<!-- help -->", "<!-- /help -->", "").unwrap_or(text.to_string());
    let mut out = String::from("<!-- contents -->\n");
    for (level, h) in headings(&text) {
        if level == 2 || level == 3 {
            let indent = if level == 3 { "  " } else { "" };
            out.push_str(&format!("{indent}- [{h}](#{})\n", anchor(&h)));
        }
    }
    out.push_str("<!-- /contents -->");
    out
}

/// Replaces what lies between `start` and `end` (inclusive) in `text`.
fn between(text: &str, start: &str, end: &str, new: &str) -> Option<String> {
    let i = text.find(start)?;
    let j = text[i..].find(end)? + i + end.len();
    Some(format!("{}{new}{}", &text[..i], &text[j..]))
}

#[test]
fn every_page_of_docs_lists_its_headings() {
    for page in pages().into_iter().skip(1) {
        let text = read(&page);
        let want = contents(&text);
        let fixed = between(&text, "<!-- contents -->", "<!-- /contents -->", &want)
            .unwrap_or_else(|| panic!("{} has no <!-- contents --> list", page.display()));
        if writing() {
            std::fs::write(&page, fixed).unwrap();
        } else {
            assert!(
                fixed == text,
                "{}: its contents are not its headings: run `cargo xtask docs`",
                page.display()
            );
        }
    }
}

#[test]
fn every_relative_link_finds_its_page_and_heading() {
    let mut anchors: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for page in pages() {
        let text = read(&page);
        anchors.insert(
            page.canonicalize().unwrap(),
            headings(&text).iter().map(|(_, h)| anchor(h)).collect(),
        );
    }
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http") || target.contains(' ') {
                continue;
            }
            let (file, frag) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            assert!(file.exists(), "{}: no {}", page.display(), file.display());
            if !frag.is_empty() {
                let known = anchors.get(&file.canonicalize().unwrap());
                assert!(
                    known.is_some_and(|a| a.iter().any(|x| x == frag)),
                    "{}: no heading #{frag} in {}",
                    page.display(),
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.len() <= 15 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
    // The two commands a newcomer needs come first.
    let first_block = blocks(&readme).into_iter().next().unwrap();
    assert!(first_block.1[0].starts_with("cargo xtask run"));
    assert!(first_block.1[1].starts_with("cargo xtask test"));
}

/// Every command's help, as the binary prints it.
fn help_text() -> String {
    fn walk(cmd: &mut clap::Command, path: &str, out: &mut String) {
        if cmd.is_hide_set() {
            return;
        }
        let help = cmd.render_long_help().to_string();
        out.push_str(&format!(
            "### `{path}`\n\n```text\n{}\n```\n\n",
            help.trim_end()
        ));
        let names: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            if let Some(sub) = cmd.find_subcommand_mut(&name) {
                walk(sub, &format!("{path} {name}"), out);
            }
        }
    }
    let mut out = String::from("<!-- help -->\n");
    let mut cmd = Cli::command();
    cmd.build();
    walk(&mut cmd, "portwatch", &mut out);
    out.push_str("<!-- /help -->");
    out
}

#[test]
fn the_command_reference_holds_every_commands_help() {
    let page = root().join("docs/commands.md");
    let text = read(&page);
    let fixed = between(&text, "<!-- help -->", "<!-- /help -->", &help_text())
        .expect("docs/commands.md has no <!-- help --> section");
    if writing() {
        std::fs::write(&page, fixed).unwrap();
    } else {
        assert!(
            fixed == text,
            "docs/commands.md's help is not the binary's: run `cargo xtask docs`"
        );
    }
}

#[test]
fn shell_words_are_split_as_a_shell_would() {
    assert_eq!(
        words(r#"sudo portwatch -f 'proc:"my app"' watch --json | jq . # note"#),
        [
            "sudo",
            "portwatch",
            "-f",
            "proc:\"my app\"",
            "watch",
            "--json"
        ]
    );
    assert_eq!(
        portwatch_args("cargo xtask run -- watch --json"),
        Some(vec!["portwatch".into(), "watch".into(), "--json".into()])
    );
    assert_eq!(portwatch_args("ss -ltnp"), None);
    assert_eq!(
        anchor("What portwatch refuses, and why"),
        "what-portwatch-refuses-and-why"
    );
    assert_eq!(anchor("`portwatch doctor`"), "portwatch-doctor");
}

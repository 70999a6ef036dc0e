//! Man pages and shell completions, made from the binary's own arguments:
//! every page renders with `man -l` without a groff warning, and the bash
//! completion loads in bash and completes commands and flags.

use std::{path::Path, process::Command};

use crate::support::BIN;

/// A page per command a user can type, besides the main one.
const COMMANDS: [&str; 8] = [
    "tui",
    "watch",
    "list",
    "alerts",
    "daemon",
    "notify",
    "doctor",
    "completions",
];

#[test]
fn every_man_page_renders_without_a_warning() {
    let dir = std::env::temp_dir().join(format!("portwatch-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ok = Command::new(BIN)
        .arg("manpages")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let pages: Vec<String> = std::iter::once("portwatch".to_string())
        .chain(COMMANDS.iter().map(|c| format!("portwatch-{c}")))
        .collect();
    for page in &pages {
        let file = dir.join(format!("{page}.1"));
        assert!(file.exists(), "no {page}.1");
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&file)
            .env("MANWIDTH", "80")
            .output()
            .expect("man (man-db) is needed by the tests");
        let text = plain(&String::from_utf8_lossy(&out.stdout));
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && warnings.is_empty(),
            "{page}: {warnings}"
        );
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}: {text}"
        );
    }
    // The watch page documents its flags.
    let watch = Command::new("man")
        .arg("-l")
        .arg(dir.join("portwatch-watch.1"))
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(plain(&String::from_utf8_lossy(&watch.stdout)).contains("--connect"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `man`'s output without its overstrikes (`N\x08N` is a bold N).
fn plain(text: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

/// Runs the bash completion for the words `line` (the last one being
/// completed) and returns the candidates.
fn complete(line: &[&str]) -> Vec<String> {
    let words = line.join(" ");
    let script = format!(
        r#"source <("{BIN}" completions bash) || exit 9
complete -p portwatch >/dev/null || exit 8
COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}
_portwatch portwatch "{cur}" "{prev}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        cword = line.len() - 1,
        cur = line[line.len() - 1],
        prev = line[line.len() - 2],
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bash_completion_loads_and_completes() {
    assert_eq!(complete(&["portwatch", "wat"]), ["watch"]);
    assert!(complete(&["portwatch", "watch", "--pro"]).contains(&"--proto".to_string()));
    let protos = complete(&["portwatch", "list", "--proto", ""]);
    for p in ["tcp", "udp", "all"] {
        assert!(protos.contains(&p.to_string()), "{protos:?}");
    }
}

#[test]
fn zsh_and_fish_completions_are_made_too() {
    for (shell, marker) in [
        ("zsh", "#compdef portwatch"),
        ("fish", "complete -c portwatch"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(marker),
            "{shell}"
        );
    }
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(!Path::new("portwatch-completions-tcsh").exists());
}

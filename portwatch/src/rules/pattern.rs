//! The regexes of rule files. portwatch 0.1.8's own example matches
//! `^(?!127\.).+`, so patterns may use look-around and backreferences
//! (fancy-regex; patterns without them run on the regex crate's engine).
//! Backtracking is bounded, so no pattern can make one match run away.

use std::sync::atomic::{AtomicBool, Ordering};

use fancy_regex::{Regex, RegexBuilder};

/// Backtracking steps one match may take. The texts matched are short
/// (a process name, an IP address), so a pattern that needs more than
/// this is pathological.
const BACKTRACK_LIMIT: usize = 100_000;

/// A compiled rule pattern.
#[derive(Debug)]
pub struct Pattern {
    regex: Regex,
    /// Whether a match that ran out of steps was already logged.
    warned: AtomicBool,
}

impl Clone for Pattern {
    fn clone(&self) -> Self {
        Self {
            regex: self.regex.clone(),
            warned: AtomicBool::new(self.warned.load(Ordering::Relaxed)),
        }
    }
}

impl Pattern {
    /// Compiles `pattern`; the error is the parser's last line, one
    /// sentence.
    pub fn new(pattern: &str) -> Result<Self, String> {
        RegexBuilder::new(pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map(|regex| Self {
                regex,
                warned: AtomicBool::new(false),
            })
            .map_err(|e| {
                e.to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
    }

    /// Whether `text` matches. A match that exceeds the backtracking
    /// limit counts as no match, and the first one is logged.
    pub fn is_match(&self, text: &str) -> bool {
        match self.regex.is_match(text) {
            Ok(m) => m,
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "pattern {:?} gave up on {:?} ({e}); counted as no match",
                        self.regex.as_str(),
                        text
                    );
                }
                false
            }
        }
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_ahead_works_as_in_0_1_8s_example() {
        let p = Pattern::new(r"^(?!127\.).+").unwrap();
        assert!(p.is_match("10.0.0.1"));
        assert!(p.is_match("::1"));
        assert!(!p.is_match("127.0.0.1"));
    }

    #[test]
    fn look_behind_and_backreferences_work() {
        assert!(Pattern::new(r"(?<=py)thon").unwrap().is_match("python3"));
        assert!(Pattern::new(r"^(\w)\1$").unwrap().is_match("aa"));
    }

    #[test]
    fn an_invalid_pattern_is_one_sentence() {
        let e = Pattern::new("(node").unwrap_err();
        assert!(!e.contains('\n') && !e.is_empty(), "{e}");
    }

    #[test]
    fn a_runaway_match_gives_up_and_is_no_match() {
        // Two ways to match each `a`, so 2^40 ways to fail; the look-ahead
        // inside the loop keeps it on the backtracking engine.
        let p = Pattern::new(r"^(?:(?=a)a|a)+$").unwrap();
        let text = format!("{}b", "a".repeat(40));
        assert!(!p.is_match(&text));
        assert!(p.warned.load(Ordering::Relaxed));
        assert!(p.is_match("aaaa"));
    }
}

//! Text to fit a width: shortened with `…`, or wrapped without a cut.
//! Widths are in characters, as everywhere in the TUI. Pure.

/// Shortens `s` to at most `max` characters (never inside one), with `…`
/// where it was cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// `s` in lines of at most `w` characters, broken after spaces where it
/// can be, inside a word where it must: nothing is cut.
pub fn wrap(s: &str, w: usize) -> Vec<String> {
    let w = w.max(1);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in s.split_inclusive(' ') {
        let n = word.chars().count();
        if len + n > w && len > 0 {
            out.push(std::mem::take(&mut line));
            len = 0;
        }
        for c in word.chars() {
            if len == w {
                out.push(std::mem::take(&mut line));
                len = 0;
            }
            line.push(c);
            len += 1;
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    // A space where a line was broken is shown at neither end.
    for (i, l) in out.iter_mut().enumerate() {
        while l.len() > 1 && l.ends_with(' ') {
            l.pop();
        }
        if i > 0 {
            let trimmed = l.trim_start_matches(' ');
            if !trimmed.is_empty() && trimmed.len() != l.len() {
                *l = trimmed.to_string();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_nothing() {
        assert_eq!(
            wrap("node server.js --port 8080", 12),
            ["node", "server.js", "--port 8080"]
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 5), [""]);
        assert_eq!(wrap("a b", 10), ["a b"]);
        assert_eq!(wrap("abcd ef", 4), ["abcd", "ef"]);
        let long = "python3 -m http.server --bind 127.0.0.1 --directory /srv/www 8000";
        let lines = wrap(long, 20);
        assert!(lines.iter().all(|l| l.chars().count() <= 20));
        assert_eq!(lines.join(" "), long);
    }

    #[test]
    fn shortening_keeps_whole_characters() {
        assert_eq!(shorten("nginx", 10), "nginx");
        assert_eq!(shorten("服务服务服务", 4), "服务服…");
        assert_eq!(shorten("abc", 0), "");
        assert_eq!(shorten("\u{1f600}\u{1f600}", 1), "…");
    }
}

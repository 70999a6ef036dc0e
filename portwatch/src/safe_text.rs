//! Turns untrusted bytes (process names, command lines, cgroup paths,
//! what a rules file holds) into text that is safe to print on a terminal
//! and to put in JSON. Everything untrusted goes through here once, where
//! it is read, so every output shows it the same way.

use std::fmt::Write as _;

/// Decodes `bytes` as UTF-8, keeping printable characters as they are and
/// writing every control character (C0, DEL, C1), every character that
/// makes text lie (bidirectional overrides, zero-width and other invisible
/// characters), every invalid byte and the backslash itself as an escape
/// (`\x1b`, `\u{202e}`, `\xff`, `\\`). The result never contains a raw
/// control byte, what it shows is what it holds, and distinct inputs stay
/// distinct.
pub fn safe_text(bytes: &[u8]) -> String {
    // Most names are printable ASCII: kept as they are, without a
    // character-by-character copy (a UDP churn decodes 500,000 a second).
    match plain_ascii(bytes) {
        Some(plain) => plain.to_owned(),
        None => escaped(bytes),
    }
}

/// Like [`safe_text`] for a string that is already valid UTF-8.
pub fn safe_str(s: &str) -> String {
    safe_text(s.as_bytes())
}

/// [`safe_text`] character by character, without its shortcut.
fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for b in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// `bytes` as text when every byte is printable ASCII other than the
/// backslash: what [`push_char`] keeps unchanged.
fn plain_ascii(bytes: &[u8]) -> Option<&str> {
    if bytes
        .iter()
        .all(|b| (0x20..0x7f).contains(b) && *b != b'\\')
    {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() || is_deceptive(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Characters a terminal shows as nothing, or that reorder the text after
/// them: `sshd\u{200b}` would look like `sshd`, and a right-to-left
/// override turns `exe.txt` around.
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// A kernel `comm`: NUL padded, at most 16 bytes.
pub fn comm_text(comm: &[u8]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    safe_text(&comm[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_ascii_shortcut_changes_nothing() {
        for b in 0..=255u8 {
            for bytes in [vec![b], vec![b'a', b, b'z'], vec![b; 3]] {
                assert_eq!(safe_text(&bytes), escaped(&bytes), "{bytes:?}");
                if let Ok(s) = std::str::from_utf8(&bytes) {
                    assert_eq!(safe_str(s), escaped(&bytes), "{bytes:?}");
                }
            }
        }
        assert_eq!(safe_text(b"a\\b"), "a\\\\b");
    }

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(safe_text(b"nginx: worker"), "nginx: worker");
        assert_eq!(safe_text("café ☕".as_bytes()), "café ☕");
    }

    #[test]
    fn control_bytes_are_escaped() {
        assert_eq!(safe_text(b"\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(safe_text(b"a\nb\tc\x7f"), "a\\x0ab\\x09c\\x7f");
        // C1 controls such as U+009B (CSI) as UTF-8.
        assert_eq!(safe_text("x\u{9b}y".as_bytes()), "x\\u{9b}y");
        assert_eq!(safe_str("\u{85}"), "\\u{85}");
    }

    #[test]
    fn characters_that_make_text_lie_are_shown() {
        // A right-to-left override, a zero-width space, a byte order mark.
        assert_eq!(safe_str("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(safe_str("sshd\u{200b}"), "sshd\\u{200b}");
        assert_eq!(safe_str("\u{feff}x\u{2066}"), "\\u{feff}x\\u{2066}");
        assert_ne!(safe_str("sshd\u{200b}"), safe_str("sshd"));
        // Other scripts are text like any other.
        assert_eq!(safe_str("nginx-服务 עברית"), "nginx-服务 עברית");
    }

    #[test]
    fn invalid_utf8_and_backslash_stay_distinct() {
        assert_eq!(safe_text(b"\xff\xfe"), "\\xff\\xfe");
        assert_eq!(safe_text(b"\\xff"), "\\\\xff");
        assert_ne!(safe_text(b"\\xff"), safe_text(b"\xff"));
    }

    #[test]
    fn output_has_no_control_chars() {
        let all: Vec<u8> = (0u8..=255).collect();
        let text = safe_text(&all);
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_text(b"sshd\0\0\0\0\0\0\0\0\0\0\0\0"), "sshd");
        assert_eq!(comm_text(b"0123456789abcdef"), "0123456789abcdef");
    }
}

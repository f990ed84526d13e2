//! Text from Redis made safe for a terminal.
//!
//! Service names, process names and hosts, history reasons: anything a process (or anyone
//! with write access to Redis) put there reaches the operator's terminal. A raw `ESC [2J`
//! clears the screen, `ESC ]0;…` retitles the window, a bidirectional override reorders
//! what follows; a newline or a tab breaks a table. Every such character is shown as a
//! visible escape instead (`\u{1b}`, `\n`), so what is printed is what is stored, and a
//! cell's width is its number of characters.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and every bidirectional formatting
/// character written as a Rust-style escape: `\n`, `\r`, `\t`, else `\u{…}`.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON text with the characters JSON leaves raw but a terminal acts on (DEL, C1 and
/// the bidirectional controls: serde_json escapes only those below U+0020) written as
/// `\uXXXX`. Such characters can only stand inside JSON strings, where `\uXXXX` means
/// the same character: the document is unchanged for a parser.
pub(crate) fn clean_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(needs_escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters, and the Unicode bidirectional embeddings, overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_become_visible() {
        assert_eq!(clean("users"), "users");
        assert!(matches!(clean("ünïcode ✓"), Cow::Borrowed(_)));
        assert_eq!(clean("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(clean("\x1b]0;pwned\x07"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(clean("tab\there\nnew\rline"), "tab\\there\\nnew\\rline");
        assert_eq!(clean("del\x7f c1\u{9b}"), "del\\u{7f} c1\\u{9b}");
        assert_eq!(clean("rtl\u{202e}txt.exe"), "rtl\\u{202e}txt.exe");
        for hostile in ["\x1b[2J", "\u{9b}31m", "a\u{2066}b", "\0"] {
            assert!(!clean(hostile).chars().any(needs_escape), "{hostile:?}");
        }
    }

    #[test]
    fn json_stays_json() {
        let value = serde_json::json!({ "service": "a\u{7f}b\u{9b}c\u{202e}d\x1be" });
        let text = value.to_string();
        let cleaned = clean_json(&text);
        assert!(!cleaned.chars().any(needs_escape), "{cleaned}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&cleaned).unwrap(),
            value
        );
    }
}

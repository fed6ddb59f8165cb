//! Escaping for the HTML and Markdown reports. Every string a tool or a suite file wrote
//! (messages, rule ids, paths, causes) goes through one of these before it reaches a
//! report, so a hostile SARIF log cannot add markup, links or scripts to it.
//!
//! Hand-written rather than a template crate: the reports put untrusted text only in
//! element content and quoted attribute values, where five characters need escaping, and
//! the writers stream tens of thousands of rows with caps a template would have to
//! re-implement anyway.

use super::one_line;

/// Appends `s` to `out` as HTML text, safe in element content and in attribute values
/// quoted with `"` or `'`. Control characters are dropped (they are not allowed in HTML
/// text and a parser might choke on them); the output is also well-formed XML, which the
/// tests rely on to parse the page strictly.
pub fn push_html(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => {}
            c => out.push(c),
        }
    }
}

/// [`push_html`] into a new string.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    push_html(&mut out, s);
    out
}

/// Zero-width space: breaks what GitHub and GitLab would turn into a link on their own
/// (`https://…`, `www.…`, `a@b.c`) without changing what a reader sees.
const BREAK: char = '\u{200b}';

/// `s` as inline Markdown text that renders as exactly these characters: one line (control
/// characters and newlines gone, whitespace collapsed), at most `max_chars` characters,
/// with a backslash before every character that could start emphasis, a link, an image,
/// HTML, an entity, a code span, math, an emoji code or a table cell boundary (and before
/// the first character when it could start a heading, list or quote), and the autolink,
/// mention and reference triggers of GitHub and GitLab broken by a zero-width space. Other punctuation
/// is left alone so the raw text stays readable.
pub fn md(s: &str, max_chars: usize) -> String {
    let flat = one_line(s, max_chars);
    let mut out = String::with_capacity(flat.len() + flat.len() / 4);
    // The three characters before `c`, lowercased, to spot `www.`.
    let mut window = [' '; 3];
    let mut leading_digits = true;
    let mut chars = flat.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '.' && window == ['w'; 3] {
            out.push(BREAK);
        }
        let starts_block = (i == 0 && "-+=.".contains(c)) || (leading_digits && i > 0 && c == '.');
        if INLINE_SPECIAL.contains(c) || starts_block {
            out.push('\\');
        }
        out.push(c);
        // `scheme://` and `user@host` start autolinks, `@user` a mention, `#12` a reference.
        let next = chars.peek().map(|(_, n)| *n);
        let word_follows = next.is_some_and(|n| n.is_alphanumeric());
        if ((c == '@' || c == '#') && word_follows) || (c == ':' && next == Some('/')) {
            out.push(BREAK);
        }
        leading_digits &= c.is_ascii_digit();
        window = [window[1], window[2], c.to_ascii_lowercase()];
    }
    out
}

/// What has a meaning anywhere in a line of GitHub-flavoured Markdown.
const INLINE_SPECIAL: &str = "\\`*_[]()<>|!~#&$";

/// `s` as a Markdown code span, for fingerprints, digests and command lines: shown
/// verbatim, never a link. Backticks cannot be escaped inside a span, so they become `'`;
/// `|` is escaped because GFM splits table cells on it even inside code.
pub fn md_code(s: &str, max_chars: usize) -> String {
    let flat = one_line(s, max_chars).replace('`', "'").replace('|', "\\|");
    if flat.is_empty() {
        return String::new();
    }
    format!("`{flat}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(html("a\u{1b}[31mb\u{7}"), "a[31mb");
    }

    #[test]
    fn md_escapes_what_markdown_reads() {
        assert_eq!(
            md("[x](javascript:alert(1))", 100),
            r"\[x\]\(javascript:alert\(1\)\)"
        );
        assert_eq!(md("a|b `c` <img>", 100), r"a\|b \`c\` \<img\>");
        assert_eq!(md("# h\n- item", 100), r"\# h - item");
        assert_eq!(md("- item", 100), r"\- item");
        assert_eq!(md("1. item", 100), r"1\. item");
        assert_eq!(md("a-b, c/d. e", 100), "a-b, c/d. e");
    }

    #[test]
    fn md_breaks_autolinks() {
        let out = md("see https://evil.test and www.evil.test or a@b.test", 200);
        assert!(!out.contains("https:/"), "{out}");
        assert!(!out.contains("www."), "{out}");
        assert!(!out.contains("a@b"), "{out}");
        assert!(!md("@team #12", 20).contains("@t"));
        // Plain text is left as it is.
        assert_eq!(md("plain words 42", 100), "plain words 42");
    }

    #[test]
    fn md_is_one_capped_line() {
        assert_eq!(md("a\n\nb", 10), "a b");
        assert_eq!(md(&"x".repeat(50), 5), "xxxxx…");
    }

    #[test]
    fn md_code_cannot_close_the_span_or_the_cell() {
        assert_eq!(md_code("a`b|c", 50), r"`a'b\|c`");
        assert_eq!(md_code("", 50), "");
    }
}

//! Text from tools made safe to show: in XML (JUnit), and on one line (terminals, JUnit
//! `message` attributes, progress). Every writer that shows untrusted text uses these.

/// Makes arbitrary tool output safe and readable as XML text.
///
/// quick-junit's `XmlString` (applied to every string we hand it) strips ANSI escapes and
/// the C0 controls XML 1.0 forbids, and the writer escapes `<`, `>` and `&`, so `]]>` and
/// markup come out as text. What it leaves, handled here:
/// - U+FFFE and U+FFFF, which are not XML characters at all (parsers reject the file);
/// - DEL and the C1 controls U+0080–U+009F, allowed by XML 1.0 but "discouraged" and
///   forbidden as literals in XML 1.1; they are terminal junk in a report anyway;
/// - tabs and lone carriage returns, which its ANSI stripper drops silently, gluing words
///   together: tabs are expanded to 8-column stops, a lone CR becomes a line break.
///
/// Invalid UTF-8 was already replaced by U+FFFD upstream (a valid XML character) and Rust
/// strings cannot hold lone surrogates.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut column = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => {
                let spaces = 8 - column % 8;
                out.extend(std::iter::repeat_n(' ', spaces));
                column += spaces;
            }
            '\r' if chars.peek() != Some(&'\n') => {
                out.push('\n');
                column = 0;
            }
            '\r' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' => {}
            '\n' => {
                out.push('\n');
                column = 0;
            }
            _ => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// `s` as one line of plain text for a terminal or an XML attribute: ANSI escapes and
/// control characters removed (a tool's message must not be able to drive the terminal),
/// whitespace runs collapsed, and at most `max_chars` characters, ending in `…` when cut.
pub fn one_line(s: &str, max_chars: usize) -> String {
    let clean = quick_junit::XmlString::new(xml_text(s));
    let flat = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

//! Caption cleaning before BPE, as OpenAI's `SimpleTokenizer` does it: `ftfy.fix_text`, two
//! rounds of `html.unescape`, whitespace runs collapsed to one space, lower-casing.
//!
//! Of `ftfy.fix_text` (6.x defaults) the steps that apply to well-formed text are ported:
//! HTML entity decoding when the text has no `<`, terminal escapes, Latin ligatures,
//! full-width characters, curly quotes, control characters and NFC. Mojibake repair
//! (`fix_encoding`: text that was UTF-8 decoded as Latin-1/Windows-1252) and the C1-control
//! fix are not: such captions can tokenize differently from the reference
//! (see `docs/clip.md`).

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// ANSI terminal escape sequences (`ESC [ … letter`), which ftfy removes.
static TERMINAL_ESCAPE: LazyLock<Regex> =
    // unwrap: a constant pattern, checked by the tests.
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;]*[a-zA-Z]").unwrap());

/// Cleans a caption the way OpenAI's tokenizer does before splitting it into words.
pub(crate) fn clean_caption(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = htmlize::unescape(htmlize::unescape(fixed.as_str()));
    let mut out = String::with_capacity(unescaped.len());
    for word in unescaped.split(is_python_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.to_lowercase()
}

/// Python's `str.isspace`, which `\s` follows: Unicode White_Space plus the four ASCII
/// information separators.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The subset of `ftfy.fix_text` described in the module documentation.
fn fix_text(text: &str) -> String {
    // ftfy decodes entities itself only when the text does not look like HTML.
    let text = if text.contains('<') { text.into() } else { htmlize::unescape(text) };
    let text = TERMINAL_ESCAPE.replace_all(&text, "");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(c.nfkc()),
            c if is_control(c) => {}
            c => match ligature(c) {
                Some(expanded) => out.push_str(expanded),
                None => out.push(c),
            },
        }
    }
    out.nfc().collect()
}

/// The characters `ftfy.fixes.remove_control_chars` deletes.
fn is_control(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffc}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e007f}')
}

/// `ftfy.fixes.fix_latin_ligatures`, with `ŉ`'s apostrophe already uncurled.
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "'n",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::clean_caption;

    #[test]
    fn cleans_like_openai() {
        assert_eq!(clean_caption("  A\u{3000}Ｃａｔ\t\n on&amp;amp;off  "), "a cat on&off");
        assert_eq!(clean_caption("“Fine” ‘print’ ﬁsh\u{feff}\x1b[31mred"), "\"fine\" 'print' fishred");
        assert_eq!(clean_caption("cafe\u{301} <b>&amp;amp;</b>"), "café <b>&</b>");
    }
}

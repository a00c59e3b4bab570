//! Python's printing as exifread's values reach img2dataset's JSON: `str` of lists, fractions
//! and floats, `repr` of bytes and characters, `str.strip()`.

use std::fmt::Write;

/// Python's `str(list)` of items written by `item`.
pub(super) fn py_list<T>(items: &[T], mut item: impl FnMut(&mut String, &T) -> std::fmt::Result) -> String {
    let mut out = String::from("[");
    for (i, value) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = item(&mut out, value);
    }
    out.push(']');
    out
}

/// `str(Fraction(n, d))` as exifread's `Ratio` prints it: reduced, sign on the numerator,
/// `n/0` kept as such.
pub(super) fn fraction(n: i64, d: i64) -> String {
    if d == 0 {
        return format!("{n}/0");
    }
    let (mut a, mut b) = (n.unsigned_abs(), d.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1) as i64;
    let (n, d) = if d < 0 { (-n / g, -d / g) } else { (n / g, d / g) };
    if d == 1 {
        n.to_string()
    } else {
        format!("{n}/{d}")
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional from 1e-4 up to
/// 1e16, scientific (`1e-05`, `1.5e+16`) outside.
pub(super) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        format!("{sign}{first}{rest}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.unsigned_abs())
    }
}

/// Python's `repr(bytes)`.
pub(super) fn py_bytes(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') { '"' } else { '\'' };
    let mut out = format!("b{quote}");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(quote);
    out
}

/// Python's `repr` of a one-character string (ASCII exactly; other characters as printable
/// unless they are controls or spaces other than `' '`).
pub(super) fn py_char_repr(c: char) -> String {
    let quote = if c == '\'' { '"' } else { '\'' };
    let body = match c {
        '\\' => "\\\\".to_owned(),
        '\t' => "\\t".to_owned(),
        '\n' => "\\n".to_owned(),
        '\r' => "\\r".to_owned(),
        ' ' => " ".to_owned(),
        c if c.is_control() || c.is_whitespace() || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{feff}') => {
            match u32::from(c) {
                n @ 0..=0xff => format!("\\x{n:02x}"),
                n @ 0x100..=0xffff => format!("\\u{n:04x}"),
                n => format!("\\U{n:08x}"),
            }
        }
        c => c.to_string(),
    };
    format!("{quote}{body}{quote}")
}

/// Python's `str.strip()`: its whitespace includes the separators U+001C–U+001F.
pub(super) fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

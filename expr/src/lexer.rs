//! Turns expression text into tokens with byte spans.
//!
//! Lexing never fails: an unexpected character becomes a `Token::Invalid`
//! that the parser reports with the others, so one pass finds every error.

use std::ops::Range;

/// A token and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// `$name`: a reference root (checked later against the known roots).
    Root(String),
    Ident(String),
    Number(serde_json::Number),
    Str(String),
    /// A string literal that is not terminated or has a bad escape.
    BadStr(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Plus,
    Minus,
    Star,
    Slash,
    Bang,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    /// A character that starts no token.
    Invalid(char),
    Eof,
}

impl Token {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Token::Root(name) => format!("`${name}`"),
            Token::Ident(name) => format!("`{name}`"),
            Token::Number(n) => format!("number {n}"),
            Token::Str(_) | Token::BadStr(_) => "a string".to_owned(),
            Token::Invalid(c) => format!("`{c}`"),
            Token::Eof => "the end of the expression".to_owned(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Dot => ".",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Bang => "!",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::AndAnd => "&&",
            Token::OrOr => "||",
            _ => "?",
        }
    }
}

/// Whether `c` may start an identifier.
pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether `c` may continue an identifier.
pub fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tokens of `source` (offsets shifted by `base`), ending with `Eof`.
pub fn lex(source: &str, base: usize) -> Vec<Spanned> {
    let mut tokens = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < source.len() {
        let c = source[i..].chars().next().expect("in bounds");
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let two = |next: u8| bytes.get(i + 1) == Some(&next);
        let (token, len) = match c {
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            '[' => (Token::LBracket, 1),
            ']' => (Token::RBracket, 1),
            ',' => (Token::Comma, 1),
            '.' => (Token::Dot, 1),
            '+' => (Token::Plus, 1),
            '-' => (Token::Minus, 1),
            '*' => (Token::Star, 1),
            '/' => (Token::Slash, 1),
            '=' if two(b'=') => (Token::EqEq, 2),
            '!' if two(b'=') => (Token::NotEq, 2),
            '!' => (Token::Bang, 1),
            '<' if two(b'=') => (Token::Le, 2),
            '<' => (Token::Lt, 1),
            '>' if two(b'=') => (Token::Ge, 2),
            '>' => (Token::Gt, 1),
            '&' if two(b'&') => (Token::AndAnd, 2),
            '|' if two(b'|') => (Token::OrOr, 2),
            '"' => lex_string(&source[i..]),
            '$' => {
                let name: String = source[i + 1..].chars().take_while(|&c| is_ident_continue(c)).collect();
                let len = 1 + name.len();
                (Token::Root(name), len)
            }
            c if c.is_ascii_digit() => lex_number(&source[i..]),
            c if is_ident_start(c) => {
                let name: String = source[i..].chars().take_while(|&c| is_ident_continue(c)).collect();
                let len = name.len();
                (Token::Ident(name), len)
            }
            other => (Token::Invalid(other), other.len_utf8()),
        };
        i += len;
        tokens.push(Spanned { token, span: base + start..base + i });
    }
    tokens.push(Spanned { token: Token::Eof, span: base + source.len()..base + source.len() });
    tokens
}

/// A string literal at the start of `text` (which begins with `"`), with
/// JSON's escapes: what a program prints (control characters as `\b`,
/// `\f` or `\u0000`) reads back as the same text.
fn lex_string(text: &str) -> (Token, usize) {
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1);
    let mut bad = false;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (if bad { Token::BadStr(value) } else { Token::Str(value) }, i + 1),
            '\\' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '/')) => value.push('/'),
                Some((_, 'b')) => value.push('\u{8}'),
                Some((_, 'f')) => value.push('\u{c}'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((j, 'u')) => match unicode_escape(text, j) {
                    Some((decoded, consumed)) => {
                        value.push(decoded);
                        for _ in 0..consumed {
                            chars.next();
                        }
                    }
                    None => bad = true,
                },
                Some(_) => bad = true,
                None => break,
            },
            c => value.push(c),
        }
    }
    (Token::BadStr(value), text.len())
}

/// The character of the `\uXXXX` escape whose `u` is at byte `u` of
/// `text`, and how many characters follow the `u`: four, or ten for a
/// surrogate pair (`\ud83d\ude00`). `None` for anything else.
fn unicode_escape(text: &str, u: usize) -> Option<(char, usize)> {
    let unit = |at: usize| {
        let hex = text.get(at..at + 4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
        u32::from_str_radix(hex, 16).ok()
    };
    let first = unit(u + 1)?;
    if let Some(c) = char::from_u32(first) {
        return Some((c, 4));
    }
    if !(0xD800..0xDC00).contains(&first) || text.get(u + 5..u + 7) != Some("\\u") {
        return None;
    }
    let second = unit(u + 7).filter(|low| (0xDC00..0xE000).contains(low))?;
    char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)).map(|c| (c, 10))
}

/// A number at the start of `text`: digits, an optional fraction and an
/// optional exponent. Integers that fit stay integers.
fn lex_number(text: &str) -> (Token, usize) {
    let bytes = text.as_bytes();
    let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut len = digits(0);
    let mut float = false;
    if bytes.get(len) == Some(&b'.') && bytes.get(len + 1).is_some_and(u8::is_ascii_digit) {
        len += 1 + digits(len + 1);
        float = true;
    }
    if matches!(bytes.get(len), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(len + 1), Some(b'+' | b'-')));
        let exponent = digits(len + 1 + sign);
        if exponent > 0 {
            len += 1 + sign + exponent;
            float = true;
        }
    }
    let literal = &text[..len];
    // JSON forbids leading zeros; `01234` is a code, not the number 1234.
    if literal.len() > 1 && literal.starts_with('0') && literal.as_bytes()[1].is_ascii_digit() {
        return (Token::Invalid('0'), len);
    }
    let number = if float {
        literal.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
    } else {
        literal
            .parse::<i64>()
            .ok()
            .map(serde_json::Number::from)
            .or_else(|| literal.parse::<f64>().ok().and_then(serde_json::Number::from_f64))
    };
    match number {
        Some(n) => (Token::Number(n), len),
        None => (Token::Invalid(text.chars().next().unwrap_or('0')), len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(source: &str) -> Vec<Token> {
        lex(source, 0).into_iter().map(|t| t.token).collect()
    }

    #[test]
    fn lexes_every_kind_of_token() {
        assert_eq!(
            tokens(r#"$payload.items[0] == "a\"b" && !x(1.5e2, -3) <= 4"#),
            [
                Token::Root("payload".into()),
                Token::Dot,
                Token::Ident("items".into()),
                Token::LBracket,
                Token::Number(0.into()),
                Token::RBracket,
                Token::EqEq,
                Token::Str("a\"b".into()),
                Token::AndAnd,
                Token::Bang,
                Token::Ident("x".into()),
                Token::LParen,
                Token::Number(serde_json::Number::from_f64(150.0).unwrap()),
                Token::Comma,
                Token::Minus,
                Token::Number(3.into()),
                Token::RParen,
                Token::Le,
                Token::Number(4.into()),
                Token::Eof,
            ]
        );
    }

    #[test]
    fn strings_decode_escapes_and_report_bad_ones() {
        assert_eq!(tokens(r#""\u00e9\n\t""#)[0], Token::Str("é\n\t".into()));
        assert_eq!(tokens(r#""\b\f\/\u0000""#)[0], Token::Str("\u{8}\u{c}/\u{0}".into()));
        assert_eq!(tokens(r#""\ud83d\ude00!""#)[0], Token::Str("😀!".into()), "a surrogate pair");
        for bad in [r#""\q""#, r#""open"#, r#""\ud83d""#, r#""\ud83dx""#, r#""\ude00""#, r#""\u12""#] {
            assert!(matches!(tokens(bad)[0], Token::BadStr(_)), "{bad}");
        }
    }

    #[test]
    fn spans_are_byte_ranges_shifted_by_the_base() {
        let spanned = lex("é + 1", 10);
        assert_eq!(spanned[0].token, Token::Invalid('é'));
        assert_eq!(spanned[0].span, 10..12);
        assert_eq!(spanned[1].span, 13..14);
    }
}

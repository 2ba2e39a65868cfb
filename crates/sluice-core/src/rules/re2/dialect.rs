//! The pattern as Envoy's RE2 reads it, written for regex-syntax.
//!
//! - Each byte of a non-ASCII character becomes a `\x{..}` character: the
//!   Envoy 1.40 build runs RE2 in Latin-1 mode. Outside brackets it is kept
//!   out of `(?i)`, since RE2 folds only ASCII in that mode.
//! - `\d`, `\s`, `\w` become RE2's ASCII classes (regex-syntax's are
//!   Unicode).
//! - Marks for what regex-syntax would simplify away before `shape` sees
//!   it: non-capturing groups `(?:…)`, `(?i:…)` become groups named
//!   [`GROUP`]`N` (or an alternation nested in another would be merged into
//!   it before RE2's factoring), `.` becomes a group named [`DOT`]`N` (so
//!   that `(?s:.)` can be told from a class), and the upper bound of a
//!   counted repeat is offset by [`COUNTED`] (RE2 keeps `x{1,}`, `x{0,1}`,
//!   `x{1}` as repeats where regex-syntax reads `x+`, `x?`, `x`).

use std::iter::Peekable;
use std::str::Chars;

/// Name prefix of the groups standing for non-capturing ones.
pub(super) const GROUP: &str = "sluice_nc_";

/// Name prefix of the groups put around `.`.
pub(super) const DOT: &str = "sluice_dot_";

/// Offset of a counted repeat's upper bound (`2 * COUNTED`: unbounded).
pub(super) const COUNTED: u32 = 1 << 30;

/// The rewritten pattern, or `None` when regex-syntax cannot be made to
/// read it as RE2 does: an escaped non-ASCII character (neither accepts
/// it), a non-ASCII character in brackets under `(?i)` (regex-syntax would
/// fold it), a repeat count of [`COUNTED`] or more.
pub(super) fn dialect(pattern: &str) -> Option<String> {
    let mut r = Rewriter {
        out: String::with_capacity(pattern.len()),
        brackets: 0,
        groups: 0,
        case_insensitive: false,
        non_ascii_in_brackets: false,
    };
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => r.escape(&mut chars)?,
            '[' => r.open_bracket(&mut chars),
            ']' => {
                r.out.push(c);
                r.brackets = r.brackets.saturating_sub(1);
            }
            '(' if r.brackets == 0 && chars.peek() == Some(&'?') => r.group(&mut chars),
            '{' if r.brackets == 0 => r.counted(&mut chars)?,
            '.' if r.brackets == 0 => r.named(DOT, "."),
            c if c.is_ascii() => r.out.push(c),
            c => r.non_ascii(c),
        }
    }
    (!(r.case_insensitive && r.non_ascii_in_brackets)).then_some(r.out)
}

struct Rewriter {
    out: String,
    /// Nesting of `[` brackets at the current position.
    brackets: usize,
    /// Groups added so far (for unique names).
    groups: usize,
    case_insensitive: bool,
    non_ascii_in_brackets: bool,
}

impl Rewriter {
    /// After a `\`: RE2's Perl classes, or the escape as it is (with the
    /// braces of `\x{..}`, `\p{..}`).
    fn escape(&mut self, chars: &mut Peekable<Chars<'_>>) -> Option<()> {
        match chars.next() {
            Some(e) if perl_class(e).is_some() => self.out.push_str(perl_class(e)?),
            Some(e) if e.is_ascii() => {
                self.out.push('\\');
                self.out.push(e);
                if matches!(e, 'x' | 'p' | 'P') && chars.next_if_eq(&'{').is_some() {
                    self.out.push('{');
                    while let Some(c) = chars.next_if(|c| *c != '}') {
                        self.out.push(c);
                    }
                }
            }
            Some(_) => return None,
            None => self.out.push('\\'),
        }
        Some(())
    }

    fn open_bracket(&mut self, chars: &mut Peekable<Chars<'_>>) {
        self.out.push('[');
        self.brackets += 1;
        // `]` right after `[` or `[^` is a literal.
        for literal in ['^', ']'] {
            if chars.next_if_eq(&literal).is_some() {
                self.out.push(literal);
            }
        }
    }

    /// After `(` followed by `?`: a non-capturing group (with or without
    /// flags) becomes a named one; the rest stays.
    fn group(&mut self, chars: &mut Peekable<Chars<'_>>) {
        let flags: String = chars
            .clone()
            .skip(1)
            .take_while(|f| f.is_ascii_alphabetic() || *f == '-')
            .collect();
        self.case_insensitive |= flags.split('-').next().is_some_and(|on| on.contains('i'));
        if chars.clone().nth(1 + flags.len()) != Some(':') {
            self.out.push('(');
            return;
        }
        chars.nth(1 + flags.len());
        let open = format!("(?P<{GROUP}{}>", self.groups);
        self.groups += 1;
        self.out.push_str(&open);
        if !flags.is_empty() {
            self.out.push_str(&format!("(?{flags})"));
        }
    }

    /// `inner` in a group named `prefix` and a number.
    fn named(&mut self, prefix: &str, inner: &str) {
        self.out
            .push_str(&format!("(?P<{prefix}{}>{inner})", self.groups));
        self.groups += 1;
    }

    /// After a `{`: a counted repeat `{n}`, `{n,}`, `{n,m}` (consumed only
    /// if it is one) with its upper bound offset by [`COUNTED`].
    fn counted(&mut self, chars: &mut Peekable<Chars<'_>>) -> Option<()> {
        // Counts are short; a stray `{` is not searched to the end.
        let ahead: String = chars.clone().take(24).take_while(|c| *c != '}').collect();
        let (min, max) = match ahead.split_once(',') {
            Some((min, max)) => (min, Some(max).filter(|m| !m.is_empty())),
            None => (ahead.as_str(), Some(ahead.as_str())),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(min) || !max.is_none_or(digits) || chars.clone().nth(ahead.len()) != Some('}') {
            self.out.push('{');
            return Some(());
        }
        chars.nth(ahead.len());
        let bound = |s: &str| s.parse::<u32>().ok().filter(|n| *n < COUNTED);
        let max = match max {
            None => 2 * COUNTED,
            Some(max) => COUNTED + bound(max)?,
        };
        self.out.push_str(&format!("{{{},{max}}}", bound(min)?));
        Some(())
    }

    fn non_ascii(&mut self, c: char) {
        self.non_ascii_in_brackets |= self.brackets > 0;
        let mut utf8 = [0; 4];
        for b in c.encode_utf8(&mut utf8).bytes() {
            let byte = format!("\\x{{{b:02X}}}");
            if self.brackets == 0 {
                self.out.push_str(&format!("(?-i:{byte})"));
            } else {
                self.out.push_str(&byte);
            }
        }
    }
}

/// RE2's Perl classes, which are ASCII. Nested brackets work inside a class
/// too (`[\d_]` → `[[0-9]_]`).
fn perl_class(escape: char) -> Option<&'static str> {
    Some(match escape {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        's' => "[\\t\\n\\x0C\\r ]",
        'S' => "[^\\t\\n\\x0C\\r ]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        _ => return None,
    })
}

//! Diagnostics: what the rules loader tells a user about a bad file.
//!
//! Every problem becomes one [`Diagnostic`] with a file, a 1-based
//! line:column, a field path (`listeners[0].virtual_hosts[1].routes[2]`) and
//! a sentence. [`Diags`] collects them during loading so that one run reports
//! every problem, not only the first.

use std::fmt;

use super::yaml::Span;

/// One problem in a rules file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Field path of the offending node, `<root>` for the file itself.
    pub path: String,
    pub message: String,
}

/// Values a message quotes (between backticks) are cut to this many bytes,
/// so that a 5 MB value does not fill the output, the log and `/status`.
pub const MAX_ECHO: usize = 200;

/// A field path (which can hold keys from the file) is cut to this.
const MAX_PATH: usize = 400;

/// At most this many diagnostics are kept per file; the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 1000;

/// Loading a rules file failed; `diagnostics` holds every problem found,
/// ordered by position in the file.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct RulesError {
    pub diagnostics: Vec<Diagnostic>,
}

/// A position in the source text (both 1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub line: usize,
    pub column: usize,
}

/// Collects diagnostics for one source file.
pub struct Diags {
    file: String,
    found: Vec<Diagnostic>,
    /// Diagnostics past [`MAX_DIAGNOSTICS`], counted but not kept.
    omitted: usize,
}

/// The path of the file as a whole.
pub const ROOT: &str = "<root>";

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.path, self.message
        )
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

impl Diagnostic {
    /// A diagnostic whose echoed values and path are cut to a readable
    /// length (see `MAX_ECHO`).
    pub fn new(file: &str, line: usize, column: usize, path: &str, message: &str) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            path: cut(path, MAX_PATH),
            message: cut_quoted(message),
        }
    }
}

/// `value` as a message should quote it: cut to [`MAX_ECHO`] bytes. Every
/// message is cut anyway; quoting through this spares building a message
/// as long as the value first.
pub fn shown(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_ECHO {
        value.into()
    } else {
        cut(value, MAX_ECHO).into()
    }
}

/// `s` with each backtick-quoted part longer than [`MAX_ECHO`] cut, and
/// the whole cut to four times that if still longer.
fn cut_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(8 * MAX_ECHO));
    let mut parts = s.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    // Odd parts are quoted, even ones are the sentence around them. A part
    // [`shown`] has cut already is a little longer than MAX_ECHO.
    for (i, part) in parts.enumerate() {
        out.push('`');
        if i % 2 == 0 {
            out.push_str(&cut(part, MAX_ECHO + 40));
        } else {
            out.push_str(part);
        }
    }
    cut(&out, 4 * MAX_ECHO)
}

/// `s` if at most `max` bytes long, else its start and end (at character
/// boundaries) around a marker saying how much was left out.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let floor = |mut i: usize| {
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = floor(max * 3 / 4);
    let tail = floor(s.len() - max / 4);
    format!("{}…[{} bytes cut]…{}", &s[..head], tail - head, &s[tail..])
}

impl Loc {
    /// Used only when nothing better is known; never line 0.
    pub const START: Loc = Loc { line: 1, column: 1 };
}

impl From<super::yaml::Marker> for Loc {
    /// Never line or column 0 (a `Spanned` built without a position).
    fn from(m: super::yaml::Marker) -> Loc {
        Loc {
            line: m.line().max(1),
            column: m.column().max(1),
        }
    }
}

impl Diags {
    pub fn new(file: &str) -> Self {
        Diags {
            file: file.to_string(),
            found: Vec::new(),
            omitted: 0,
        }
    }

    /// The file diagnostics are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where a node starts.
    pub fn loc(&self, span: &Span) -> Loc {
        Loc::from(span.start())
    }

    pub fn error_at(&mut self, loc: Loc, path: impl AsRef<str>, message: impl AsRef<str>) {
        if self.found.len() >= MAX_DIAGNOSTICS {
            self.omitted += 1;
            return;
        }
        let d = Diagnostic::new(
            &self.file,
            loc.line,
            loc.column,
            path.as_ref(),
            message.as_ref(),
        );
        self.found.push(d);
    }

    pub fn error(&mut self, span: &Span, path: impl AsRef<str>, message: impl AsRef<str>) {
        let loc = self.loc(span);
        self.error_at(loc, path, message);
    }

    /// How many diagnostics are kept so far (see [`Diags::truncate`]).
    pub fn count(&self) -> usize {
        self.found.len()
    }

    /// Forgets the diagnostics reported after [`Diags::count`] returned
    /// `n` (the loader's, when the file turns out not to be YAML at all).
    pub fn truncate(&mut self, n: usize) {
        if n < self.found.len() {
            self.found.truncate(n);
            self.omitted = 0;
        }
    }

    /// `value` if nothing was reported, else every diagnostic in file order.
    pub fn finish<T>(self, value: T) -> Result<T, RulesError> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }

    /// Everything reported so far, in file order; past [`MAX_DIAGNOSTICS`],
    /// a last diagnostic counts the ones left out.
    pub fn into_error(mut self) -> RulesError {
        self.found.sort_by_key(|d| (d.line, d.column));
        if self.omitted > 0 {
            let msg = format!(
                "{} more problems not shown; fix the ones above first",
                self.omitted
            );
            let last = self.found.last().map_or(Loc::START, |d| Loc {
                line: d.line,
                column: d.column,
            });
            self.found.push(Diagnostic::new(
                &self.file,
                last.line,
                last.column,
                ROOT,
                &msg,
            ));
        }
        RulesError {
            diagnostics: self.found,
        }
    }
}

//! RE2 program size: how big a regex becomes in Envoy, computed here so that
//! `sluice validate` refuses what Envoy would NACK.
//!
//! Envoy compiles every regex with RE2 and refuses one whose program has
//! more than 100 instructions (runtime key `re2.max_program_size.error_level`,
//! default 100). The size is not a property of the syntax alone, so this
//! module follows RE2's own pipeline on regex-syntax's HIR:
//!
//! 1. [`dialect`]: the pattern as Envoy's RE2 reads it. The Envoy 1.40 build
//!    sluice is tested with parses patterns as Latin-1 (each byte of a
//!    UTF-8 character is one character; `\x{100}` is a syntax error there),
//!    and RE2's `\d`, `\s`, `\w` are ASCII classes.
//! 2. [`shape`]: HIR → a tree shaped like RE2's parse: literal strings,
//!    classes clipped to Latin-1, RE2's factoring of alternations
//!    (`abc|abd` → `ab[cd]`), squashed repetition operators. [`dialect`]
//!    marks what regex-syntax would otherwise simplify away (group bounds,
//!    `(?s:.)`, counted repeats) so that `shape` can restore it.
//! 3. [`simplify`]: the literal prefix after `^` that RE2 matches outside
//!    the program, coalesced repetitions (`a*a` → `a+`), repeats of
//!    repeats, anchors.
//! 4. [`prog`]: the instructions RE2 emits per construct (one per literal
//!    byte, one per class range plus the alternations joining them, `{n,m}`
//!    as n copies plus m−n nested optional copies, two per capture group),
//!    then RE2's flattening, whose result is what Envoy counts.
//!
//! `tests.rs` holds sizes measured with the real Envoy; `tests/regex_envoy.rs`
//! checks the verdict against it. Where the model is not exact it errs low
//! (see docs/rules.md), so that sluice does not refuse a regex Envoy
//! accepts; where it cannot tell, it gives no estimate.

mod dialect;
mod prog;
mod shape;
mod simplify;

#[cfg(test)]
mod tests;

use regex_syntax::ast::parse::Parser;
use regex_syntax::hir::translate::Translator;

/// Envoy's default `re2.max_program_size.error_level`.
pub const MAX_PROGRAM_SIZE: usize = 100;

/// Sizes past this are not computed: the regex is far over the limit.
const BUDGET: usize = 100_000;

/// Deeper trees are not estimated (the later passes recurse over them).
const MAX_DEPTH: usize = 512;

/// Longer patterns are not estimated (their parse tree alone would take
/// hundreds of bytes per character); Envoy still checks them.
const MAX_PATTERN_LEN: usize = 64 << 10;

/// An estimated RE2 program size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The flattened program has this many instructions.
    Exact(usize),
    /// Compilation stopped at [`BUDGET`] instructions.
    AtLeast(usize),
}

impl Size {
    pub fn over_limit(self) -> bool {
        self.count() > MAX_PROGRAM_SIZE
    }

    fn count(self) -> usize {
        match self {
            Size::Exact(n) | Size::AtLeast(n) => n,
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Exact(n) => write!(f, "{n}"),
            Size::AtLeast(n) => write!(f, "more than {n}"),
        }
    }
}

/// The RE2 program size of `pattern` in Envoy, or `None` when the pattern
/// is not one regex-syntax reads (its syntax is checked elsewhere), reads
/// differently (see [`dialect`]), is longer than 64 KiB or nests deeper
/// than the passes here go.
pub fn program_size(pattern: &str) -> Option<Size> {
    if pattern.len() > MAX_PATTERN_LEN {
        return None;
    }
    let text = dialect::dialect(pattern)?;
    let ast = Parser::new().parse(&text).ok()?;
    let hir = Translator::new().translate(&text, &ast).ok()?;
    let re = shape::shape(&hir)?;
    if depth(&re) > MAX_DEPTH {
        return None;
    }
    Some(compile(simplify::strip_required_prefix(re)))
}

/// The rest of RE2's pipeline: simplification, anchors, the program.
fn compile(re: shape::Re) -> Size {
    let re = simplify::coalesce(re);
    let mut re = simplify::simplify_repeats(re);
    let anchored = simplify::strip_anchor_start(&mut re, 0);
    simplify::strip_anchor_end(&mut re, 0);
    prog::size(&re, anchored, BUDGET)
}

/// How deeply `re` nests, counted without recursion.
fn depth(re: &shape::Re) -> usize {
    use shape::Re;
    let mut deepest = 0;
    let mut stack = vec![(re, 1)];
    while let Some((re, d)) = stack.pop() {
        deepest = deepest.max(d);
        match re {
            Re::Concat(subs) | Re::Alt(subs) => stack.extend(subs.iter().map(|s| (s, d + 1))),
            Re::Capture(sub) | Re::Rep { sub, .. } => stack.push((sub, d + 1)),
            _ => {}
        }
    }
    deepest
}

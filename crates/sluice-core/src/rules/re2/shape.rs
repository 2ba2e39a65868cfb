//! regex-syntax's HIR → a tree shaped like RE2's parse of the same pattern.
//!
//! The two parsers agree on meaning but not on shape, and the program size
//! depends on shape: RE2 keeps literal strings as one node (which matters
//! for the prefix it strips after `^`), factors common prefixes out of
//! alternations, turns a one- or two-letter class like `[Aa]` into a
//! case-folded literal, and squashes `(?:a*)+` into `a*`. Classes are
//! clipped to Latin-1, as Envoy's RE2 reads patterns (see `super`).

use regex_syntax::hir::{Class, Hir, HirKind, Look as HirLook, Repetition};

use super::dialect::{COUNTED, DOT, GROUP};

/// Bounds the recursion of [`factor`] (and the depth of the tree it builds).
const MAX_FACTOR_DEPTH: u32 = 32;

/// A regex in RE2's parse shape. Runes are Latin-1, so bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Re {
    /// Matches nothing (an empty class).
    NoMatch,
    /// Matches the empty string.
    Empty,
    /// RE2's `Literal` (one rune) or `LiteralString` (more); `fold` is
    /// ASCII case folding, as in `(?i)`.
    Lit {
        runes: Vec<u8>,
        fold: bool,
    },
    /// Sorted, disjoint, non-adjacent ranges.
    Class(Vec<(u8, u8)>),
    /// `.` under `(?s)`: every byte, but not a class to RE2's parser.
    AnyChar,
    Look(Look),
    Capture(Box<Re>),
    Concat(Vec<Re>),
    Alt(Vec<Re>),
    Rep {
        sub: Box<Re>,
        op: RepOp,
        greedy: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RepOp {
    Star,
    Plus,
    Quest,
    /// `{min,max}`; `max: None` is unbounded.
    Count {
        min: u32,
        max: Option<u32>,
    },
}

/// Empty-width assertions; each is one instruction unless it is an anchor
/// RE2 strips (`super::simplify`). Distinct kinds stay distinct: RE2's
/// factoring only merges equal ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Look {
    BeginText,
    EndText,
    BeginLine,
    EndLine,
    WordBoundary,
    NotWordBoundary,
    /// Assertions RE2 lacks (`\<`, `\b{start}`); RE2 refuses the pattern.
    Other(HirLook),
}

impl Re {
    /// RE2's `Literal` (one rune), `CharClass` or `AnyChar`.
    pub(super) fn is_single_char(&self) -> bool {
        match self {
            Re::Class(_) | Re::AnyChar => true,
            Re::Lit { runes, .. } => runes.len() == 1,
            _ => false,
        }
    }
}

/// Shapes `hir`; `None` when an alternation factors deeper than
/// [`MAX_FACTOR_DEPTH`] levels.
pub(super) fn shape(hir: &Hir) -> Option<Re> {
    Some(match hir.kind() {
        HirKind::Empty => Re::Empty,
        HirKind::Literal(lit) => Re::Lit {
            runes: latin1(&lit.0),
            fold: false,
        },
        HirKind::Class(class) => self::class(class),
        HirKind::Look(look) => Re::Look(match look {
            HirLook::Start => Look::BeginText,
            HirLook::End => Look::EndText,
            HirLook::StartLF | HirLook::StartCRLF => Look::BeginLine,
            HirLook::EndLF | HirLook::EndCRLF => Look::EndLine,
            HirLook::WordAscii | HirLook::WordUnicode => Look::WordBoundary,
            HirLook::WordAsciiNegate | HirLook::WordUnicodeNegate => Look::NotWordBoundary,
            other => Look::Other(*other),
        }),
        HirKind::Repetition(rep) => repetition(rep)?,
        HirKind::Capture(cap) if cap.name.as_deref().is_some_and(|n| n.starts_with(GROUP)) => {
            shape(&cap.sub)?
        }
        HirKind::Capture(cap) if cap.name.as_deref().is_some_and(|n| n.starts_with(DOT)) => {
            match shape(&cap.sub)? {
                Re::Class(ranges) if ranges.as_slice() == [(0, 0xFF)] => Re::AnyChar,
                re => re,
            }
        }
        HirKind::Capture(cap) => Re::Capture(Box::new(shape(&cap.sub)?)),
        HirKind::Concat(subs) => concat(subs)?,
        HirKind::Alternation(subs) => {
            let mut alts: Vec<Re> = Vec::with_capacity(subs.len());
            for sub in subs {
                let re = shape(sub)?;
                match alts.last_mut() {
                    Some(prev) if subsumes(prev, &re) => {}
                    Some(prev) if subsumes(&re, prev) => *prev = re,
                    _ => alts.push(re),
                }
            }
            let flat = alts.into_iter().flat_map(|re| match re {
                Re::Alt(inner) => inner,
                re => vec![re],
            });
            alternate(factor(flat.collect(), 0)?)
        }
    })
}

/// RE2's parser drops a single character or class next to an any-character
/// alternative (`(?s:.)|a` is `(?s:.)`).
fn subsumes(any: &Re, other: &Re) -> bool {
    *any == Re::AnyChar && other.is_single_char()
}

/// HIR literal bytes are UTF-8 of characters that are Latin-1 here (the
/// pattern was rewritten so); bytes from `(?-u)` are taken as they are.
fn latin1(bytes: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.chars().all(|c| u32::from(c) <= 0xFF) => {
            s.chars().map(|c| u32::from(c) as u8).collect()
        }
        _ => bytes.to_vec(),
    }
}

/// A class clipped to Latin-1, as RE2 shapes it: none → no match, one
/// member → a literal, `{X, x}` → a case-folded literal.
fn class(class: &Class) -> Re {
    let mut members = [false; 256];
    let mut add = |lo: u32, hi: u32| {
        for c in lo..=hi.min(0xFF) {
            members[c as usize] = true;
        }
    };
    match class {
        Class::Unicode(c) => c
            .ranges()
            .iter()
            .for_each(|r| add(r.start().into(), r.end().into())),
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .for_each(|r| add(r.start().into(), r.end().into())),
    }
    let ranges = ranges(&members);
    match ranges.as_slice() {
        [] => Re::NoMatch,
        [(lo, hi)] if lo == hi => Re::Lit {
            runes: vec![*lo],
            fold: false,
        },
        [(u, u2), (l, l2)] if u == u2 && l == l2 && u.is_ascii_uppercase() && *l == u + 32 => {
            Re::Lit {
                runes: vec![*l],
                fold: true,
            }
        }
        _ => Re::Class(ranges),
    }
}

pub(super) fn ranges(members: &[bool; 256]) -> Vec<(u8, u8)> {
    let mut out: Vec<(u8, u8)> = Vec::new();
    for (c, _) in (0u8..=255).zip(members).filter(|(_, m)| **m) {
        match out.last_mut() {
            Some((_, hi)) if u16::from(*hi) + 1 == u16::from(c) => *hi = c,
            _ => out.push((c, c)),
        }
    }
    out
}

/// RE2 applies `*`, `+`, `?` to a node that already is one of them by
/// squashing the two: the same operator stays, mixed ones become `*`.
fn repetition(rep: &Repetition) -> Option<Re> {
    let sub = shape(&rep.sub)?;
    let op = match (rep.min, rep.max) {
        // A counted repeat, its upper bound marked by `super::dialect`.
        (min, Some(max)) if max >= 2 * COUNTED => RepOp::Count { min, max: None },
        (min, Some(max)) if max >= COUNTED => RepOp::Count {
            min,
            max: Some(max - COUNTED),
        },
        (0, None) => RepOp::Star,
        (1, None) => RepOp::Plus,
        (0, Some(1)) => RepOp::Quest,
        (min, max) => RepOp::Count { min, max },
    };
    let simple = |op: RepOp| matches!(op, RepOp::Star | RepOp::Plus | RepOp::Quest);
    if let Re::Rep {
        sub: inner,
        op: inner_op,
        greedy,
    } = &sub
    {
        if simple(op) && simple(*inner_op) && *greedy == rep.greedy {
            if *inner_op == op {
                return Some(sub);
            }
            return Some(Re::Rep {
                sub: inner.clone(),
                op: RepOp::Star,
                greedy: rep.greedy,
            });
        }
    }
    Some(Re::Rep {
        sub: Box::new(sub),
        op,
        greedy: rep.greedy,
    })
}

/// Adjacent literal pieces merge into one string, as RE2's parser merges
/// them; the concatenation a factored alternation left (`x(?:ab|ac)` →
/// `x`, `a`, `[bc]`) is spliced in without merging, as RE2 does.
fn concat(subs: &[Hir]) -> Option<Re> {
    let mut out: Vec<Re> = Vec::with_capacity(subs.len());
    let mut mergeable = false;
    for sub in subs {
        match shape(sub)? {
            Re::Lit { runes, fold } => {
                if let (
                    true,
                    Some(Re::Lit {
                        runes: prev,
                        fold: prev_fold,
                    }),
                ) = (mergeable, out.last_mut())
                {
                    if let Some(merged) = merged_fold(prev, *prev_fold, &runes, fold) {
                        prev.extend(runes);
                        *prev_fold = merged;
                        continue;
                    }
                }
                out.push(Re::Lit { runes, fold });
                mergeable = true;
            }
            Re::Concat(inner) => {
                out.extend(inner);
                mergeable = false;
            }
            Re::Empty => {}
            re => {
                out.push(re);
                mergeable = false;
            }
        }
    }
    Some(concat_of(out))
}

/// Whether two literals are one RE2 string, and its fold flag. Under
/// `(?i)` RE2 flags every literal, letters or not; HIR shows the flag only
/// on letters, so a literal without letters joins either kind.
fn merged_fold(a: &[u8], a_fold: bool, b: &[u8], b_fold: bool) -> Option<bool> {
    let letters = |s: &[u8]| s.iter().any(u8::is_ascii_alphabetic);
    if a_fold == b_fold {
        Some(a_fold)
    } else if !letters(a) {
        Some(b_fold)
    } else if !letters(b) {
        Some(a_fold)
    } else {
        None
    }
}

/// One alternative stays itself, none matches nothing.
pub(super) fn alternate(mut alts: Vec<Re>) -> Re {
    match alts.len() {
        0 => Re::NoMatch,
        1 => alts.pop().unwrap_or(Re::NoMatch),
        _ => Re::Alt(alts),
    }
}

/// RE2's factoring of an alternation, in three rounds: common literal
/// prefixes of neighbours, then common leading classes, anchors and fixed
/// repeats, then runs of single characters and classes merged into one
/// class. (Empty alternatives left by the first two stay: `a|a` is
/// `a(?:|)`, as in RE2.)
///
/// Factoring nests (`a|ab|abc` → `a(|b(|c))`); `None` past
/// [`MAX_FACTOR_DEPTH`] levels.
pub(super) fn factor(alts: Vec<Re>, depth: u32) -> Option<Vec<Re>> {
    if depth > MAX_FACTOR_DEPTH {
        return None;
    }
    let alts = factor_runs(alts, literal_run, depth)?;
    let alts = factor_runs(alts, leading_run, depth)?;
    Some(merge_char_runs(alts))
}

/// The prefix shared by a run of neighbours starting at `alts[0]`: how many
/// alternatives it covers, the prefix, and each alternative with it removed.
type Run = fn(&[Re]) -> Option<(usize, Re)>;

/// Splits each run of neighbours sharing a prefix (found by `run`) into
/// `prefix (suffix|suffix|…)`, the suffixes factored in turn.
fn factor_runs(alts: Vec<Re>, run: Run, depth: u32) -> Option<Vec<Re>> {
    let mut out = Vec::with_capacity(alts.len());
    let mut rest = alts.as_slice();
    while let Some(first) = rest.first() {
        match run(rest) {
            Some((n, prefix)) if n >= 2 => {
                let suffixes = rest[..n]
                    .iter()
                    .map(|re| remove_prefix(re.clone(), &prefix))
                    .collect();
                out.push(Re::Concat(vec![
                    prefix,
                    alternate(factor(suffixes, depth + 1)?),
                ]));
                rest = &rest[n..];
            }
            _ => {
                out.push(first.clone());
                rest = &rest[1..];
            }
        }
    }
    Some(out)
}

/// Round 1: the longest literal prefix the neighbours share (same fold,
/// where it has letters).
fn literal_run(alts: &[Re]) -> Option<(usize, Re)> {
    let (first, fold) = leading_string(&alts[0])?;
    let mut common = first.len();
    let mut n = 1;
    for re in &alts[1..] {
        let Some((s, f)) = leading_string(re) else {
            break;
        };
        let same = first[..common]
            .iter()
            .zip(s)
            .take_while(|(a, b)| a == b)
            .count();
        // Under `(?i)` RE2 flags every literal; regex-syntax shows the flag
        // only on letters, so a prefix without letters matches either way.
        let letters = first[..same].iter().any(u8::is_ascii_alphabetic);
        if same == 0 || (f != fold && letters) {
            break;
        }
        common = same;
        n += 1;
    }
    let prefix = Re::Lit {
        runes: first[..common].to_vec(),
        fold,
    };
    Some((n, prefix))
}

fn leading_string(re: &Re) -> Option<(&[u8], bool)> {
    let mut re = re;
    while let Re::Concat(subs) = re {
        re = subs.first()?;
    }
    match re {
        Re::Lit { runes, fold } if !runes.is_empty() => Some((runes, *fold)),
        _ => None,
    }
}

/// Round 2: a first piece the neighbours share, if RE2 factors that kind.
fn leading_run(alts: &[Re]) -> Option<(usize, Re)> {
    let first = leading_regexp(&alts[0])?;
    let fixed = match first {
        Re::Look(_) | Re::Class(_) | Re::AnyChar => true,
        Re::Rep {
            sub,
            op: RepOp::Count { min, max },
            ..
        } => Some(*min) == *max && sub.is_single_char(),
        _ => false,
    };
    if !fixed {
        return None;
    }
    let n = 1 + alts[1..]
        .iter()
        .take_while(|re| leading_regexp(re) == Some(first))
        .count();
    Some((n, first.clone()))
}

fn leading_regexp(re: &Re) -> Option<&Re> {
    match re {
        Re::Empty => None,
        Re::Concat(subs) if subs.len() >= 2 => Some(&subs[0]).filter(|s| **s != Re::Empty),
        re => Some(re),
    }
}

/// `re` without its first `prefix` (a literal string or a leading piece).
fn remove_prefix(re: Re, prefix: &Re) -> Re {
    match prefix {
        Re::Lit { runes, .. } => remove_leading_string(re, runes.len()),
        _ => match re {
            Re::Concat(mut subs) if subs.len() >= 2 => {
                subs.remove(0);
                concat_of(subs)
            }
            _ => Re::Empty,
        },
    }
}

fn remove_leading_string(re: Re, n: usize) -> Re {
    match re {
        Re::Concat(mut subs) if !subs.is_empty() => {
            let first = remove_leading_string(subs.remove(0), n);
            if first != Re::Empty {
                subs.insert(0, first);
            }
            concat_of(subs)
        }
        Re::Lit { runes, fold } if n < runes.len() => Re::Lit {
            runes: runes[n..].to_vec(),
            fold,
        },
        Re::Lit { .. } => Re::Empty,
        re => re,
    }
}

fn concat_of(mut subs: Vec<Re>) -> Re {
    match subs.len() {
        0 => Re::Empty,
        1 => subs.pop().unwrap_or(Re::Empty),
        _ => Re::Concat(subs),
    }
}

/// Round 3: neighbouring single characters and classes (not `AnyChar`)
/// become one class.
fn merge_char_runs(alts: Vec<Re>) -> Vec<Re> {
    let mut out = Vec::with_capacity(alts.len());
    let mut rest = alts.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|re| re.is_single_char() && **re != Re::AnyChar)
            .count();
        if n < 2 {
            out.push(first.clone());
            rest = &rest[1..];
            continue;
        }
        let mut members = [false; 256];
        for re in &rest[..n] {
            match re {
                Re::Class(ranges) => {
                    for (lo, hi) in ranges {
                        (*lo..=*hi).for_each(|c| members[usize::from(c)] = true);
                    }
                }
                Re::Lit { runes, fold } => {
                    let c = runes[0];
                    members[usize::from(c)] = true;
                    if *fold && c.is_ascii_alphabetic() {
                        members[usize::from(c ^ 0x20)] = true;
                    }
                }
                _ => {}
            }
        }
        out.push(Re::Class(ranges(&members)));
        rest = &rest[n..];
    }
    out
}

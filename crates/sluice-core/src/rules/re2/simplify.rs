//! What RE2 does to the parsed regex before compiling it.
//!
//! - `^abc…`: RE2 matches a literal prefix after `^` with a string search
//!   and compiles only the rest (the rest is then unanchored).
//! - Neighbouring repeats of one character merge (`a*a` → `a{1,}` → `a+`).
//! - `x{n,m}` becomes n copies of `x` and m−n nested optional copies
//!   (`x{2,5}` → `xx(x(x(x)?)?)?`), `x{n,}` n−1 copies and `x+`.
//! - A leading `^` and a trailing `$` become flags of the program instead
//!   of instructions; without a leading `^` RE2 adds a `.*?` loop.

use super::shape::{Look, Re, RepOp};

/// The regex RE2 compiles once it has taken the literal prefix after `^`.
pub(super) fn strip_required_prefix(re: Re) -> Re {
    let Re::Concat(subs) = &re else {
        return re;
    };
    let anchors = subs
        .iter()
        .take_while(|s| **s == Re::Look(Look::BeginText))
        .count();
    if anchors == 0 || !matches!(subs.get(anchors), Some(Re::Lit { .. })) {
        return re;
    }
    let mut rest = subs[anchors + 1..].to_vec();
    match rest.len() {
        0 => Re::Empty,
        1 => rest.pop().unwrap_or(Re::Empty),
        _ => Re::Concat(rest),
    }
}

/// RE2's coalescing of neighbouring repeats of the same character or class
/// (and of a repeat followed by that character or a string starting with it).
pub(super) fn coalesce(re: Re) -> Re {
    match re {
        Re::Concat(subs) => {
            let mut subs: Vec<Re> = subs.into_iter().map(coalesce).collect();
            let mut changed = false;
            for i in 1..subs.len() {
                if can_coalesce(&subs[i - 1], &subs[i]) {
                    let (a, b) = subs.split_at_mut(i);
                    do_coalesce(&mut a[i - 1], &mut b[0]);
                    changed = true;
                }
            }
            if changed {
                subs.retain(|s| *s != Re::Empty);
            }
            match subs.len() {
                0 => Re::Empty,
                1 => subs.pop().unwrap_or(Re::Empty),
                _ => Re::Concat(subs),
            }
        }
        Re::Alt(subs) => Re::Alt(subs.into_iter().map(coalesce).collect()),
        Re::Capture(sub) => Re::Capture(Box::new(coalesce(*sub))),
        Re::Rep { sub, op, greedy } => Re::Rep {
            sub: Box::new(coalesce(*sub)),
            op,
            greedy,
        },
        re => re,
    }
}

fn can_coalesce(r1: &Re, r2: &Re) -> bool {
    let Re::Rep {
        sub: s1,
        greedy: g1,
        ..
    } = r1
    else {
        return false;
    };
    if !s1.is_single_char() {
        return false;
    }
    match (r2, &**s1) {
        (
            Re::Rep {
                sub: s2,
                greedy: g2,
                ..
            },
            _,
        ) => s1 == s2 && g1 == g2,
        (Re::Lit { runes, fold }, Re::Lit { runes: c, fold: f1 }) if runes.len() >= 2 => {
            runes[0] == c[0] && fold == f1
        }
        _ => **s1 == *r2,
    }
}

/// Merges `r2` into the repeat `r1`: `r1` becomes empty (dropped by the
/// caller) and `r2` the merged repeat, or, when `r2` is a string only
/// partly taken, `r1` the repeat and `r2` the rest of the string.
fn do_coalesce(r1: &mut Re, r2: &mut Re) {
    let Re::Rep { sub, op, greedy } = r1.clone() else {
        return;
    };
    let (mut min, mut max) = bounds(op);
    let mut rest = Re::Empty;
    match r2 {
        Re::Rep { op: op2, .. } => {
            let (min2, max2) = bounds(*op2);
            min = min.saturating_add(min2);
            max = max.zip(max2).map(|(a, b)| a.saturating_add(b));
        }
        Re::Lit { runes, fold } if runes.len() >= 2 => {
            let n = runes.iter().take_while(|r| **r == runes[0]).count();
            let n32 = u32::try_from(n).unwrap_or(u32::MAX);
            min = min.saturating_add(n32);
            max = max.map(|m| m.saturating_add(n32));
            if n < runes.len() {
                rest = Re::Lit {
                    runes: runes[n..].to_vec(),
                    fold: *fold,
                };
            }
        }
        _ => {
            min = min.saturating_add(1);
            max = max.map(|m| m.saturating_add(1));
        }
    }
    let merged = Re::Rep {
        sub,
        op: RepOp::Count { min, max },
        greedy,
    };
    if rest == Re::Empty {
        *r1 = Re::Empty;
        *r2 = merged;
    } else {
        *r1 = merged;
        *r2 = rest;
    }
}

fn bounds(op: RepOp) -> (u32, Option<u32>) {
    match op {
        RepOp::Star => (0, None),
        RepOp::Plus => (1, None),
        RepOp::Quest => (0, Some(1)),
        RepOp::Count { min, max } => (min, max),
    }
}

/// Removes a leading `^` (RE2 looks into concatenations and groups, four
/// levels deep); true when there was one.
pub(super) fn strip_anchor_start(re: &mut Re, depth: u32) -> bool {
    strip_anchor(re, depth, End::Start)
}

/// Removes a trailing `$`; true when there was one.
pub(super) fn strip_anchor_end(re: &mut Re, depth: u32) -> bool {
    strip_anchor(re, depth, End::End)
}

#[derive(Clone, Copy, PartialEq)]
enum End {
    Start,
    End,
}

fn strip_anchor(re: &mut Re, depth: u32, end: End) -> bool {
    if depth >= 4 {
        return false;
    }
    let anchor = match end {
        End::Start => Look::BeginText,
        End::End => Look::EndText,
    };
    match re {
        Re::Concat(subs) => {
            let sub = match end {
                End::Start => subs.first_mut(),
                End::End => subs.last_mut(),
            };
            sub.is_some_and(|s| strip_anchor(s, depth + 1, end))
        }
        Re::Capture(sub) => strip_anchor(sub, depth + 1, end),
        Re::Look(look) if *look == anchor => {
            *re = Re::Empty;
            true
        }
        Re::Rep {
            sub,
            op: RepOp::Count { min, max },
            greedy,
        } => strip_anchor_in_copy(sub, *min, *max, *greedy, depth, end).is_some_and(|split| {
            *re = split;
            true
        }),
        _ => false,
    }
}

/// RE2 finds the anchor in the first (or last) copy of a counted repeat, as
/// it has rewritten it into copies: the repeat becomes that copy, stripped,
/// next to a repeat of one copy fewer.
fn strip_anchor_in_copy(
    x: &Re,
    min: u32,
    max: Option<u32>,
    greedy: bool,
    depth: u32,
    end: End,
) -> Option<Re> {
    if (min, max) == (1, Some(1)) {
        // x{1} is x itself.
        let mut copy = x.clone();
        return strip_anchor(&mut copy, depth, end).then_some(copy);
    }
    let copy_depth = match (end, max) {
        // x{n,} is x…x x+, x{n} is x…x: the copies are one level down.
        (End::Start, None) if min >= 2 => depth + 1,
        (_, Some(max)) if max == min && min >= 2 => depth + 1,
        // x{1,m} is x(x…)?, x{n,m} is (x…x)(x…)?.
        (End::Start, Some(max)) if max > min && min == 1 => depth + 1,
        (End::Start, Some(max)) if max > min && min >= 2 => depth + 2,
        _ => return None,
    };
    let mut copy = x.clone();
    if !strip_anchor(&mut copy, copy_depth, end) {
        return None;
    }
    let rest = match (min - 1, max.map(|m| m - 1)) {
        (1, Some(1)) => x.clone(),
        (min, max) => Re::Rep {
            sub: Box::new(x.clone()),
            op: RepOp::Count { min, max },
            greedy,
        },
    };
    Some(match end {
        End::Start => Re::Concat(vec![copy, rest]),
        End::End => Re::Concat(vec![rest, copy]),
    })
}

/// RE2's simplification of repeats: a repeat of the empty string is the
/// empty string, and `*`, `+`, `?` over a counted repeat whose rewriting
/// starts with that same operator is that repeat (`(?:x{0,2})?` is
/// `(x(x)?)?`). Counted repeats stay counted: `prog` emits their copies
/// (see [`counted_outer_op`]).
pub(super) fn simplify_repeats(re: Re) -> Re {
    match re {
        Re::Rep { sub, op, greedy } => {
            let sub = simplify_repeats(*sub);
            if sub == Re::Empty {
                return Re::Empty;
            }
            if as_simple(&sub).is_some_and(|(inner, g, _)| inner == op && g == greedy) {
                return sub;
            }
            Re::Rep {
                sub: Box::new(sub),
                op,
                greedy,
            }
        }
        Re::Concat(subs) => Re::Concat(subs.into_iter().map(simplify_repeats).collect()),
        Re::Alt(subs) => Re::Alt(subs.into_iter().map(simplify_repeats).collect()),
        Re::Capture(sub) => Re::Capture(Box::new(simplify_repeats(*sub))),
        re => re,
    }
}

/// The operator RE2's rewriting of `x{min,max}` starts with: `x{0,}` is
/// `x*`, `x{1,}` is `x+`, `x{0,m}` is `(x(x…)?)?`; the others are
/// concatenations.
pub(super) fn counted_outer_op(min: u32, max: Option<u32>) -> Option<RepOp> {
    match (min, max) {
        (0, None) => Some(RepOp::Star),
        (1, None) => Some(RepOp::Plus),
        (0, Some(m)) if m > 0 => Some(RepOp::Quest),
        _ => None,
    }
}

/// RE2's `*`, `+`, `?` constructors: the same operator twice is one, mixed
/// ones are `*` (a counted repeat counts as the operator it is rewritten to).
pub(super) fn star_plus_quest(op: RepOp, sub: Re, greedy: bool) -> Re {
    match as_simple(&sub) {
        Some((inner_op, g, _)) if g == greedy && (inner_op == op || inner_op == RepOp::Star) => sub,
        Some((_, g, inner)) if g == greedy => Re::Rep {
            sub: Box::new(inner),
            op: RepOp::Star,
            greedy,
        },
        _ => Re::Rep {
            sub: Box::new(sub),
            op,
            greedy,
        },
    }
}

/// `re` as RE2 has it after rewriting counted repeats, if that is a `*`,
/// `+` or `?`: the operator, its greediness and its operand (`x{0,3}` is
/// `(?:x{1,3})?`).
fn as_simple(re: &Re) -> Option<(RepOp, bool, Re)> {
    let Re::Rep { sub, op, greedy } = re else {
        return None;
    };
    let (op, operand) = match *op {
        RepOp::Count { min, max } => {
            let outer = counted_outer_op(min, max)?;
            let operand = match max {
                Some(m) => Re::Rep {
                    sub: sub.clone(),
                    op: RepOp::Count {
                        min: 1,
                        max: Some(m),
                    },
                    greedy: *greedy,
                },
                None => (**sub).clone(),
            };
            (outer, operand)
        }
        op => (op, (**sub).clone()),
    };
    Some((op, *greedy, operand))
}

//! RE2's compiler and its flattening pass, reduced to what the size needs.
//!
//! The compiler emits instructions per construct in RE2's order: a byte
//! range per literal byte and per class range (joined by alternations),
//! a loop alternation per `*`/`+`, one per `?`, two captures per group, an
//! empty-width instruction per assertion, `{n,m}` as n copies and m−n
//! nested optional copies. RE2 then removes no-ops and flattens the graph
//! into lists: one list per instruction reached by consuming a byte (plus
//! the starts and any instruction reached from two lists), holding the
//! byte ranges, captures, assertions and matches reachable from it without
//! consuming, and a no-op linking to each other list it reaches. The
//! program size Envoy checks is the total length of those lists.

use super::shape::{Re, RepOp};
use super::simplify::star_plus_quest;
use super::Size;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Fail,
    Match,
    Nop,
    Alt,
    /// An `Alt` between a match and a loop over any byte, which RE2 marks
    /// (and emits as an extra instruction when flattening).
    AltMatch,
    ByteRange,
    Capture,
    EmptyWidth,
}

#[derive(Clone, Copy, Debug)]
struct Inst {
    op: Op,
    out: u32,
    /// The second branch of an `Alt`.
    out1: u32,
    /// A byte range over 00-FF.
    any_byte: bool,
}

/// A compiled piece: its entry and the unfilled exits (`id << 1` for
/// `out`, `id << 1 | 1` for `out1`). Entry 0 (the fail instruction) means
/// the piece matches nothing.
struct Frag {
    begin: u32,
    end: Vec<u32>,
    nullable: bool,
}

struct Compiler {
    inst: Vec<Inst>,
    budget: usize,
}

/// The flattened size of the program for `re`; `anchored`: it began
/// with `^` (no `.*?` loop in front).
pub(super) fn size(re: &Re, anchored: bool, budget: usize) -> Size {
    let mut c = Compiler {
        inst: Vec::new(),
        budget,
    };
    c.alloc(Op::Fail, 0, 0);
    let all = c.compile(re);
    let m = c.alloc(Op::Match, 0, 0);
    let all = c.cat(all, frag(m, Vec::new(), false));
    let start = all.begin;
    let start_unanchored = if anchored {
        start
    } else {
        let dot_star = c.dot_star();
        c.cat(dot_star, all).begin
    };
    if c.over_budget() {
        return Size::AtLeast(budget);
    }
    if start == 0 && start_unanchored == 0 {
        return Size::Exact(1);
    }
    c.remove_nops(start);
    c.mark_alt_match(start);
    Size::Exact(Flattener::new(&c.inst).size(start, start_unanchored))
}

fn frag(begin: u32, end: Vec<u32>, nullable: bool) -> Frag {
    Frag {
        begin,
        end,
        nullable,
    }
}

fn no_match() -> Frag {
    frag(0, Vec::new(), false)
}

impl Compiler {
    fn over_budget(&self) -> bool {
        self.inst.len() > self.budget
    }

    fn alloc(&mut self, op: Op, out: u32, out1: u32) -> u32 {
        self.inst.push(Inst {
            op,
            out,
            out1,
            any_byte: false,
        });
        u32::try_from(self.inst.len() - 1).unwrap_or(u32::MAX)
    }

    fn patch(&mut self, exits: &[u32], to: u32) {
        for &slot in exits {
            let inst = &mut self.inst[(slot >> 1) as usize];
            if slot & 1 == 0 {
                inst.out = to;
            } else {
                inst.out1 = to;
            }
        }
    }

    fn single(&mut self, op: Op, nullable: bool) -> Frag {
        let id = self.alloc(op, 0, 0);
        frag(id, vec![id << 1], nullable)
    }

    fn compile(&mut self, re: &Re) -> Frag {
        if self.over_budget() {
            return no_match();
        }
        match re {
            Re::NoMatch => no_match(),
            Re::Empty => self.single(Op::Nop, true),
            Re::Lit { runes, .. } => {
                let mut f: Option<Frag> = None;
                for _ in runes {
                    if self.over_budget() {
                        return no_match();
                    }
                    let b = self.single(Op::ByteRange, false);
                    f = Some(match f {
                        None => b,
                        Some(a) => self.cat(a, b),
                    });
                }
                f.unwrap_or_else(|| self.single(Op::Nop, true))
            }
            Re::Class(ranges) => self.class(ranges),
            Re::AnyChar => self.class(&[(0, 0xFF)]),
            Re::Look(_) => self.single(Op::EmptyWidth, true),
            Re::Capture(sub) => {
                let a = self.compile(sub);
                if a.begin == 0 {
                    return no_match();
                }
                let open = self.alloc(Op::Capture, a.begin, 0);
                let close = self.alloc(Op::Capture, 0, 0);
                self.patch(&a.end, close);
                frag(open, vec![close << 1], a.nullable)
            }
            Re::Concat(subs) => {
                let frags: Vec<Frag> = subs.iter().map(|s| self.compile(s)).collect();
                self.cat_all(frags)
            }
            Re::Alt(subs) => {
                let frags: Vec<Frag> = subs.iter().map(|s| self.compile(s)).collect();
                let mut iter = frags.into_iter();
                let first = iter.next().unwrap_or_else(no_match);
                iter.fold(first, |a, b| self.alt(a, b))
            }
            Re::Rep { sub, op, greedy } => self.repeat(sub, *op, !greedy),
        }
    }

    /// A class as RE2 compiles it in Latin-1: one byte range per range,
    /// except that when the class treats upper and lower case alike, the
    /// upper-case ranges are dropped (the others match case-folded).
    fn class(&mut self, ranges: &[(u8, u8)]) -> Frag {
        let has = |c: u8| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
        let folds_ascii = (b'A'..=b'Z').all(|u| has(u) == has(u + 32));
        let mut begin = 0;
        let mut end = Vec::new();
        for (lo, hi) in ranges {
            if folds_ascii && b'A' <= *lo && *hi <= b'Z' {
                continue;
            }
            let id = self.alloc(Op::ByteRange, 0, 0);
            self.inst[id as usize].any_byte = (*lo, *hi) == (0, 0xFF);
            end.push(id << 1);
            begin = if begin == 0 {
                id
            } else {
                self.alloc(Op::Alt, begin, id)
            };
        }
        frag(begin, end, false)
    }

    /// `x*`, `x+`, `x?`, and `x{n,m}` as RE2 rewrites it: `x{2,}` is
    /// `xx+`, `x{2,5}` is `xx(x(x(x)?)?)?`, with RE2's squashing where it
    /// wraps a copy (`(?:a+){0,1}` → `a*`).
    fn repeat(&mut self, sub: &Re, op: RepOp, non_greedy: bool) -> Frag {
        let (min, max) = match op {
            RepOp::Count { min, max } => (min as usize, max.map(|m| m as usize)),
            op => {
                let a = self.compile(sub);
                return match op {
                    RepOp::Star => self.star(a, non_greedy),
                    RepOp::Plus => self.plus(a, non_greedy),
                    _ => self.quest(a, non_greedy),
                };
            }
        };
        let wrapped = |op| star_plus_quest(op, sub.clone(), !non_greedy);
        match max {
            None if min <= 1 => {
                let op = if min == 0 { RepOp::Star } else { RepOp::Plus };
                self.compile(&wrapped(op))
            }
            None => {
                let mut frags = self.copies(sub, min - 1);
                frags.push(self.compile(&wrapped(RepOp::Plus)));
                self.cat_all(frags)
            }
            Some(max) if max <= min => {
                let frags = self.copies(sub, min);
                self.cat_all(frags)
            }
            Some(max) => {
                let prefix = self.copies(sub, min);
                let prefix = (!prefix.is_empty()).then(|| self.cat_all(prefix));
                let mut outer = self.copies(sub, max - min - 1);
                let mut suffix = self.compile(&wrapped(RepOp::Quest));
                while let Some(copy) = outer.pop() {
                    let both = self.cat(copy, suffix);
                    suffix = self.quest(both, non_greedy);
                }
                match prefix {
                    Some(p) => self.cat(p, suffix),
                    None => suffix,
                }
            }
        }
    }

    fn copies(&mut self, sub: &Re, n: usize) -> Vec<Frag> {
        let mut out = Vec::new();
        for _ in 0..n {
            if self.over_budget() {
                break;
            }
            out.push(self.compile(sub));
        }
        out
    }

    fn cat_all(&mut self, frags: Vec<Frag>) -> Frag {
        let mut iter = frags.into_iter();
        let Some(mut f) = iter.next() else {
            return self.single(Op::Nop, true);
        };
        for b in iter {
            f = self.cat(f, b);
        }
        f
    }

    fn cat(&mut self, a: Frag, b: Frag) -> Frag {
        if a.begin == 0 || b.begin == 0 {
            return no_match();
        }
        // A lone no-op in front is skipped (RE2 elides it).
        let first = self.inst[a.begin as usize];
        if first.op == Op::Nop && first.out == 0 && a.end.first() == Some(&(a.begin << 1)) {
            self.patch(&a.end, b.begin);
            return b;
        }
        self.patch(&a.end, b.begin);
        frag(a.begin, b.end, a.nullable && b.nullable)
    }

    fn alt(&mut self, a: Frag, b: Frag) -> Frag {
        if a.begin == 0 {
            return b;
        }
        if b.begin == 0 {
            return a;
        }
        let id = self.alloc(Op::Alt, a.begin, b.begin);
        let mut end = a.end;
        end.extend(b.end);
        frag(id, end, a.nullable || b.nullable)
    }

    /// The loop alternation of `x+` and `x*`: its exit slot and the
    /// instruction.
    fn loop_alt(&mut self, body: u32, non_greedy: bool) -> (u32, u32) {
        if non_greedy {
            let id = self.alloc(Op::Alt, 0, body);
            (id, id << 1)
        } else {
            let id = self.alloc(Op::Alt, body, 0);
            (id, id << 1 | 1)
        }
    }

    fn plus(&mut self, a: Frag, non_greedy: bool) -> Frag {
        let (id, exit) = self.loop_alt(a.begin, non_greedy);
        self.patch(&a.end, id);
        frag(a.begin, vec![exit], a.nullable)
    }

    fn star(&mut self, a: Frag, non_greedy: bool) -> Frag {
        // RE2 compiles a nullable body as (x+)? to keep match priorities.
        if a.nullable {
            let p = self.plus(a, non_greedy);
            return self.quest(p, non_greedy);
        }
        let (id, exit) = self.loop_alt(a.begin, non_greedy);
        self.patch(&a.end, id);
        frag(id, vec![exit], true)
    }

    fn quest(&mut self, a: Frag, non_greedy: bool) -> Frag {
        if a.begin == 0 {
            return self.single(Op::Nop, true);
        }
        let (id, exit) = self.loop_alt(a.begin, non_greedy);
        let mut end = vec![exit];
        end.extend(a.end);
        frag(id, end, true)
    }

    /// The `.*?` loop in front of an unanchored program.
    fn dot_star(&mut self) -> Frag {
        let any = self.single(Op::ByteRange, false);
        self.star(any, true)
    }

    /// Visits the instructions reachable from `start` in RE2's queue order;
    /// `step` handles one and says where it leads (0: nowhere).
    fn walk(&mut self, start: u32, mut step: impl FnMut(&mut Self, u32) -> [u32; 2]) {
        let mut queued = vec![false; self.inst.len()];
        let mut queue = vec![start];
        queued[start as usize] = true;
        let mut i = 0;
        while let Some(&id) = queue.get(i) {
            i += 1;
            for j in step(self, id) {
                if j != 0 && !queued[j as usize] {
                    queued[j as usize] = true;
                    queue.push(j);
                }
            }
        }
    }

    /// RE2's first optimisation: exits that lead to a no-op go past it.
    fn remove_nops(&mut self, start: u32) {
        let skip = |inst: &[Inst], mut j: u32| {
            while j != 0 && inst[j as usize].op == Op::Nop {
                j = inst[j as usize].out;
            }
            j
        };
        self.walk(start, |c, id| {
            let inst = c.inst[id as usize];
            let out = skip(&c.inst, inst.out);
            c.inst[id as usize].out = out;
            if inst.op != Op::Alt {
                return [out, 0];
            }
            let out1 = skip(&c.inst, inst.out1);
            c.inst[id as usize].out1 = out1;
            [out, out1]
        });
    }

    /// RE2's second optimisation: an `Alt` choosing between a match and a
    /// loop over any byte (`(?s).*` at the end) becomes an `AltMatch`.
    fn mark_alt_match(&mut self, start: u32) {
        self.walk(start, |c, id| {
            let inst = c.inst[id as usize];
            if inst.op != Op::Alt {
                return [inst.out, 0];
            }
            let any_loop = |j: u32| {
                let j = c.inst[j as usize];
                j.op == Op::ByteRange && j.any_byte && j.out == id
            };
            if (any_loop(inst.out) && c.is_match(inst.out1))
                || (c.is_match(inst.out) && any_loop(inst.out1))
            {
                c.inst[id as usize].op = Op::AltMatch;
            }
            [inst.out, inst.out1]
        });
    }

    /// Whether `id` reaches a match through captures and no-ops only.
    fn is_match(&self, mut id: u32) -> bool {
        loop {
            let inst = self.inst[id as usize];
            match inst.op {
                Op::Match => return true,
                Op::Capture | Op::Nop => id = inst.out,
                _ => return false,
            }
        }
    }
}

/// RE2's flattening (`Prog::Flatten`), counting instead of emitting.
struct Flattener<'a> {
    inst: &'a [Inst],
    root: Vec<bool>,
    /// The alternations leading to each instruction.
    preds: Vec<Vec<u32>>,
    /// Visit marks: `seen[id] == pass` means visited in this pass.
    seen: Vec<u32>,
    pass: u32,
}

impl<'a> Flattener<'a> {
    fn new(inst: &'a [Inst]) -> Self {
        Flattener {
            inst,
            root: vec![false; inst.len()],
            preds: vec![Vec::new(); inst.len()],
            seen: vec![0; inst.len()],
            pass: 0,
        }
    }

    fn size(mut self, start: u32, start_unanchored: u32) -> usize {
        for id in [0, start_unanchored, start] {
            self.root[id as usize] = true;
        }
        self.mark_successors(start_unanchored);
        let mut roots: Vec<u32> = (0..self.inst.len() as u32)
            .filter(|id| self.root[*id as usize])
            .collect();
        roots.retain(|id| *id != 0 && *id != start && *id != start_unanchored);
        for id in roots.into_iter().rev() {
            self.mark_dominator(id);
        }
        let roots: Vec<u32> = (0..self.inst.len() as u32)
            .filter(|id| self.root[*id as usize])
            .collect();
        roots.into_iter().map(|r| self.list_len(r)).sum()
    }

    fn next_pass(&mut self) {
        self.pass += 1;
    }

    /// Marks each instruction reached by consuming (or capturing, or
    /// asserting) as a list root, and records alternations' targets.
    fn mark_successors(&mut self, from: u32) {
        self.next_pass();
        let mut stack = vec![from];
        while let Some(mut id) = stack.pop() {
            loop {
                if self.seen[id as usize] == self.pass {
                    break;
                }
                self.seen[id as usize] = self.pass;
                let inst = self.inst[id as usize];
                match inst.op {
                    Op::Alt | Op::AltMatch => {
                        self.preds[inst.out as usize].push(id);
                        self.preds[inst.out1 as usize].push(id);
                        stack.push(inst.out1);
                        id = inst.out;
                    }
                    Op::ByteRange | Op::Capture | Op::EmptyWidth => {
                        self.root[inst.out as usize] = true;
                        id = inst.out;
                    }
                    Op::Nop => id = inst.out,
                    Op::Match | Op::Fail => break,
                }
            }
        }
    }

    /// Instructions reached without consuming from `root`, stopping at
    /// other roots (which are included).
    fn closure(&mut self, root: u32) -> Vec<u32> {
        self.next_pass();
        let mut reached = Vec::new();
        let mut stack = vec![root];
        while let Some(mut id) = stack.pop() {
            loop {
                if self.seen[id as usize] == self.pass {
                    break;
                }
                self.seen[id as usize] = self.pass;
                reached.push(id);
                if id != root && self.root[id as usize] {
                    break;
                }
                let inst = self.inst[id as usize];
                match inst.op {
                    Op::Alt | Op::AltMatch => {
                        stack.push(inst.out1);
                        id = inst.out;
                    }
                    Op::Nop => id = inst.out,
                    _ => break,
                }
            }
        }
        reached
    }

    /// An instruction that `root` reaches but that is also reached from
    /// elsewhere becomes a root of its own.
    fn mark_dominator(&mut self, root: u32) {
        let reached = self.closure(root);
        for id in reached {
            let shared = self.preds[id as usize]
                .iter()
                .any(|p| self.seen[*p as usize] != self.pass);
            if shared {
                self.root[id as usize] = true;
            }
        }
    }

    /// The flattened list of `root`: its consuming, capturing, asserting
    /// and matching instructions, plus a no-op per other list it reaches.
    fn list_len(&mut self, root: u32) -> usize {
        let reached = self.closure(root);
        reached
            .iter()
            .filter(|id| {
                let op = self.inst[**id as usize].op;
                (**id != root && self.root[**id as usize]) || !matches!(op, Op::Alt | Op::Nop)
            })
            .count()
    }
}

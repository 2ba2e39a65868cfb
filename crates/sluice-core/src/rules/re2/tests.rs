//! The estimate against sizes Envoy 1.40 reported for the same patterns
//! (its `re2.max_program_size.warn_level` runtime key set to 0 makes it log
//! every regex's program size). `tests/regex_envoy.rs` checks the verdicts
//! against a running Envoy.

use super::{program_size, Size, MAX_PROGRAM_SIZE};

/// (pattern, program size reported by Envoy 1.40).
const MEASURED: &[(&str, usize)] = &[
    (r"^/files/[a-z0-9-]{1,64}\.(png|jpe?g|gif|webp)$", 277),
    (r"a", 5),
    (r"^", 2),
    (r"abc", 7),
    (r"^abc", 4),
    (r"^abc$", 4),
    (r".", 6),
    (r"(?s).", 5),
    (r"(?s:.)+", 7),
    (r"[^/]+", 7),
    (r"\d", 5),
    (r"\w", 7),
    (r"\s", 7),
    (r"[0-9A-Fa-f]", 6),
    (r"(?i)abc", 7),
    (r"(?i)[a-z]", 5),
    (r"(?i)k", 5),
    (r"é", 6),
    (r"\x{41}{2}", 6),
    (r"\p{L}{2}", 18),
    (r"[à-ÿ]", 5),
    (r"\p{Greek}", 1),
    (r"a{2,5}", 12),
    (r"a{2,}", 7),
    (r"a*a", 6),
    (r"(?:a*)+", 5),
    (r"(?:x{0,2})?", 8),
    (r"(?:(?:x{0,2})?){2,}", 11),
    (r"ab|ac", 6),
    (r"abc|abd|aef", 9),
    (r"a|b|cd|e", 8),
    (r"a(?:|bc|bc)", 9),
    (r"(a)", 7),
    (r"^(a)", 5),
    (r"x(a|b)y", 9),
    (r"\bfoo\b", 9),
    (r"(?m)^a$", 7),
    (r"(?:^\w$){2}", 10),
    (r"^/api/v[0-9]+/users/[0-9]+$", 15),
    (r"^/(?:a|(?:b|c))$", 5),
    (r"x(?:.|(?s:.))", 6),
    (r"^(?:(?:[0-9](?:.|[^\n]|(?s:.))){1,}|\.)", 10),
    (r"(?i)(?:^k.){1}$", 5),
    (r"(?:-{0,2}){1,}", 7),
    (r"(?:-{0,2})+", 9),
    (r"(?i:\.babc[a-z]|\.-[^\n])", 13),
    (r"(?:(?m:^)|\b.+?|(?:(?:é*){2,})?|x)$", 19),
    (r"^/users/(?:[0-9]+|me)(?:/(?:posts|comments|likes))?$", 30),
    (
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        70,
    ),
    (r"(?i)^bearer .+$", 7),
    (r"^/files/[a-z0-9-]{1,19}\.(png|jpe?g|gif|webp)$", 97),
    (r"^/files/[a-z0-9-]{1,20}\.(png|jpe?g|gif|webp)$", 101),
    (r"^a{98}", 100),
    (r"^a{99}", 101),
    (r"a{96}", 100),
    (r"a{97}", 101),
    (r"^[0-9]{1,49}$", 99),
    (r"^[0-9]{1,50}$", 101),
];

#[test]
fn estimates_equal_the_sizes_envoy_reports() {
    let wrong: Vec<String> = MEASURED
        .iter()
        .filter_map(|(pattern, envoy)| {
            let ours = program_size(pattern);
            (ours != Some(Size::Exact(*envoy)))
                .then(|| format!("{pattern}: Envoy {envoy}, estimate {ours:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_limit_is_over_100() {
    let over = |p| program_size(p).is_some_and(Size::over_limit);
    assert!(!over("^a{98}"), "100 instructions are allowed");
    assert!(over("^a{99}"), "101 are not");
    assert_eq!(MAX_PROGRAM_SIZE, 100);
}

/// Where regex-syntax has already simplified what RE2 keeps, the estimate
/// is low, the safe side: an alternation of single characters that repeats
/// one is merged into one class before RE2's factoring would see the repeat
/// (Envoy: 8), a repeated assertion is capped to one (Envoy: 6).
#[test]
fn known_differences_err_low() {
    assert_eq!(program_size("(?:x|b|b|c)"), Some(Size::Exact(6)));
    assert_eq!(program_size("(?:(?m:^)){2,}"), Some(Size::Exact(5)));
}

/// regex-syntax would fold a non-ASCII letter in brackets under `(?i)`,
/// which Envoy's RE2 does not: no estimate rather than a high one.
#[test]
fn no_estimate_where_regex_syntax_reads_differently() {
    assert_eq!(program_size("(?i)[é]"), None);
    assert_eq!(program_size(r"\é"), None);
    assert_eq!(program_size("(unclosed"), None);
}

#[test]
fn huge_patterns_stop_at_the_budget() {
    assert_eq!(
        program_size("(?:(?:a{1000}){1000}){1000}"),
        Some(Size::AtLeast(super::BUDGET))
    );
    // A literal byte is one instruction; the `.*?` loop, the match and the
    // fail instruction make four more.
    let long = "a".repeat(super::MAX_PATTERN_LEN);
    assert_eq!(
        program_size(&long),
        Some(Size::Exact(super::MAX_PATTERN_LEN + 4))
    );
    assert_eq!(program_size(&format!("{long}a")), None);
}

//! "Did you mean": the closest of a set of known words to one that matched none of them, by
//! edit distance (insertions, deletions, substitutions and swaps of two neighbours each cost
//! one). Used for instruction keywords here, and by kiln for stage names, build-arg names and
//! command-line flags.

/// The candidate closest to `word`, ignoring case, when it is close enough to be a likely typo:
/// at most one edit for words of up to four letters, two up to eight, three beyond. Ties go to
/// the earlier candidate; an exact match is not a suggestion.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let word_lower = word.to_lowercase();
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let d = distance(&word_lower, &candidate.to_lowercase());
        if d == 0 || d > limit {
            continue;
        }
        if best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// The optimal-string-alignment distance between `a` and `b`, counted in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // three rows: the one before the previous (for swaps), the previous, the current
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, want) in [
            ("", "", 0),
            ("run", "run", 0),
            ("runn", "run", 1),
            ("biuld", "build", 1),
            ("tag", "target", 3),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
        ] {
            assert_eq!(distance(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn suggestions() {
        let keywords = ["FROM", "RUN", "COPY", "WORKDIR", "ENTRYPOINT"];
        for (word, want) in [
            ("RUNN", Some("RUN")),
            ("runn", Some("RUN")),
            ("COPPY", Some("COPY")),
            ("WROKDIR", Some("WORKDIR")),
            ("ENTRYPOIT", Some("ENTRYPOINT")),
            ("RUN", None),
            ("BANANA", None),
            ("X", None),
        ] {
            assert_eq!(closest(word, keywords), want, "{word}");
        }
    }
}

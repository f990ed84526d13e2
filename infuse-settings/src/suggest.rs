//! "Did you mean …?": the one closest-name search of every entry point (attribute
//! arguments, overridden services, environment variables).

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions each cost 1.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The candidate whose key is closest to `wanted`, if it is close enough to be a typo (at
/// most 2 edits, or a third of `wanted`'s length); the first of equals.
pub fn closest<T, K: AsRef<str>>(
    wanted: &str,
    candidates: impl IntoIterator<Item = (K, T)>,
) -> Option<T> {
    let limit = 2.max(wanted.chars().count() / 3);
    let mut best: Option<(usize, T)> = None;
    for (key, candidate) in candidates {
        let distance = edit_distance(wanted, key.as_ref());
        if distance <= limit && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("fail_max", "fail_max"), 0);
        assert_eq!(edit_distance("fail_mx", "fail_max"), 1);
        assert_eq!(edit_distance("fial_max", "fail_max"), 1);
        assert_eq!(edit_distance("user", "users"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let known = ["users", "payments"].map(|name| (name, name));
        assert_eq!(closest("user", known), Some("users"));
        assert_eq!(closest("paymnts", known), Some("payments"));
        assert_eq!(closest("inventory", known), None);
        assert_eq!(closest("x", known), None);
        // The first of equals.
        assert_eq!(closest("ab", [("aa", 1), ("bb", 2)]), Some(1));
    }
}

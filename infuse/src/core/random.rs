//! The crate's source of randomness: trial tokens, record incarnations, the jitter of the
//! fleet's timers, drawn from the standard library's randomly keyed hasher.

use std::hash::{BuildHasher, Hasher};

/// 64 random bits (`n`: a counter the caller bumps, so that draws differ).
pub(crate) fn random_u64(n: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() ^ n
}

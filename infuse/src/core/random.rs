//! The crate's source of randomness: trial tokens, record incarnations, the jitter of the
//! fleet's timers. A seeded simulation (this crate's tests) installs a generator of its
//! own on its thread, so that a run replays exactly from its seed; everything else draws
//! from the standard library's randomly keyed hasher. The seeded path exists only in
//! test builds.

use std::hash::{BuildHasher, Hasher};

/// 64 random bits (`n`: a counter the caller bumps, so that draws differ).
pub(crate) fn random_u64(n: u64) -> u64 {
    #[cfg(test)]
    if let Some(drawn) = seeded::draw() {
        return drawn;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish() ^ n
}

#[cfg(test)]
pub(crate) mod seeded {
    //! A splitmix64 generator per thread, installed by a seeded test.

    use std::cell::Cell;

    thread_local! {
        static STATE: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// Whether a generator is installed on this thread.
    pub(crate) fn active() -> bool {
        STATE.with(|state| state.get().is_some())
    }

    /// The next value of the thread's generator, if one is installed.
    pub(crate) fn draw() -> Option<u64> {
        STATE.with(|state| {
            let s = state.get()?.wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(Some(s));
            Some(mix(s))
        })
    }

    /// splitmix64's output function.
    pub(crate) fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Draws from a generator seeded with `seed` on this thread until the guard drops.
    #[must_use = "the generator is removed when the guard drops"]
    pub(crate) struct Installed(());

    pub(crate) fn install(seed: u64) -> Installed {
        STATE.with(|state| state.set(Some(seed)));
        Installed(())
    }

    impl Drop for Installed {
        fn drop(&mut self) {
            STATE.with(|state| state.set(None));
        }
    }
}

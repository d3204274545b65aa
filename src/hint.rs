//! Hints to the processor.

/// Asks the CPU to fetch the cache line holding `at` into its caches: a
/// hint, which reads nothing and cannot fault. Work that visits scattered
/// records in an order known a few steps ahead asks for the later ones, so
/// their cache misses overlap instead of coming one after another. Does
/// nothing on other processors than x86-64.
#[inline]
pub(crate) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching reads nothing and cannot fault, whatever the
        // address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

//! Splitting large work between the machine's cores, in order.

use std::sync::OnceLock;

/// How many threads large work is split between (asked once: the answer
/// reads the cgroup files).
pub fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
}

/// `f(start, share)` for each share of `items` (`start`: where the share
/// begins in `items`), one share per thread, in order; a single share, on
/// this thread, when there are fewer than `min` items or one core.
///
/// The first share runs on the calling thread: its allocations come from
/// (and return to) this thread's heap, which lives on, so later work reuses
/// their memory instead of touching fresh pages.
pub fn shares<T: Sync, R: Send>(
    items: &[T],
    min: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let threads = threads();
    if threads == 1 || items.len() < min {
        return vec![f(0, items)];
    }
    let f = &f;
    let size = items.len().div_ceil(threads);
    let (first, rest) = items.split_at(size.min(items.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .chunks(size)
            .enumerate()
            .map(|(i, share)| scope.spawn(move || f((i + 1) * size, share)))
            .collect();
        let mut results = Vec::with_capacity(handles.len() + 1);
        results.push(f(0, first));
        results
            .extend(handles.into_iter().map(|h| h.join().expect("a share's work does not panic")));
        results
    })
}

//! Splitting large work between the machine's cores, in order.

use std::ops::Range;
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
pub fn shares<T: Sync, R: Send>(
    items: &[T],
    min: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    ranges(items.len(), min, |range| f(range.start, &items[range]))
}

/// `f(range)` for each share of `0..len`, one share per thread, in order;
/// a single share, on this thread, when `len` is under `min` or under the
/// number of cores, or there is one core.
///
/// The first share runs on the calling thread: its allocations come from
/// (and return to) this thread's heap, which lives on, so later work reuses
/// their memory instead of touching fresh pages.
pub fn ranges<R: Send>(len: usize, min: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads == 1 || len < min.max(threads) {
        return vec![f(0..len)];
    }
    let f = &f;
    let size = len.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (size..len)
            .step_by(size)
            .map(|start| scope.spawn(move || f(start..(start + size).min(len))))
            .collect();
        let mut results = Vec::with_capacity(handles.len() + 1);
        results.push(f(0..size.min(len)));
        results
            .extend(handles.into_iter().map(|h| h.join().expect("a share's work does not panic")));
        results
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_cover_the_items_in_order_once() {
        for len in [0, 1, 2, 3, 7, 100, 1001] {
            for min in [0, 1, 10] {
                let ranges = super::ranges(len, min, |r| r);
                let mut next = 0;
                for r in &ranges {
                    assert_eq!(r.start, next, "len {len}, min {min}: {ranges:?}");
                    next = r.end;
                }
                assert_eq!(next, len, "len {len}, min {min}: {ranges:?}");
                let items: Vec<usize> = (0..len).collect();
                let parts = super::shares(&items, min, |start, share| {
                    assert_eq!(share.first().copied().unwrap_or(start), start);
                    share.to_vec()
                });
                assert_eq!(parts.concat(), items);
            }
        }
    }
}

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
/// number of cores, or there is one core. The first share runs on the
/// calling thread (see `on_threads`).
pub fn ranges<R: Send>(len: usize, min: usize, f: impl Fn(Range<usize>) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads == 1 || len < min.max(threads) {
        return vec![f(0..len)];
    }
    let size = len.div_ceil(threads);
    on_threads((0..len).step_by(size).map(|start| start..(start + size).min(len)).collect(), f)
}

/// `f(range, part)` for each share of `0..starts.len() - 1`, where `part`
/// is the share's own run of `items`: item `i` of the range owns
/// `items[starts[i]..starts[i + 1]]` (`starts` ascending, its last entry
/// `items.len()`). One share per thread, in order; a single share, on this
/// thread, as [`ranges`] decides.
pub fn split_mut<T: Send, R: Send>(
    items: &mut [T],
    starts: &[u32],
    min: usize,
    f: impl Fn(Range<usize>, &mut [T]) -> R + Sync,
) -> Vec<R> {
    let len = starts.len().saturating_sub(1);
    assert!(starts.first().is_none_or(|&s| s == 0), "the first item's run starts at 0");
    assert_eq!(starts.last().map_or(0, |&s| s as usize), items.len(), "starts cover the items");
    let threads = threads();
    if threads == 1 || len < min.max(threads) {
        return vec![f(0..len, items)];
    }
    let size = len.div_ceil(threads);
    // The shares' parts, cut off the front of `items` in turn.
    let mut parts = Vec::with_capacity(threads);
    let mut rest = items;
    for start in (0..len).step_by(size) {
        let end = (start + size).min(len);
        let (part, tail) = rest.split_at_mut((starts[end] - starts[start]) as usize);
        parts.push((start..end, part));
        rest = tail;
    }
    on_threads(parts, |(range, part)| f(range, part))
}

/// `f(share)` for each share, in order: the first on the calling thread,
/// whose allocations come from (and return to) this thread's heap, which
/// lives on, so later work reuses their memory instead of touching fresh
/// pages; the others on threads of their own.
fn on_threads<P: Send, R: Send>(shares: Vec<P>, f: impl Fn(P) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|scope| {
        let mut shares = shares.into_iter();
        let first = shares.next();
        let handles: Vec<_> = shares.map(|share| scope.spawn(move || f(share))).collect();
        let mut results = Vec::with_capacity(handles.len() + 1);
        results.extend(first.map(f));
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

    #[test]
    fn a_share_that_panics_panics_the_caller() {
        if super::threads() == 1 {
            return; // one share, on this thread: nothing to show
        }
        // The last share runs on a thread of its own.
        let caught = std::panic::catch_unwind(|| {
            super::ranges(1000, 1, |r| {
                assert!(r.end < 1000, "the last share fails");
                r.len()
            })
        });
        assert!(caught.is_err());
        assert_eq!(super::ranges(1000, 1, |r| r.len()).iter().sum::<usize>(), 1000);
    }

    #[test]
    fn shares_split_again_inside_a_share() {
        // Every share splits its own range again.
        let sums = super::ranges(1000, 1, |outer| {
            let start = outer.start;
            super::ranges(outer.len(), 1, |inner| inner.map(|i| start + i).sum::<usize>())
                .into_iter()
                .sum::<usize>()
        });
        assert_eq!(sums.into_iter().sum::<usize>(), (0..1000).sum::<usize>());
    }

    #[test]
    fn split_parts_are_the_items_of_their_ranges() {
        for len in [0usize, 1, 2, 3, 7, 100, 1001] {
            for min in [0, 1, 10] {
                // Item i owns i % 3 slots, each holding i.
                let mut starts = vec![0u32];
                for i in 0..len {
                    starts.push(starts[i] + (i % 3) as u32);
                }
                let mut items = vec![usize::MAX; *starts.last().unwrap() as usize];
                let ranges = super::split_mut(&mut items, &starts, min, |range, part| {
                    let mut at = 0;
                    for i in range.clone() {
                        for _ in 0..i % 3 {
                            part[at] = i;
                            at += 1;
                        }
                    }
                    assert_eq!(at, part.len(), "len {len}, min {min}, {range:?}");
                    range
                });
                let mut next = 0;
                for r in &ranges {
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, len);
                let expected: Vec<usize> = (0..len).flat_map(|i| vec![i; i % 3]).collect();
                assert_eq!(items, expected, "len {len}, min {min}");
            }
        }
    }
}

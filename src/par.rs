//! Splitting large work between the machine's cores, in order.

/// How many threads large work is split between.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// `f(share, items)` for each share of `items`, one share per thread, in
/// order; a single share, on this thread, when there are fewer than `min`
/// items or one core.
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
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .enumerate()
            .map(|(i, share)| scope.spawn(move || f(i, share)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a share's work does not panic")).collect()
    })
}

//! What memory costs this machine right now: milliseconds per MB to touch a
//! new anonymous mapping, in transparent huge pages (which graphrw's
//! allocator asks for) twice, the second time in memory the first just
//! gave back, then in 4 KB pages; nanoseconds per read in chains of
//! dependent reads at random places of 2, 6 and 24 MB (what the caches
//! this machine lets us have hold) and of the whole mapping (reads that
//! miss them); and, for comparison, a loop that touches no memory.
//!
//! On a virtual machine whose host takes back the memory its guest leaves
//! idle, huge pages are cheap while the host still backs them (the second
//! touch) and dearer than small pages once it does not (the first, after
//! the machine sat idle); a rewrite that touches a few hundred MB of fresh
//! memory feels the difference. A rewrite reads a graph's records all over
//! its memory, so it also feels how much of the shared last-level cache
//! is left to it and how long a read that misses it takes, which on a
//! shared host change with what the neighbours do while the compute
//! loop's time stays put. Run it beside a benchmark to tell the machine's
//! slow hours from a slower program.
//!
//! Usage: cargo run --release --example first_touch [MB]

use std::time::Instant;

use memmap2::{Advice, MmapMut};

fn main() {
    let mb: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    for (label, advice) in [
        ("huge pages", Advice::HugePage),
        ("huge pages again", Advice::HugePage),
        ("4 KB pages", Advice::NoHugePage),
    ] {
        let mut map = MmapMut::map_anon(mb << 20).expect("an anonymous mapping");
        map.advise(advice).expect("madvise");
        let start = Instant::now();
        for offset in (0..map.len()).step_by(4096) {
            map[offset] = 1;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        println!("{label}: {mb} MB first touched in {ms:.0} ms, {:.2} ms/MB", ms / mb as f64);
    }
    let cached: Vec<String> =
        [2, 6, 24].iter().map(|&m| format!("{m} MB {:.0} ns", random_read_ns(m << 20))).collect();
    println!("a read at random in {}", cached.join(", "));
    println!("a read that misses the caches: {:.0} ns", random_read_ns(mb << 20));
    println!("a loop that touches no memory: {:.0} ms", compute_ms());
}

/// Nanoseconds per read of a chain of reads, each at the place the one
/// before it read, through one 8-byte slot in each 64-byte line of a
/// `bytes`-byte mapping in a random order (one cycle, so nothing is
/// prefetched). The chain is walked once before it is timed: what the
/// caches can hold of it is in them.
fn random_read_ns(bytes: usize) -> f64 {
    const STRIDE: usize = 64 / 8;
    let lines = bytes / 64;
    let mut map = MmapMut::map_anon(lines * 64).expect("an anonymous mapping");
    map.advise(Advice::HugePage).expect("madvise");
    // SAFETY: the mapping is page-aligned, `lines * 64` bytes long, and
    // zeroed, which is a valid `u64` array.
    let next: &mut [u64] =
        unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr().cast::<u64>(), lines * STRIDE) };
    // The lines in a random order (xorshift, Fisher-Yates), linked into one
    // cycle through the first slot of each.
    let mut order: Vec<u64> = (0..lines as u64).map(|l| l * STRIDE as u64).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    for pair in order.windows(2) {
        next[pair[0] as usize] = pair[1];
    }
    next[order[lines - 1] as usize] = order[0];
    let walk = |reads: usize| {
        let mut at = order[0];
        for _ in 0..reads {
            at = next[at as usize];
        }
        std::hint::black_box(at);
    };
    walk(lines);
    let reads = 10_000_000usize;
    let start = Instant::now();
    walk(reads);
    start.elapsed().as_secs_f64() * 1e9 / reads as f64
}

/// Milliseconds for a fixed chain of floating-point multiply-adds.
fn compute_ms() -> f64 {
    let start = Instant::now();
    let mut x = 1.0f64;
    for _ in 0..300_000_000u32 {
        x = std::hint::black_box(x * 1.000_000_1 + 1e-9);
    }
    std::hint::black_box(x);
    start.elapsed().as_secs_f64() * 1e3
}

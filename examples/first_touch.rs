//! What fresh memory costs this machine: milliseconds per MB to touch a
//! new anonymous mapping, in transparent huge pages (which graphrw's
//! allocator asks for) twice, the second time in memory the first just
//! gave back, then in 4 KB pages.
//!
//! On a virtual machine whose host takes back the memory its guest leaves
//! idle, huge pages are cheap while the host still backs them (the second
//! touch) and dearer than small pages once it does not (the first, after
//! the machine sat idle); a rewrite that touches a few hundred MB of fresh
//! memory feels the difference.
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
}

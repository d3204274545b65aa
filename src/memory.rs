//! How the process takes memory from the system.
//!
//! A rewrite touches a few hundred megabytes of fresh memory at 1M nodes
//! (its working copy, patches, new nodes and constants), scattered over
//! the allocator's pages. Backed by transparent huge pages, each first
//! touch of a 2 MB region has the kernel zero all of it; on a virtual
//! machine whose host takes back the memory its guest frees (free page
//! reporting works on such large free blocks), that region must first be
//! found and zeroed by the host too. On the 2-core machine the project runs
//! on, `graphrw apply inference` of the 1M-node synthetic graph spent
//! 0.74-1.09 s rewriting with huge pages and 0.51-0.70 s without, eight
//! runs of each, alternated (see `docs/performance.md`).

/// The variable of mimalloc (the binary's allocator) that says whether it
/// may ask for transparent huge pages: where the user sets it, it decides.
pub const ALLOW_THP: &str = "MIMALLOC_ALLOW_THP";

/// Turns transparent huge pages off for this process
/// (`prctl(PR_SET_THP_DISABLE)`, Linux 3.15 and later; memory is then taken
/// 4 KB at a time, as it is touched) unless the environment sets
/// [`ALLOW_THP`]. Call it first thing in `main`: it applies to every page
/// touched afterwards. Returns whether huge pages are off for the process.
#[cfg(target_os = "linux")]
pub fn small_pages() -> bool {
    if std::env::var_os(ALLOW_THP).is_none() {
        // SAFETY: prctl with these arguments only sets a flag of the
        // calling process; it reads and writes no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    // SAFETY: as above, it only reads that flag.
    unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
}

/// Elsewhere than on Linux: does nothing, and says huge pages are not off.
#[cfg(not(target_os = "linux"))]
pub fn small_pages() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_off_unless_the_user_allows_them() {
        let off = small_pages();
        if std::env::var_os(ALLOW_THP).is_none() {
            assert!(off);
            // The kernel's own word, where it gives one (Linux 5.0 and later).
            let status = std::fs::read_to_string("/proc/self/status").expect("readable");
            if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
                assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
            }
        }
    }
}

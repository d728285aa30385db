//! Which pages of a range this process wrote since they were mapped: Linux's `PAGEMAP_SCAN`
//! (6.7 and later) on `/proc/self/pagemap`, the same question wasmtime asks when it resets a
//! pooled memory. A page reported is present, neither the shared zero page nor a page of a
//! file (a memory image's page that was only read), so a page that could differ from what was
//! mapped is always among them. `reuse.rs` rewrites those pages of a kept instance.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// `PAGE_IS_FILE`, `PAGE_IS_PRESENT`, `PAGE_IS_SWAPPED`, `PAGE_IS_PFNZERO`.
const FILE: u64 = 1 << 2;
const PRESENT: u64 = 1 << 3;
const SWAPPED: u64 = 1 << 4;
const PFNZERO: u64 = 1 << 5;

/// `struct pm_scan_arg` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Region {
    start: u64,
    end: u64,
    categories: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// Regions asked for per system call; a scan that finds more goes on from where it stopped.
const REGIONS: usize = 32;

fn pagemap() -> Option<&'static File> {
    static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();
    PAGEMAP
        .get_or_init(|| File::open("/proc/self/pagemap").ok())
        .as_ref()
}

/// The written pages of `[base, base + len)`, as byte ranges from `base`; `None` when the
/// kernel cannot tell (no `PAGEMAP_SCAN`, or an error).
pub(super) fn written(base: usize, len: usize) -> Option<Vec<Range<usize>>> {
    let file = pagemap()?;
    let end = base.checked_add(len)?;
    let mut found = Vec::new();
    let mut from = base;
    while from < end {
        let mut regions = [Region::default(); REGIONS];
        let mut arg = ScanArg {
            size: size_of::<ScanArg>() as u64,
            start: from as u64,
            end: end as u64,
            vec: regions.as_mut_ptr() as u64,
            vec_len: REGIONS as u64,
            // Neither the zero page nor a file's page, and present or swapped out.
            category_inverted: PFNZERO | FILE,
            category_mask: PFNZERO | FILE,
            category_anyof_mask: PRESENT | SWAPPED,
            ..ScanArg::default()
        };
        let filled = scan(file, &mut arg)?;
        for region in regions.iter().take(filled) {
            let start = (region.start as usize).max(base) - base;
            let stop = (region.end as usize).min(end) - base;
            if start < stop {
                found.push(start..stop);
            }
        }
        let walked = arg.walk_end as usize;
        if walked <= from {
            // No progress: never loop on a kernel that does not move on.
            return None;
        }
        from = walked;
    }
    Some(found)
}

/// The page faults (minor and major) the calling thread has taken since it started; `None`
/// if the kernel will not say. The count is kept for [`faults_by_now_on_this_thread`].
#[allow(unsafe_code)]
pub(super) fn faults_on_this_thread() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a writable `rusage`, the only memory the kernel writes.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if done != 0 {
        return None;
    }
    // SAFETY: the kernel filled it (and it started zeroed: every field is an integer).
    let usage = unsafe { usage.assume_init() };
    let faults = usage.ru_minflt as u64 + usage.ru_majflt as u64;
    LAST_READ.set(Some(faults));
    Some(faults)
}

/// A count of this thread's page faults no higher than the current one: the count last read
/// on this thread, or read now if none was. The count only grows, so a call that compares it
/// with a count read after it can only find more faults than it took, never fewer: it costs a
/// page scan now and then (when the thread faulted between calls), never a page missed, and
/// it saves a system call on every call.
pub(super) fn faults_by_now_on_this_thread() -> Option<u64> {
    LAST_READ.get().or_else(faults_on_this_thread)
}

thread_local! {
    /// The count [`faults_on_this_thread`] last read on this thread.
    static LAST_READ: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Asks the kernel never to back `[base, base + len)` with transparent huge pages, which it
/// could otherwise map in the background (`khugepaged`) over pages never touched, making them
/// writable without a fault; `false` if it refused.
#[allow(unsafe_code)]
pub(super) fn no_huge_pages(base: usize, len: usize) -> bool {
    if !base.is_multiple_of(4096) {
        return false;
    }
    // SAFETY: the advice only changes how the kernel may back the range later, never what it
    // holds; the range is a memory this process mapped (a guest's), so nothing else is touched.
    let done = unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
    done == 0
}

/// One `PAGEMAP_SCAN`: how many regions the kernel filled.
#[allow(unsafe_code)]
fn scan(file: &File, arg: &mut ScanArg) -> Option<usize> {
    // SAFETY: `arg` is a valid `pm_scan_arg` whose `vec` points at `vec_len` writable
    // `page_region`s that outlive the call (the caller's array), and the kernel writes only
    // there and to `arg.walk_end`. The range scanned is only read by the kernel (no
    // write-protect flags are set), so no memory changes under anyone.
    let filled = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN as _, arg as *mut ScanArg) };
    usize::try_from(filled).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_written_are_reported_and_pages_only_read_are_not() {
        let page = 4096;
        // Large enough to come fresh from the kernel: untouched pages, all zero.
        let mut buffer = vec![0u8; 64 << 20];
        let offset = buffer.as_ptr().align_offset(page);
        let base = buffer.as_ptr() as usize + offset;
        let len = 32 * page;
        let Some(before) = written(base, len) else {
            return; // no PAGEMAP_SCAN: a kernel before 6.7
        };
        let covers = |ranges: &[Range<usize>], at: usize| ranges.iter().any(|r| r.contains(&at));
        std::hint::black_box(buffer[offset + 10 * page]);
        buffer[offset + 3 * page + 5] = 1;
        buffer[offset + 20 * page] = 1;
        let after = written(base, len).unwrap();
        assert!(covers(&after, 3 * page + 5), "{after:?}");
        assert!(covers(&after, 20 * page), "{after:?}");
        if !covers(&before, 10 * page) {
            assert!(!covers(&after, 10 * page), "a page only read: {after:?}");
        }
    }
}

//! Memory for a per-call instance: a bump allocator (nothing is ever freed; the instance is
//! thrown away after the call) and the `alloc` export the host uses to place buffers.

#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
mod bump {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    const PAGE: usize = 65_536;

    /// Bump allocation over pages taken with `memory.grow`. Single-threaded: wasm32 guests
    /// have no threads here.
    pub struct Bump {
        next: Cell<usize>,
        end: Cell<usize>,
    }

    // SAFETY: the guest is single-threaded (no threads in Ferrite's engine).
    unsafe impl Sync for Bump {}

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let align = layout.align();
            let start = (self.next.get() + align - 1) & !(align - 1);
            let Some(end) = start.checked_add(layout.size()) else {
                return std::ptr::null_mut();
            };
            if self.end.get() == 0 {
                // First allocation: use the free space the module starts with, from the
                // linker's heap base to the end of the initial memory, before growing (a
                // memory.grow costs the host a page-protection change on every call).
                unsafe extern "C" {
                    static __heap_base: u8;
                }
                // SAFETY: only the address of the linker-provided symbol is taken.
                let base = std::ptr::addr_of!(__heap_base) as usize;
                self.next.set(base);
                self.end.set(core::arch::wasm32::memory_size(0) * PAGE);
                return unsafe { self.alloc(layout) };
            }
            if end > self.end.get() {
                let need = layout.size() + align;
                let pages = need.div_ceil(PAGE).max(1);
                let previous = core::arch::wasm32::memory_grow(0, pages);
                if previous == usize::MAX {
                    return std::ptr::null_mut();
                }
                let region = previous * PAGE;
                // Continue the current region when the new pages extend it.
                let base = if self.end.get() == region {
                    self.next.get()
                } else {
                    region
                };
                self.end.set((previous + pages) * PAGE);
                let start = (base + align - 1) & !(align - 1);
                self.next.set(start + layout.size());
                return start as *mut u8;
            }
            self.next.set(end);
            start as *mut u8
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        next: Cell::new(0),
        end: Cell::new(0),
    };
}

/// The ABI's `alloc(len) -> ptr`: room for `len` bytes the host fills.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: i32) -> i32 {
    let layout = std::alloc::Layout::from_size_align(len.max(1) as usize, 1).expect("valid layout");
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    ptr as usize as i32
}

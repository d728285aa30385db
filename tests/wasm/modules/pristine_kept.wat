;; Like pristine.wat, for a module whose instances are kept between calls (src/wasm/reuse.rs):
;; it has no start function and changes no table, and it grows its memory by one page per
;; call, within the room a growing module gets at load (src/wasm/headroom.rs), so the real
;; memory never grows. 17 pages, as a Rust cdylib built with the default linker settings has.
;; `main` answers a bit mask of what an earlier call left behind (0: nothing):
;;   1 the i32 global was set, 2 the i64 global was changed, 4 a word low in memory was
;;   written, 8 a byte of the first data segment was changed, 16 a byte of the second (a later
;;   page) was changed, 32 a word in the middle of memory was written, 64 the top word of the
;;   memory was written, 128 the heap pointer `alloc` moves was not where it starts, 256 the
;;   memory had grown, 512 a word of the page growing adds was written.
;; Then it sets all of those.
(module
  (memory (export "memory") 17)
  (data (i32.const 2048) "\07")
  (data (i32.const 200000) "\2a")
  (global $marked (mut i32) (i32.const 0))
  (global $wide (mut i64) (i64.const 99))
  (global $heap (mut i32) (i32.const 65536))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $found (param $mask i32) (param $bit i32) (param $seen i32) (result i32)
    (if (result i32) (local.get $seen)
      (then (i32.or (local.get $mask) (local.get $bit)))
      (else (local.get $mask))))
  (func (export "main") (param $ptr i32) (param $len i32) (result i64)
    (local $mask i32)
    (local.set $mask (call $found (local.get $mask) (i32.const 1) (global.get $marked)))
    (local.set $mask (call $found (local.get $mask) (i32.const 2)
      (i64.ne (global.get $wide) (i64.const 99))))
    (local.set $mask (call $found (local.get $mask) (i32.const 4) (i32.load (i32.const 1024))))
    (local.set $mask (call $found (local.get $mask) (i32.const 8)
      (i32.ne (i32.load8_u (i32.const 2048)) (i32.const 7))))
    (local.set $mask (call $found (local.get $mask) (i32.const 16)
      (i32.ne (i32.load8_u (i32.const 200000)) (i32.const 42))))
    (local.set $mask (call $found (local.get $mask) (i32.const 32) (i32.load (i32.const 557056))))
    (local.set $mask (call $found (local.get $mask) (i32.const 64) (i32.load (i32.const 1114108))))
    (local.set $mask (call $found (local.get $mask) (i32.const 128)
      (i32.ne (local.get $ptr) (i32.const 65536))))
    (local.set $mask (call $found (local.get $mask) (i32.const 256)
      (i32.ne (memory.size) (i32.const 17))))
    (local.set $mask (call $found (local.get $mask) (i32.const 512)
      (i32.load (i32.const 1114112))))
    (global.set $marked (i32.const 1))
    (global.set $wide (i64.const -1))
    (i32.store (i32.const 1024) (i32.const 0xfeed))
    (i32.store8 (i32.const 2048) (i32.const 9))
    (i32.store8 (i32.const 200000) (i32.const 9))
    (i32.store (i32.const 557056) (i32.const 0xfeed))
    (i32.store (i32.const 1114108) (i32.const 0xfeed))
    (drop (memory.grow (i32.const 1)))
    (i32.store (i32.const 1114112) (i32.const 0xfeed))
    (i64.extend_i32_u (local.get $mask))))

;; Reports what an earlier call could have left behind, then leaves all of it: every call must
;; start from a pristine instance. The memory has 17 pages, as a Rust cdylib built with the
;; default linker settings has (1 MiB of stack below its data), so its top is where such a
;; guest's stack is. `main` answers a bit mask of what it found (0: nothing):
;;   1 the mutable global was set, 2 a word low in memory was written, 4 the data segment's
;;   byte was changed, 8 a word in the middle of memory was written, 16 the top word of the
;;   initial memory was written, 32 the memory had grown.
;; Then it sets all of those, grows the memory by 17 pages (more than the 16 pages of room a
;; growing module gets at load, src/wasm/headroom.rs, so the real memory grows too) and writes
;; into the first page it grew. `beyond` reads the first word past the real memory's end (the
;; size the guest sees plus the 16 pages of room), which must trap however much of the slot an
;; earlier call made accessible; `inside` reads the first word past the size the guest sees,
;; inside the room, where a read answers zero instead of trapping.
(module
  (memory (export "memory") 17)
  (data (i32.const 2048) "\07")
  (global $marked (mut i32) (i32.const 0))
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
    (local.set $mask (call $found (local.get $mask) (i32.const 2) (i32.load (i32.const 1024))))
    (local.set $mask (call $found (local.get $mask) (i32.const 4)
      (i32.ne (i32.load8_u (i32.const 2048)) (i32.const 7))))
    (local.set $mask (call $found (local.get $mask) (i32.const 8) (i32.load (i32.const 557056))))
    (local.set $mask (call $found (local.get $mask) (i32.const 16) (i32.load (i32.const 1114108))))
    (local.set $mask (call $found (local.get $mask) (i32.const 32)
      (i32.ne (memory.size) (i32.const 17))))
    (global.set $marked (i32.const 1))
    (i32.store (i32.const 1024) (i32.const 0xfeed))
    (i32.store8 (i32.const 2048) (i32.const 9))
    (i32.store (i32.const 557056) (i32.const 0xfeed))
    (i32.store (i32.const 1114108) (i32.const 0xfeed))
    (drop (memory.grow (i32.const 17)))
    (i32.store (i32.const 1114112) (i32.const 0xfeed))
    (i64.extend_i32_u (local.get $mask)))
  (func (export "beyond") (param $ptr i32) (param $len i32) (result i64)
    (i64.extend_i32_u
      (i32.load (i32.mul (i32.add (memory.size) (i32.const 16)) (i32.const 65536)))))
  (func (export "inside") (param $ptr i32) (param $len i32) (result i64)
    (i64.extend_i32_u (i32.load (i32.mul (memory.size) (i32.const 65536))))))

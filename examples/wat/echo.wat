;; A function written by hand in WebAssembly text: no SDK, only the guest ABI.
;; It replies with its first argument as a bulk string, or nil without arguments.
;;   redis-cli -x WASM.LOAD echo < examples/wat/echo.wat
;;   redis-cli WASM.CALL echo ARGS hello   → "hello"
(module
  (import "ferrite" "reply" (func $reply (param i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  ;; alloc(len) -> ptr: a bump allocator; the instance lives for one call.
  (func $alloc (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  ;; Input: u32 nkeys, nkeys × (u32 len, bytes), u32 nargs, nargs × (u32 len, bytes).
  (func (export "main") (param $ptr i32) (param $len i32) (result i64)
    (local $p i32) (local $n i32) (local $arg_len i32) (local $out i32)
    ;; Skip the keys.
    (local.set $n (i32.load (local.get $ptr)))
    (local.set $p (i32.add (local.get $ptr) (i32.const 4)))
    (block $done
      (loop $skip
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $p (i32.add (local.get $p) (i32.add (i32.const 4) (i32.load (local.get $p)))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $skip)))
    ;; No arguments: reply nil (tag 0).
    (if (i32.eqz (i32.load (local.get $p)))
      (then
        (local.set $out (call $alloc (i32.const 1)))
        (i32.store8 (local.get $out) (i32.const 0))
        (call $reply (local.get $out) (i32.const 1))
        (return (i64.const 0))))
    ;; The first argument: reply tag 2 (bulk), u32 length, bytes.
    (local.set $arg_len (i32.load (i32.add (local.get $p) (i32.const 4))))
    (local.set $out (call $alloc (i32.add (local.get $arg_len) (i32.const 5))))
    (i32.store8 (local.get $out) (i32.const 2))
    (i32.store (i32.add (local.get $out) (i32.const 1)) (local.get $arg_len))
    (memory.copy (i32.add (local.get $out) (i32.const 5)) (i32.add (local.get $p) (i32.const 8)) (local.get $arg_len))
    (call $reply (local.get $out) (i32.add (local.get $arg_len) (i32.const 5)))
    (i64.const 0)))

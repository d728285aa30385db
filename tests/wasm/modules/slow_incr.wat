;; A write call that outlasts the time slice a write call's first attempt gets at apply
;; (20 ms): INCRBY {t}a 1 through `call`, then a counted loop of 60 million steps (about 360
;; million units of fuel, under the write calls' ceiling of a billion), then the INCRBY's reply.
;; Data layout (offsets): 32 call buffer [INCRBY {t}a 1]; the heap starts at 1024.
(module
  (import "ferrite" "call" (func $call (param i32 i32) (result i64)))
  (import "ferrite" "reply" (func $reply (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "\03\00\00\00\06\00\00\00INCRBY\04\00\00\00{t}a\01\00\00\001")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "incr_slowly") (param i32 i32) (result i64)
    (local $r i64)
    (local $i i32)
    (local.set $r (call $call (i32.const 32) (i32.const 27)))
    (local.set $i (i32.const 60000000))
    (loop $l
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (local.get $i)))
    (call $reply (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))) (i32.wrap_i64 (local.get $r)))
    (i64.const 0)))

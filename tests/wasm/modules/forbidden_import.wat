(module
  (import "env" "abort" (func $abort))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 0))
  (func (export "main") (param i32 i32) (result i64) (i64.const 0)))

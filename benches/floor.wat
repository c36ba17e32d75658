;; The floor: the least any Wasm filter can do to route by the body, for benches/load.py.
;;
;; It holds the request headers, lets Envoy buffer the whole body, copies the body into its
;; memory (as a filter must to read it) and sets the route header to `openai`. Nothing is
;; parsed, logged or counted, and there is no SDK: what it costs is what Envoy and V8 charge
;; before a filter does any work of its own. Built with `wasm-as` (Debian's binaryen).
;;
;; Return values follow the proxy-wasm ABI 0.2.1: for request headers 0 is Continue and 1
;; StopIteration; for the request body 0 is Continue and 1 StopIterationAndBuffer.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace_header_map_value (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "x-posturio-cluster")
  (data (i32.const 48) "openai")
  (func (export "proxy_abi_version_0_2_1"))
  ;; Envoy asks for room for each buffer it hands over: always the same region, from 64 KiB
  ;; on, grown to fit. Nothing is kept between calls.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $needed i32)
    (local.set $needed
      (i32.shr_u (i32.add (i32.add (local.get $size) (i32.const 65536)) (i32.const 65535))
                 (i32.const 16)))
    (if (i32.gt_u (local.get $needed) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $needed) (memory.size))))))
    (i32.const 65536))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (select (i32.const 0) (i32.const 1) (local.get 2)))
  ;; At the end of the body: copy it in (its bytes land at 64 KiB), then route.
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (if (i32.eqz (local.get 2)) (then (return (i32.const 1))))
    (drop (call $get_buffer_bytes (i32.const 0) (i32.const 0) (local.get 1) (i32.const 0) (i32.const 4)))
    (drop (call $replace_header_map_value
      (i32.const 0) (i32.const 16) (i32.const 18) (i32.const 48) (i32.const 6)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))

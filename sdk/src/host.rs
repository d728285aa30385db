//! The raw imports of module `ferrite` and safe wrappers around them. Outside `wasm32` (when
//! the SDK is compiled for host-side unit tests) the data functions do nothing.

use crate::reply::Reply;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "ferrite")]
unsafe extern "C" {
    #[link_name = "get_key"]
    fn ferrite_get_key(kptr: i32, klen: i32) -> i64;
    #[link_name = "set_key"]
    fn ferrite_set_key(kptr: i32, klen: i32, vptr: i32, vlen: i32) -> i32;
    #[link_name = "del_key"]
    fn ferrite_del_key(kptr: i32, klen: i32) -> i32;
    #[link_name = "call"]
    fn ferrite_call(ptr: i32, len: i32) -> i64;
    #[link_name = "reply"]
    fn ferrite_reply(ptr: i32, len: i32);
    #[link_name = "log"]
    fn ferrite_log(level: i32, ptr: i32, len: i32);
    #[link_name = "panic"]
    fn ferrite_panic(ptr: i32, len: i32);
}

/// Takes ownership of a host-filled buffer at `(ptr, len)`, allocated through `alloc`.
#[cfg(target_arch = "wasm32")]
fn take_buffer(ptr: i32, len: i32) -> Vec<u8> {
    let len = len as usize;
    // SAFETY: the host filled `len` bytes at `ptr`, a block our `alloc` export returned for
    // `max(len, 1)` bytes with alignment 1; the bump allocator never reuses it.
    unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len).to_vec() }
}

/// The call input the host wrote at `(ptr, len)`.
pub fn take_input(ptr: i32, len: i32) -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    {
        take_buffer(ptr, len)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (ptr, len);
        Vec::new()
    }
}

#[cfg(target_arch = "wasm32")]
fn unpack(packed: i64) -> Vec<u8> {
    let (ptr, len) = ferrite_abi::unpack(packed);
    take_buffer(ptr as i32, len as i32)
}

pub fn get_key(key: &[u8]) -> Option<Vec<u8>> {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: the pointer and length describe `key`, alive for the call.
        let packed = unsafe { ferrite_get_key(key.as_ptr() as i32, key.len() as i32) };
        (packed != ferrite_abi::KEY_NOT_FOUND).then(|| unpack(packed))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        None
    }
}

pub fn set_key(key: &[u8], value: &[u8]) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: both buffers are alive for the call.
    unsafe {
        ferrite_set_key(
            key.as_ptr() as i32,
            key.len() as i32,
            value.as_ptr() as i32,
            value.len() as i32,
        );
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (key, value);
}

pub fn del_key(key: &[u8]) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: the buffer is alive for the call.
        unsafe { ferrite_del_key(key.as_ptr() as i32, key.len() as i32) == 1 }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        false
    }
}

pub fn call<A: AsRef<[u8]>>(argv: &[A]) -> Reply {
    let buf = ferrite_abi::encode_args(argv);
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: the buffer is alive for the call.
        let packed = unsafe { ferrite_call(buf.as_ptr() as i32, buf.len() as i32) };
        Reply::decode(&unpack(packed))
            .unwrap_or(Reply::Error("ERR malformed reply from host".to_owned()))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = buf;
        Reply::Error("ERR not running in Ferrite".to_owned())
    }
}

pub fn reply(reply: &Reply) {
    let mut buf = Vec::new();
    reply.encode(&mut buf);
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the buffer is alive for the call.
    unsafe {
        ferrite_reply(buf.as_ptr() as i32, buf.len() as i32);
    }
}

pub fn log(level: i32, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the buffer is alive for the call.
    unsafe {
        ferrite_log(level, message.as_ptr() as i32, message.len() as i32);
    }
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Reports a panic's message to the host (an extension of ABI v1: the host then answers
/// `ERR wasm: panic: <message>` instead of a bare trap; all writes are discarded either way).
pub fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".to_owned()),
        };
        let message = match info.location() {
            Some(at) => format!("{message} at {}:{}", at.file(), at.line()),
            None => message,
        };
        // SAFETY: the buffer is alive for the call.
        unsafe { ferrite_panic(message.as_ptr() as i32, message.len() as i32) };
    }));
}

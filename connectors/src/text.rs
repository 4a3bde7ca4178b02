//! Rendering values as text for line-oriented sinks, without the `fmt`
//! machinery for the types records usually carry.

use std::any::Any;
use std::fmt::Display;
use std::io::Write;

/// Appends `value` as [`Display`] renders it. Strings are copied and
/// integers written by `itoa`, skipping `core::fmt` (a third of a small
/// record's formatting cost); any other type goes through `Display`.
pub fn push_display<T: Display + 'static>(value: &T, out: &mut Vec<u8>) {
    let any = value as &dyn Any;
    // Each `downcast_ref` is a constant `TypeId` comparison: the branches
    // for other types vanish when `T` is known.
    if let Some(s) = any.downcast_ref::<String>() {
        out.extend_from_slice(s.as_bytes());
    } else if let Some(s) = any.downcast_ref::<weir_core::CompactString>() {
        out.extend_from_slice(s.as_bytes());
    } else if let Some(s) = any.downcast_ref::<&'static str>() {
        out.extend_from_slice(s.as_bytes());
    } else if let Some(n) = any.downcast_ref::<u64>() {
        out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
    } else if let Some(n) = any.downcast_ref::<i64>() {
        out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
    } else if let Some(n) = any.downcast_ref::<u32>() {
        out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
    } else if let Some(n) = any.downcast_ref::<i32>() {
        out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
    } else if let Some(n) = any.downcast_ref::<usize>() {
        out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
    } else {
        // Writing into a `Vec` cannot fail; a `Display` impl that returns
        // an error leaves what it wrote so far, as `to_string` would panic.
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown<T: Display + 'static>(v: T) -> String {
        let mut out = Vec::new();
        push_display(&v, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn renders_like_display() {
        assert_eq!(shown("wörd".to_owned()), "wörd");
        assert_eq!(shown("word"), "word");
        assert_eq!(shown(weir_core::CompactString::from("wörd")), "wörd");
        assert_eq!(shown(u64::MAX), u64::MAX.to_string());
        assert_eq!(shown(i64::MIN), i64::MIN.to_string());
        assert_eq!(shown(7u32), "7");
        assert_eq!(shown(-7i32), "-7");
        assert_eq!(shown(0usize), "0");
        assert_eq!(shown(1.5f64), "1.5");
        assert_eq!(shown('x'), "x");
    }
}

//! The arguments of the first user program (`init=PATH init_args=WORDS`).
//!
//! A kernel argument's value is one word of printable ASCII (the module
//! doc of this crate), but a program's arguments have spaces, commas and
//! any bytes. So the arguments after the program travel in one value,
//! `init_args`: each argument percent-encoded, the arguments separated by
//! `,`. A byte is written `%XX` (two upper-case hex digits) when it is
//! `%`, `,`, white space or anything but printable ASCII; every other byte
//! stands for itself. `busybox sh -c 'echo hi | cat'` becomes
//! `init=/bin/busybox init_args=sh,-c,echo%20hi%20|%20cat`.
//!
//! An empty value means no arguments, so one empty argument alone cannot
//! be written (an empty argument among others can: `a,,b`). NUL cannot be
//! in a C string and is refused in both directions.
//!
//! xtask encodes ([`encode_argv`]), the kernel decodes ([`decode_argv`]);
//! both are tested here on the host.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The key of the first program's path.
pub const INIT_KEY: &str = "init";
/// The key of its arguments after argv\[0\], encoded as this module says.
pub const INIT_ARGS_KEY: &str = "init_args";

/// Why arguments could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgvError {
    /// A `%` not followed by two hex digits, at this byte offset.
    BadEscape { at: usize },
    /// A decoded argument is not UTF-8 (argument number `index`, from 0).
    NotUtf8 { index: usize },
    /// An argument holds a NUL byte (argument number `index`).
    Nul { index: usize },
    /// A single empty argument: it would encode as no arguments at all.
    LoneEmpty,
}

impl fmt::Display for ArgvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgvError::BadEscape { at } => {
                write!(f, "`%` at offset {at} is not followed by two hex digits")
            }
            ArgvError::NotUtf8 { index } => write!(f, "argument {index} is not UTF-8 once decoded"),
            ArgvError::Nul { index } => write!(f, "argument {index} holds a NUL byte"),
            ArgvError::LoneEmpty => {
                write!(f, "a single empty argument cannot be passed (it reads as no arguments)")
            }
        }
    }
}

fn needs_escape(b: u8) -> bool {
    !b.is_ascii_graphic() || b == b'%' || b == b','
}

/// The `init_args` value that carries `args` (argv\[1..\]).
pub fn encode_argv(args: &[&str]) -> Result<String, ArgvError> {
    if args == [""] {
        return Err(ArgvError::LoneEmpty);
    }
    let mut out = String::new();
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for b in arg.bytes() {
            if b == 0 {
                return Err(ArgvError::Nul { index });
            }
            if needs_escape(b) {
                out.push('%');
                out.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0').to_ascii_uppercase());
                out.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0').to_ascii_uppercase());
            } else {
                out.push(b as char);
            }
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The arguments an `init_args` value carries (argv\[1..\]).
pub fn decode_argv(value: &str) -> Result<Vec<String>, ArgvError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let bytes = value.as_bytes();
    let mut args = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    let finish = |current: &mut Vec<u8>, args: &mut Vec<String>| {
        let index = args.len();
        if current.contains(&0) {
            return Err(ArgvError::Nul { index });
        }
        let arg = String::from_utf8(core::mem::take(current)).map_err(|_| ArgvError::NotUtf8 { index })?;
        args.push(arg);
        Ok(())
    };
    while i < bytes.len() {
        match bytes[i] {
            b',' => {
                finish(&mut current, &mut args)?;
                i += 1;
            }
            b'%' => {
                let digits = bytes.get(i + 1..i + 3).and_then(|d| Some(hex(d[0])? << 4 | hex(d[1])?));
                current.push(digits.ok_or(ArgvError::BadEscape { at: i })?);
                i += 3;
            }
            b => {
                current.push(b);
                i += 1;
            }
        }
    }
    finish(&mut current, &mut args)?;
    Ok(args)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;

    #[test]
    fn shell_command_round_trips() {
        let args = ["sh", "-c", "echo hi | cat"];
        let value = encode_argv(&args).unwrap();
        assert_eq!(value, "sh,-c,echo%20hi%20|%20cat");
        assert_eq!(decode_argv(&value).unwrap(), args);
        // The value is a valid kernel argument.
        let line = std::format!("init=/bin/busybox {INIT_ARGS_KEY}={value}");
        let parsed = crate::Args::parse(&line).unwrap();
        assert_eq!(decode_argv(parsed.get(INIT_ARGS_KEY).unwrap()).unwrap(), args);
    }

    #[test]
    fn awkward_arguments_round_trip() {
        for args in [
            vec![],
            vec!["a", "", "b"],
            vec!["", ""],
            vec!["100%", "a,b", "tab\there", "new\nline", "caf\u{e9}", "%41"],
            vec!["x"],
        ] {
            let value = encode_argv(&args).unwrap();
            assert!(value.bytes().all(|b| b.is_ascii_graphic()), "{value:?}");
            assert_eq!(decode_argv(&value).unwrap(), args, "{value}");
        }
        assert_eq!(encode_argv(&["caf\u{e9}"]).unwrap(), "caf%C3%A9");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(encode_argv(&[""]), Err(ArgvError::LoneEmpty));
        assert_eq!(encode_argv(&["a", "b\0"]), Err(ArgvError::Nul { index: 1 }));
        assert_eq!(decode_argv("a,%0"), Err(ArgvError::BadEscape { at: 2 }));
        assert_eq!(decode_argv("%zz"), Err(ArgvError::BadEscape { at: 0 }));
        assert_eq!(decode_argv("a,b%00"), Err(ArgvError::Nul { index: 1 }));
        assert_eq!(decode_argv("%FF"), Err(ArgvError::NotUtf8 { index: 0 }));
        assert_eq!(
            std::format!("{}", ArgvError::BadEscape { at: 3 }),
            "`%` at offset 3 is not followed by two hex digits"
        );
    }

    #[test]
    fn lower_case_escapes_are_read_too() {
        assert_eq!(decode_argv("a%2cb").unwrap(), ["a,b"]);
    }
}

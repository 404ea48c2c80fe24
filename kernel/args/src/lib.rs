//! Kernel arguments: the `key=value` words a user passes after `--` to
//! `cargo xtask qemu boot`, and that reach the kernel on both arches (QEMU
//! `-append` into the device tree's `/chosen/bootargs` on AArch64, a `fw_cfg`
//! file on x86_64).
//!
//! The same parser runs on the host (xtask refuses a bad argument before it
//! boots anything) and in the kernel (which echoes what it got). It allocates
//! nothing: an [`Args`] borrows the command line and keeps at most
//! [`MAX_ARGS`] pairs.
//!
//! Grammar: words separated by ASCII white space; each word is `key=value` or
//! a bare `key` (a flag, value `""`). A key is 1..=32 characters from
//! `[a-z0-9_-]`; a value is any run of printable ASCII without white space.
//! A key may appear once only: a repeated key is refused, because silently
//! taking the first or the last is how a typo goes unnoticed.
//!
//! | module | what |
//! | --- | --- |
//! | [`argv`] | the first user program's arguments (`init=`, `init_args=`) through that grammar; unlike the rest, it allocates |
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod argv;

use core::fmt;

/// The most arguments one command line may carry.
pub const MAX_ARGS: usize = 32;
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 32;

/// Why a command line was refused. Always the user's input to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// A word starts with `=`, so it has no key.
    EmptyKey { word: &'a str },
    /// A key is longer than [`MAX_KEY_LEN`] or has a character outside `[a-z0-9_-]`.
    BadKey { key: &'a str },
    /// A value has a character that is not printable ASCII.
    BadValue { key: &'a str },
    /// The same key was given twice.
    Repeated { key: &'a str },
    /// More than [`MAX_ARGS`] words.
    TooMany,
    /// The command line's bytes are not UTF-8 (the first bad byte is at
    /// `at`); only [`Args::parse_bytes`] says so.
    NotUtf8 { at: usize },
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::EmptyKey { word } => write!(f, "argument `{word}` has no key before `=`"),
            ArgError::BadKey { key } => {
                write!(f, "argument key `{key}` is not 1..={MAX_KEY_LEN} characters of [a-z0-9_-]")
            }
            ArgError::BadValue { key } => {
                write!(f, "the value of `{key}` has a character that is not printable ASCII")
            }
            ArgError::Repeated { key } => write!(f, "argument `{key}` is given more than once"),
            ArgError::TooMany => write!(f, "more than {MAX_ARGS} arguments"),
            ArgError::NotUtf8 { at } => {
                write!(f, "the command line is not UTF-8 (a bad byte at offset {at})")
            }
        }
    }
}

/// One `key=value` pair (`value` is `""` for a bare flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg<'a> {
    pub key: &'a str,
    pub value: &'a str,
}

/// A parsed command line. Keeps the order the user gave.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    pairs: [Arg<'a>; MAX_ARGS],
    nr_pairs: usize,
}

/// Why [`Args::get_u64`] could not give a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberError<'a> {
    NotANumber { key: &'a str, value: &'a str },
}

impl fmt::Display for NumberError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberError::NotANumber { key, value } => {
                write!(f, "argument `{key}={value}`: not a number (decimal or 0x hex)")
            }
        }
    }
}

fn key_is_valid(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl<'a> Args<'a> {
    /// An empty command line.
    pub const fn empty() -> Self {
        Args { pairs: [Arg { key: "", value: "" }; MAX_ARGS], nr_pairs: 0 }
    }

    /// Parses a command line as the firmware handed it over: bytes, maybe
    /// ending in NULs (the device tree's string property, the `fw_cfg`
    /// file). Bytes that are not UTF-8 are refused like any other bad
    /// argument, so both arches treat them alike.
    pub fn parse_bytes(line: &'a [u8]) -> Result<Self, ArgError<'a>> {
        let end = line.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        match core::str::from_utf8(&line[..end]) {
            Ok(line) => Args::parse(line),
            Err(e) => Err(ArgError::NotUtf8 { at: e.valid_up_to() }),
        }
    }

    /// Parses a whole command line. See the module doc for the grammar.
    pub fn parse(line: &'a str) -> Result<Self, ArgError<'a>> {
        let mut args = Args::empty();
        for word in line.split_ascii_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some(("", _)) => return Err(ArgError::EmptyKey { word }),
                Some((k, v)) => (k, v),
                None => (word, ""),
            };
            if !key_is_valid(key) {
                return Err(ArgError::BadKey { key });
            }
            if !value.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ArgError::BadValue { key });
            }
            if args.get(key).is_some() {
                return Err(ArgError::Repeated { key });
            }
            if args.nr_pairs == MAX_ARGS {
                return Err(ArgError::TooMany);
            }
            args.pairs[args.nr_pairs] = Arg { key, value };
            args.nr_pairs += 1;
        }
        Ok(args)
    }

    /// The value of `key`, or `None` when it was not given.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter().find(|a| a.key == key).map(|a| a.value)
    }

    /// The value of `key` as a number (decimal, or hex with `0x`).
    /// `Ok(None)` when the key was not given.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, NumberError<'a>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let key = self.iter().find(|a| a.key == key).map(|a| a.key).unwrap_or("");
        let parsed = match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse::<u64>(),
        };
        parsed.map(Some).map_err(|_| NumberError::NotANumber { key, value })
    }

    /// True when `key` was given (with or without a value).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The pairs in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Arg<'a>> {
        self.pairs[..self.nr_pairs].iter()
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.nr_pairs
    }

    /// True when the command line was empty.
    pub fn is_empty(&self) -> bool {
        self.nr_pairs == 0
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn parses_pairs_and_flags_in_order() {
        let args = Args::parse("  test=all seed=0x2a  verbose stress_secs=10\n").unwrap();
        let got: std::vec::Vec<_> = args.iter().map(|a| (a.key, a.value)).collect();
        assert_eq!(got, [("test", "all"), ("seed", "0x2a"), ("verbose", ""), ("stress_secs", "10")]);
        assert_eq!(args.get("test"), Some("all"));
        assert!(args.has("verbose"));
        assert_eq!(args.get("missing"), None);
        assert_eq!(args.get_u64("seed"), Ok(Some(42)));
        assert_eq!(args.get_u64("stress_secs"), Ok(Some(10)));
        assert_eq!(args.get_u64("missing"), Ok(None));
    }

    #[test]
    fn value_may_contain_equals_and_punctuation() {
        let args = Args::parse("test=pgtable::map,huge bug=a=b").unwrap();
        assert_eq!(args.get("test"), Some("pgtable::map,huge"));
        assert_eq!(args.get("bug"), Some("a=b"));
    }

    #[test]
    fn empty_line_is_empty() {
        let args = Args::parse("   ").unwrap();
        assert!(args.is_empty());
        assert_eq!(args.len(), 0);
    }

    #[test]
    fn refuses_bad_input_with_the_culprit() {
        assert_eq!(Args::parse("=x").unwrap_err(), ArgError::EmptyKey { word: "=x" });
        assert_eq!(Args::parse("Test=1").unwrap_err(), ArgError::BadKey { key: "Test" });
        assert_eq!(Args::parse("a.b=1").unwrap_err(), ArgError::BadKey { key: "a.b" });
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(matches!(Args::parse(&long).unwrap_err(), ArgError::BadKey { .. }));
        assert_eq!(Args::parse("a=1 a=2").unwrap_err(), ArgError::Repeated { key: "a" });
        assert_eq!(Args::parse("a=\u{e9}").unwrap_err(), ArgError::BadValue { key: "a" });
        let many: std::string::String = (0..=MAX_ARGS).map(|i| std::format!("k{i}=1 ")).collect();
        assert_eq!(Args::parse(&many).unwrap_err(), ArgError::TooMany);
    }

    #[test]
    fn number_errors_name_the_argument() {
        let args = Args::parse("seed=12x").unwrap();
        let err = args.get_u64("seed").unwrap_err();
        assert_eq!(err, NumberError::NotANumber { key: "seed", value: "12x" });
        assert_eq!(std::format!("{err}"), "argument `seed=12x`: not a number (decimal or 0x hex)");
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let msg = std::format!("{}", Args::parse("x=1 x=2").unwrap_err());
        assert_eq!(msg, "argument `x` is given more than once");
    }

    #[test]
    fn bytes_from_the_firmware_drop_trailing_nuls_and_must_be_utf8() {
        let args = Args::parse_bytes(b"test=all seed=7\0\0").unwrap();
        assert_eq!(args.get("seed"), Some("7"));
        assert!(Args::parse_bytes(b"").unwrap().is_empty());
        assert!(Args::parse_bytes(b"\0").unwrap().is_empty());
        let err = Args::parse_bytes(b"test=all a=\xff\xfe\0").unwrap_err();
        assert_eq!(err, ArgError::NotUtf8 { at: 11 });
        assert_eq!(std::format!("{err}"), "the command line is not UTF-8 (a bad byte at offset 11)");
    }
}

//! The swap header (`mm::swap::header`): our own headers round-trip, every
//! refusal has its own error and a message naming the problem, a header of
//! the other byte order is accepted, and a header made by the real
//! `mkswap` parses (when the host has one).

use std::path::PathBuf;
use std::process::Command;

use mm::pgtable::format::MAX_SWAP_OFFSET;
use mm::swap::header::{format, parse, HeaderError, HEADER_SIZE, MAX_BAD_PAGES};

/// 8 MiB of 4 KiB pages.
const PAGES_8M: u64 = 2048;

fn put_u32(page: &mut [u8], at: usize, value: u32) {
    page[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Checks that `result` is `want` and that its message contains every one
/// of `words`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, HeaderError>, want: HeaderError, words: &[&str]) {
    let err = result.expect_err("the header should be refused");
    assert_eq!(err, want);
    let msg = err.to_string();
    for word in words {
        assert!(msg.contains(word), "message {msg:?} does not mention {word:?}");
    }
}

#[test]
fn format_then_parse_round_trips() {
    let page = format(PAGES_8M, &[7, 3, 700], b"swap0").unwrap();
    assert_eq!(&page[4086..], b"SWAPSPACE2");
    let h = parse(&page, PAGES_8M).unwrap();
    assert_eq!(h.last_page, PAGES_8M - 1);
    assert_eq!(h.nr_pages, PAGES_8M);
    assert_eq!(h.bad_pages, vec![3, 7, 700], "sorted");
    assert_eq!(h.label_bytes(), b"swap0");
    assert_eq!(&h.label[5..], &[0; 11]);
    assert!(!h.byte_swapped);
    assert_eq!(h.nr_good_pages(), PAGES_8M - 1 - 3);
    // A device larger than the area is fine.
    assert_eq!(parse(&page, PAGES_8M * 2).unwrap(), h);
}

#[test]
fn format_uuid_is_deterministic_and_marked() {
    let a = parse(&format(PAGES_8M, &[], b"a").unwrap(), PAGES_8M).unwrap();
    let a2 = parse(&format(PAGES_8M, &[], b"a").unwrap(), PAGES_8M).unwrap();
    let b = parse(&format(PAGES_8M, &[], b"b").unwrap(), PAGES_8M).unwrap();
    let c = parse(&format(PAGES_8M + 1, &[], b"a").unwrap(), PAGES_8M + 1).unwrap();
    assert_eq!(a.uuid, a2.uuid);
    assert_ne!(a.uuid, b.uuid);
    assert_ne!(a.uuid, c.uuid);
    assert_eq!(a.uuid[6] >> 4, 8, "version 8");
    assert_eq!(a.uuid[8] >> 6, 0b10, "RFC variant");
}

#[test]
fn format_limits() {
    // The smallest area: the header and one page; the largest label.
    let h = parse(&format(2, &[], &[b'x'; 16]).unwrap(), 2).unwrap();
    assert_eq!((h.last_page, h.nr_pages), (1, 2));
    assert_eq!(h.label_bytes(), &[b'x'; 16]);
    // The most bad pages.
    let bad: Vec<u32> = (1..=MAX_BAD_PAGES as u32).collect();
    let h = parse(&format(PAGES_8M, &bad, b"").unwrap(), PAGES_8M).unwrap();
    assert_eq!(h.bad_pages.len(), MAX_BAD_PAGES);
    // The largest area a 32-bit last_page can describe.
    let h = parse(&format(1 << 32, &[], b"").unwrap(), 1 << 32).unwrap();
    assert_eq!(h.last_page, u32::MAX as u64);
    assert!(h.nr_pages <= MAX_SWAP_OFFSET + 1);
}

#[test]
fn refuses_wrong_size() {
    let page = format(PAGES_8M, &[], b"").unwrap();
    assert_refused(parse(&page[..4000], PAGES_8M), HeaderError::WrongSize { len: 4000 }, &["4000", "4096"]);
}

#[test]
fn refuses_missing_signature() {
    let mut page = format(PAGES_8M, &[], b"").unwrap();
    page[4095] = b'3';
    assert_refused(parse(&page, PAGES_8M), HeaderError::NoSignature, &["SWAPSPACE2", "mkswap"]);
    assert_refused(parse(&[0; HEADER_SIZE], PAGES_8M), HeaderError::NoSignature, &["signature"]);
}

#[test]
fn refuses_old_format() {
    let mut page = format(PAGES_8M, &[], b"").unwrap();
    page[4086..].copy_from_slice(b"SWAP-SPACE");
    assert_refused(parse(&page, PAGES_8M), HeaderError::OldFormat, &["SWAP-SPACE", "version 0", "mkswap"]);
}

#[test]
fn refuses_bad_version() {
    let mut page = format(PAGES_8M, &[], b"").unwrap();
    put_u32(&mut page, 1024, 2);
    assert_refused(parse(&page, PAGES_8M), HeaderError::BadVersion { version: 2 }, &["version 0x2", "1"]);
    put_u32(&mut page, 1024, 0);
    assert_refused(parse(&page, PAGES_8M), HeaderError::BadVersion { version: 0 }, &["version"]);
}

#[test]
fn refuses_zero_last_page() {
    let mut page = format(PAGES_8M, &[], b"").unwrap();
    put_u32(&mut page, 1028, 0);
    assert_refused(parse(&page, PAGES_8M), HeaderError::NoLastPage, &["last_page is 0"]);
    assert_refused(format(1, &[], b""), HeaderError::NoLastPage, &["last_page"]);
    assert_refused(format(0, &[], b""), HeaderError::NoLastPage, &["last_page"]);
}

#[test]
fn refuses_area_beyond_device() {
    let page = format(PAGES_8M, &[], b"").unwrap();
    assert_refused(
        parse(&page, PAGES_8M - 1),
        HeaderError::BeyondDevice { nr_pages: PAGES_8M, device_pages: PAGES_8M - 1 },
        &["2048 pages", "only 2047"],
    );
}

#[test]
fn refuses_too_many_bad_pages() {
    let mut page = format(PAGES_8M, &[], b"").unwrap();
    put_u32(&mut page, 1032, 638);
    assert_refused(parse(&page, PAGES_8M), HeaderError::TooManyBadPages { nr: 638 }, &["638", "637"]);
    // A huge count must not make parse read past the page.
    put_u32(&mut page, 1032, u32::MAX);
    assert_refused(parse(&page, PAGES_8M), HeaderError::TooManyBadPages { nr: u32::MAX }, &["bad pages"]);
    let bad: Vec<u32> = (1..=638).collect();
    assert_refused(format(PAGES_8M, &bad, b""), HeaderError::TooManyBadPages { nr: 638 }, &["638"]);
}

#[test]
fn refuses_bad_page_out_of_range() {
    assert_refused(
        format(PAGES_8M, &[5, PAGES_8M as u32], b""),
        HeaderError::BadPageOutOfRange { page: PAGES_8M as u32, last_page: PAGES_8M - 1 },
        &["bad page 2048", "1..=2047"],
    );
    assert_refused(
        format(PAGES_8M, &[0], b""),
        HeaderError::BadPageOutOfRange { page: 0, last_page: PAGES_8M - 1 },
        &["bad page 0"],
    );
}

#[test]
fn refuses_area_without_good_page() {
    assert_refused(format(2, &[1], b""), HeaderError::NoGoodPage, &["every page", "bad"]);
    // Repeats in the list do not count twice.
    assert_refused(format(3, &[1, 2, 2, 1], b""), HeaderError::NoGoodPage, &["bad"]);
    assert_eq!(parse(&format(3, &[2, 2], b"").unwrap(), 3).unwrap().bad_pages, vec![2]);
}

#[test]
fn refuses_long_label() {
    assert_refused(format(PAGES_8M, &[], &[b'l'; 17]), HeaderError::LabelTooLong { len: 17 }, &["17", "16"]);
}

#[test]
fn refuses_too_large_area() {
    let total = (1u64 << 32) + 1;
    assert_refused(
        format(total, &[], b""),
        HeaderError::TooLarge { total_pages: total },
        &["too large", "2^32"],
    );
}

#[test]
fn accepts_byte_swapped_header() {
    let mut page = format(PAGES_8M, &[9, 4], b"be").unwrap();
    // What a big-endian mkswap would have written: every number swapped.
    for at in [1024, 1028, 1032, 1536, 1540] {
        let value = u32::from_le_bytes(page[at..at + 4].try_into().unwrap());
        page[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }
    let h = parse(&page, PAGES_8M).unwrap();
    assert!(h.byte_swapped);
    assert_eq!((h.last_page, h.nr_pages), (PAGES_8M - 1, PAGES_8M));
    assert_eq!(h.bad_pages, vec![4, 9]);
    assert_eq!(h.label_bytes(), b"be");
}

/// The real tool, if the host has it.
fn mkswap() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/sbin"] {
        let path = PathBuf::from(dir).join("mkswap");
        if path.exists() {
            return Some(path);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("mkswap")).find(|p| p.exists())
}

/// Makes a swap file of `bytes` with `mkswap -L label`, returns its first page.
fn run_mkswap(tool: &PathBuf, bytes: u64, label: &str) -> Vec<u8> {
    let file = std::env::temp_dir().join(format!("mm-swap-header-{}-{bytes}.img", std::process::id()));
    std::fs::File::create(&file).unwrap().set_len(bytes).unwrap();
    // `-p 4096`: our header is 4 KiB whatever the host's page size.
    let out = Command::new(tool).args(["-p", "4096", "-L", label]).arg(&file).output().unwrap();
    let data = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(out.status.success(), "mkswap failed: {}", String::from_utf8_lossy(&out.stderr));
    data[..HEADER_SIZE].to_vec()
}

#[test]
fn parses_header_made_by_mkswap() {
    let Some(tool) = mkswap() else {
        eprintln!("SKIPPED: no mkswap on this host; checking our own header only");
        let h = parse(&format(PAGES_8M, &[], b"lbl").unwrap(), PAGES_8M).unwrap();
        assert_eq!((h.last_page, h.label_bytes()), (PAGES_8M - 1, &b"lbl"[..]));
        return;
    };
    // mkswap keeps a NUL after the label, so 15 bytes is its longest.
    for (pages, label) in [(PAGES_8M, "lbl"), (PAGES_8M * 2 + 3, "swap-label-15ch")] {
        let page = run_mkswap(&tool, pages * 4096, label);
        let h = parse(&page, pages).unwrap_or_else(|e| panic!("mkswap's header refused: {e}"));
        assert_eq!(h.last_page, pages - 1);
        assert_eq!(h.nr_pages, pages);
        assert_eq!(h.label_bytes(), label.as_bytes());
        assert!(h.bad_pages.is_empty());
        assert!(!h.byte_swapped);
        assert_ne!(h.uuid, [0; 16], "mkswap writes a uuid");
        // Our header for the same area agrees with mkswap's but for the uuid.
        let ours = format(pages, &[], label.as_bytes()).unwrap();
        assert_eq!(page[1024..1036], ours[1024..1036]);
        assert_eq!(page[1052..], ours[1052..]);
    }
}

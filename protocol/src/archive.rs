//! The privacy export's container (docs/compliance.md): a minimal POSIX ustar archive of regular
//! files with short names. The data plane writes it ([`archive`]); any `tar` reads it
//! (`tar -xf export.tar`), and so does the SDK ([`files`]) to make it readable on a device.

const BLOCK: usize = 512;

/// Writes `value` as zero-padded octal filling `field` but its last byte (a NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// One archive member's header, for a member of `size` bytes that follows it, then
/// [`padding`]`(size)` zero bytes. Names longer than 100 bytes are refused by the caller's choice
/// of names (fixed file names and ids), so they are cut rather than handled.
pub fn header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = name.as_bytes();
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// The zero bytes after a member of `size` bytes, up to the next block.
pub fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// What ends an archive: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The archive of these files, in this order. (An archive too large to hold in memory is
/// written member by member with [`header`], [`padding`] and [`END`].)
pub fn archive(files: &[(String, Vec<u8>)], mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|(_, d)| d.len() + 2 * BLOCK).sum::<usize>() + 2 * BLOCK);
    for (name, data) in files {
        out.extend_from_slice(&header(name, data.len() as u64, mtime));
        out.extend_from_slice(data);
        out.resize(out.len() + padding(data.len() as u64), 0);
    }
    out.extend_from_slice(&END);
    out
}

/// Why an archive could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnArchive(pub String);

impl std::fmt::Display for NotAnArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a Conclave export archive: {}", self.0)
    }
}

impl std::error::Error for NotAnArchive {}

/// The regular files of an archive, in order: (name, contents). Reads what [`archive`] writes
/// (and any ustar archive of regular files); refuses a header whose checksum is wrong, a size
/// beyond the end, or a member type other than a regular file or directory.
pub fn files(tar: &[u8]) -> Result<Vec<(String, Vec<u8>)>, NotAnArchive> {
    let bad = |what: String| NotAnArchive(what);
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= tar.len() {
        let h = &tar[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let field = |range: std::ops::Range<usize>| -> Result<u64, NotAnArchive> {
            let text = std::str::from_utf8(&h[range]).map_err(|_| bad(format!("header at byte {at}")))?;
            let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
            u64::from_str_radix(text, 8).map_err(|_| bad(format!("a number {text:?} in the header at byte {at}")))
        };
        let mut blank = h.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        if field(148..156)? != blank.iter().map(|&b| u64::from(b)).sum::<u64>() {
            return Err(bad(format!("the header at byte {at} has a wrong checksum")));
        }
        let name_len = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8(h[..name_len].to_vec()).map_err(|_| bad(format!("a name at byte {at}")))?;
        let size = usize::try_from(field(124..136)?).map_err(|_| bad(format!("{name}: too large")))?;
        let start = at + BLOCK;
        let end =
            start.checked_add(size).filter(|&end| end <= tar.len()).ok_or_else(|| bad(format!("{name}: cut short")))?;
        match h[156] {
            b'0' | 0 => out.push((name, tar[start..end].to_vec())),
            b'5' => {}
            other => return Err(bad(format!("{name}: member type {:?} is not a file", other as char))),
        }
        at = start + size.div_ceil(BLOCK) * BLOCK;
    }
    Err(bad("no end-of-archive marker".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_block_aligned_with_a_valid_checksum() {
        let tar = archive(&[("a.json".into(), b"{}".to_vec()), ("b/c.bin".into(), vec![7; 600])], 0);
        assert_eq!(tar.len(), BLOCK * (1 + 1 + 1 + 2 + 2));
        let h = &tar[..BLOCK];
        assert_eq!(&h[..6], b"a.json");
        assert_eq!(&h[124..135], b"00000000002");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).expect("octal"), 8).expect("octal");
        let mut blank = h.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert_eq!(&tar[BLOCK..BLOCK + 2], b"{}");
        assert_eq!(&tar[2 * BLOCK..2 * BLOCK + 7], b"b/c.bin");
    }

    #[test]
    fn what_is_written_reads_back_and_damage_is_refused() {
        let written =
            vec![("a.json".to_owned(), b"{}".to_vec()), ("b/c.bin".into(), vec![7; 600]), ("e".into(), vec![])];
        let tar = archive(&written, 1_700_000_000);
        assert_eq!(files(&tar), Ok(written));
        let mut flipped = tar.clone();
        flipped[3] ^= 1;
        assert!(files(&flipped).is_err_and(|e| e.0.contains("checksum")), "a damaged header");
        assert!(files(&tar[..BLOCK + 100]).is_err(), "cut short");
        assert!(files(b"not a tar").is_err());
        assert!(files(&[]).is_err(), "no end marker");
    }
}

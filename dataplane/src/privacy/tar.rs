//! A minimal POSIX ustar writer: regular files with short names, which is all an export holds.
//! Any `tar` reads it (`tar -xf export.tar`).

const BLOCK: usize = 512;

/// Writes `value` as zero-padded octal filling `field` but its last byte (a NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// One archive member's header. Names longer than 100 bytes are refused by the caller's choice
/// of names (fixed file names and ids), so they are cut rather than handled.
fn header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
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

/// The archive of these files, in this order.
pub fn archive(files: &[(String, Vec<u8>)], mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|(_, d)| d.len() + 2 * BLOCK).sum::<usize>() + 2 * BLOCK);
    for (name, data) in files {
        out.extend_from_slice(&header(name, data.len() as u64, mtime));
        out.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        out.resize(out.len() + pad, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
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
}

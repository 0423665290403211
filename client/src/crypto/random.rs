use zeroize::Zeroizing;

use super::CryptoError;

/// `N` bytes from the operating system's CSPRNG, zeroized when dropped.
pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|_| CryptoError::Randomness)?;
    Ok(bytes)
}

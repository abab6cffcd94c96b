//! A 256-bit key pinned in RAM: kept out of swap and core dumps' reach as far as the OS allows
//! (mlock), zeroized on drop. For keys that live in memory for the server's lifetime (a TPM's
//! `sealed-kek` keys).

use zeroize::Zeroize;

pub const KEY_LEN: usize = 32;

/// One key per page: munlock works on whole pages and does not nest, so two keys sharing a
/// page would unlock each other.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

pub struct LockedKey {
    page: Box<Page>,
    locked: bool,
}

impl LockedKey {
    /// Copies `key` (32 bytes) into a locked page; None for another length.
    pub fn new(key: &[u8]) -> Option<Self> {
        if key.len() != KEY_LEN {
            return None;
        }
        let mut page = Box::new(Page([0; 4096]));
        page.0[..KEY_LEN].copy_from_slice(key);
        let locked = lock(&page.0);
        if !locked {
            tracing::warn!("cannot mlock a key page (RLIMIT_MEMLOCK?); the key may be swapped out");
        }
        Some(Self { page, locked })
    }

    pub fn expose(&self) -> &[u8] {
        &self.page.0[..KEY_LEN]
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for LockedKey {
    fn drop(&mut self) {
        self.page.0.zeroize();
        if self.locked {
            unlock(&self.page.0);
        }
    }
}

impl std::fmt::Debug for LockedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockedKey(<redacted>)")
    }
}

/// Up to a page of short-lived secret bytes pinned in RAM and zeroized on drop: the raw RSA
/// decryption of wrapped key material while it is decoded (at most 512 bytes for RSA-4096).
pub struct LockedBuf {
    page: Box<Page>,
    len: usize,
    locked: bool,
}

impl LockedBuf {
    pub const MAX_LEN: usize = 4096;

    /// `len` zero bytes; None beyond [`Self::MAX_LEN`].
    pub fn zeroed(len: usize) -> Option<Self> {
        if len > Self::MAX_LEN {
            return None;
        }
        let page = Box::new(Page([0; 4096]));
        let locked = lock(&page.0);
        Some(Self { page, len, locked })
    }

    pub fn expose(&self) -> &[u8] {
        &self.page.0[..self.len]
    }

    pub fn expose_mut(&mut self) -> &mut [u8] {
        &mut self.page.0[..self.len]
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        self.page.0.zeroize();
        if self.locked {
            unlock(&self.page.0);
        }
    }
}

impl std::fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockedBuf([REDACTED; {}])", self.len)
    }
}

/// Keeps this whole process out of swap (mlockall) and out of core dumps, for the short-lived
/// commands that hold the escrow private key (`keyward escrow init`, `keyward recover`), whose
/// secrets live in library-owned big integers no single page lock can cover. Returns what could
/// not be done, for the command to tell the operator.
///
/// Memory is locked only where the kernel will not hold the process to RLIMIT_MEMLOCK (root, or
/// an unlimited limit): past that limit every later allocation would fail.
#[allow(unsafe_code)]
pub fn protect_process() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: plain system calls on this process with constant arguments or a local struct;
    // none touches memory Rust owns.
    unsafe {
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            missing.push("core dumps are not disabled".to_owned());
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let unlimited = libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0
            && limit.rlim_cur == libc::RLIM_INFINITY;
        if !(libc::geteuid() == 0 || unlimited) {
            missing.push(
                "memory is not locked (RLIMIT_MEMLOCK is limited: run as root, or raise it)"
                    .to_owned(),
            );
        } else if libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) != 0 {
            missing.push(format!(
                "memory is not locked ({})",
                std::io::Error::last_os_error()
            ));
        }
    }
    missing
}

#[allow(unsafe_code)]
fn lock(page: &[u8; 4096]) -> bool {
    // SAFETY: the pointer and length describe one live, page-aligned allocation owned by the
    // caller; mlock changes only how the kernel pages it, never its contents.
    unsafe { libc::mlock(page.as_ptr().cast(), page.len()) == 0 }
}

#[allow(unsafe_code)]
fn unlock(page: &[u8; 4096]) {
    // SAFETY: as for `lock`; called once, before the allocation is freed.
    unsafe {
        libc::munlock(page.as_ptr().cast(), page.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_key_pinned_and_page_aligned() {
        let key = LockedKey::new(&[7; 32]).unwrap();
        assert_eq!(key.expose(), &[7; 32]);
        assert_eq!(key.expose().as_ptr() as usize % 4096, 0);
        assert_eq!(format!("{key:?}"), "LockedKey(<redacted>)");
        // Root and ordinary users alike may lock a page under the default RLIMIT_MEMLOCK.
        assert!(key.is_locked());
        assert!(LockedKey::new(&[0; 16]).is_none());
    }

    #[test]
    fn buffers_are_pinned_bounded_and_redacted() {
        let mut buf = LockedBuf::zeroed(512).unwrap();
        buf.expose_mut()[0] = 9;
        assert_eq!(buf.expose().len(), 512);
        assert_eq!(buf.expose()[0], 9);
        assert!(buf.is_locked());
        assert_eq!(format!("{buf:?}"), "LockedBuf([REDACTED; 512])");
        assert!(LockedBuf::zeroed(4097).is_none());
    }
}

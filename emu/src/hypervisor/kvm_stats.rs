//! KVM's binary statistics (`KVM_GET_STATS_FD`) for VMs and vCPUs.
//!
//! Read by name: `insn_emulation` (instructions KVM's emulator ran), `exits`, `halt_exits` and
//! the rest, so figures from different hosts can be compared.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use vmm_sys_util::ioctl::ioctl;

/// `KVM_GET_STATS_FD`, `_IO(KVMIO, 0xce)`. `vmm-sys-util`'s macro makes an undocumented `pub fn`;
/// this private module keeps it out of emu's API.
mod request {
    vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);
}
use request::KVM_GET_STATS_FD;

const HEADER_SIZE: usize = 24;
const DESC_FIXED_SIZE: usize = 16;

/// An open statistics file of one VM or vCPU.
pub struct KvmStats {
    file: File,
    descriptors: Vec<(String, u64)>, // (name, data offset)
    data_offset: u64,
}

impl KvmStats {
    /// Opens the statistics of the KVM object behind `fd` (a VM or a vCPU). `None` when the
    /// kernel has no binary statistics.
    pub fn open(fd: &impl AsRawFd) -> Option<Self> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new file descriptor or -1.
        let raw = unsafe { ioctl(fd, KVM_GET_STATS_FD()) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(raw) };
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0).ok()?;
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (name_size, count, desc_offset, data_offset) = (
            word(4) as usize,
            word(8) as usize,
            word(16) as u64,
            word(20) as u64,
        );
        let desc_size = DESC_FIXED_SIZE + name_size;
        let mut raw_desc = vec![0u8; desc_size.checked_mul(count)?];
        file.read_exact_at(&mut raw_desc, desc_offset).ok()?;
        let descriptors = raw_desc
            .chunks_exact(desc_size)
            .map(|d| {
                let offset = u32::from_le_bytes([d[8], d[9], d[10], d[11]]) as u64;
                let name: String = d[DESC_FIXED_SIZE..]
                    .iter()
                    .take_while(|&&c| c != 0)
                    .map(|&c| c as char)
                    .collect();
                (name, offset)
            })
            .collect();
        Some(Self {
            file,
            descriptors,
            data_offset,
        })
    }

    /// One statistic by name (the first value of a histogram); reads only that value.
    pub fn read(&self, name: &str) -> Option<u64> {
        let (_, offset) = self.descriptors.iter().find(|(n, _)| n == name)?;
        let mut value = [0u8; 8];
        self.file
            .read_exact_at(&mut value, self.data_offset + offset)
            .ok()?;
        Some(u64::from_le_bytes(value))
    }
}

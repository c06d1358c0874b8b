//! Direct kernel boot through the Linux x86 64-bit boot protocol.
//!
//! Loads a bzImage (its protected-mode part at `code32_start`, entered at +0x200) or an
//! uncompressed ELF `vmlinux` (its PT_LOAD segments at their physical addresses, entered at
//! `e_entry`) with linux-loader, then places the command line, the initrd and the zero page
//! (`boot_params` with the e820 map and the ACPI RSDP address) in guest memory.

use super::layout::{
    ACPI_END, ACPI_START, CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_START, HIMEM_START, INITRD_MAX_END,
    MMIO_HOLE_END, MMIO_HOLE_START, PCI_ECAM_SIZE, PCI_ECAM_START, ZERO_PAGE_START,
};
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{self, BzImage, Elf, KernelLoader, KernelLoaderResult};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// Boot protocol 2.12: the first with the 64-bit entry point and `xloadflags`.
const MIN_BOOT_PROTOCOL_64: u16 = 0x020c;
const XLF_KERNEL_64: u16 = 1 << 0;
const LOADFLAG_LOADED_HIGH: u8 = 1 << 0;
const LOADFLAG_CAN_USE_HEAP: u8 = 1 << 7;
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Where a non-relocatable ELF vmlinux expects to run (Linux's default LOAD_PHYSICAL_ADDR).
const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;

/// Why the kernel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel image file could not be opened or its size read.
    #[error("cannot open kernel {path}: {source}")]
    OpenKernel {
        /// Kernel image path from the configuration.
        path: PathBuf,
        /// The error from opening the file.
        source: std::io::Error,
    },
    /// The file has neither an ELF header nor a bzImage "HdrS" setup header.
    #[error("{path} is not a Linux kernel: it is neither an ELF vmlinux nor a bzImage")]
    NotAKernel {
        /// Kernel image path from the configuration.
        path: PathBuf,
    },
    /// `linux-loader` failed to load the image (other than for lack of memory).
    #[error("cannot load kernel {path}: {source}")]
    LoadKernel {
        /// Kernel image path from the configuration.
        path: PathBuf,
        /// The loader's error.
        source: loader::Error,
    },
    /// A bzImage older than boot protocol 2.12, or without `XLF_KERNEL_64`: no 64-bit entry point.
    #[error("{path} uses boot protocol {version:#x}; Cove needs 2.12 or later with a 64-bit entry point")]
    OldKernel {
        /// Kernel image path from the configuration.
        path: PathBuf,
        /// The setup header's boot protocol version, e.g. `0x020c` for 2.12.
        version: u16,
    },
    /// Guest RAM below the MMIO hole cannot hold the kernel loaded at 1 MiB.
    #[error("guest memory is too small for this kernel: it needs {needed:#x} bytes and the VM has {available:#x}")]
    KernelTooBig {
        /// Bytes of low RAM the kernel needs: 1 MiB plus the image file's size.
        needed: u64,
        /// Bytes of RAM below the MMIO hole.
        available: u64,
    },
    /// The initrd file could not be opened or its size read.
    #[error("cannot open initrd {path}: {source}")]
    OpenInitrd {
        /// Initrd path from the configuration.
        path: PathBuf,
        /// The error from opening the file.
        source: std::io::Error,
    },
    /// The initrd does not fit between the kernel's end and the highest address it may occupy.
    #[error("initrd {path} ({size} bytes) does not fit in guest memory: {free} bytes are free between the kernel and {limit:#x}")]
    InitrdTooBig {
        /// Initrd path from the configuration.
        path: PathBuf,
        /// Initrd size in bytes.
        size: u64,
        /// Bytes free between the page-aligned end of the kernel and `limit`.
        free: u64,
        /// Guest-physical address the initrd must end below: the end of low RAM or the
        /// kernel's `initrd_addr_max` + 1, whichever is lower.
        limit: u64,
    },
    /// Copying the initrd file into guest memory failed.
    #[error("cannot read initrd {path}: {reason}")]
    ReadInitrd {
        /// Initrd path from the configuration.
        path: PathBuf,
        /// The guest-memory or I/O error, as text.
        reason: String,
    },
    /// The command line is over [`CMDLINE_MAX_SIZE`] bytes or `linux-loader` rejects a character.
    #[error("kernel command line is too long (at most {max} bytes): {reason}")]
    Cmdline {
        /// The limit in bytes, [`CMDLINE_MAX_SIZE`].
        max: usize,
        /// What `linux-loader`'s `Cmdline` objected to.
        reason: String,
    },
    /// The zero page (boot_params, e820 map) could not be written to guest memory.
    #[error("cannot write boot parameters: {0}")]
    BootParams(String),
}

/// What the vCPU needs to start the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    /// 64-bit entry point.
    pub entry: GuestAddress,
    /// The zero page, passed in RSI.
    pub boot_params: GuestAddress,
}

/// The kernel image formats Cove boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// An ELF `vmlinux`, loaded where its program headers say.
    Elf,
    /// A bzImage (Linux x86 boot protocol), whose protected-mode part is loaded at 1 MiB.
    BzImage,
}

/// Identifies a kernel image from its first bytes and its setup header.
pub fn detect_format(file: &mut File) -> std::io::Result<Option<KernelFormat>> {
    let mut magic = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    let mut hdr = [0u8; 4];
    file.seek(SeekFrom::Start(0x202))?;
    if file.read_exact(&mut hdr).is_ok() && u32::from_le_bytes(hdr) == KERNEL_HDR_MAGIC {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// What to boot.
pub struct BootSpec<'a> {
    /// Path of the kernel image (ELF vmlinux or bzImage).
    pub kernel: &'a Path,
    /// Path of an initial ramdisk, placed at the top of low RAM; `None` boots without one.
    pub initrd: Option<&'a Path>,
    /// Kernel command line, at most [`CMDLINE_MAX_SIZE`] bytes; surrounding whitespace is trimmed.
    pub cmdline: &'a str,
    /// Where the RSDP is, when ACPI tables were written.
    pub rsdp: Option<GuestAddress>,
}

/// Loads the kernel, initrd and command line and writes the zero page.
pub fn load_kernel(memory: &GuestMemoryMmap, spec: &BootSpec) -> Result<KernelEntry, BootError> {
    let path = spec.kernel.to_path_buf();
    let mut file = File::open(spec.kernel).map_err(|source| BootError::OpenKernel {
        path: path.clone(),
        source,
    })?;
    let format = detect_format(&mut file)
        .map_err(|source| BootError::OpenKernel {
            path: path.clone(),
            source,
        })?
        .ok_or_else(|| BootError::NotAKernel { path: path.clone() })?;
    file.seek(SeekFrom::Start(0))
        .map_err(|source| BootError::OpenKernel {
            path: path.clone(),
            source,
        })?;

    let load_err = |source| BootError::LoadKernel {
        path: path.clone(),
        source,
    };
    let ram_end_low = low_ram_end(memory);
    let (loaded, header, entry) = match format {
        KernelFormat::Elf => {
            let loaded = Elf::load(memory, None, &mut file, Some(GuestAddress(HIMEM_START)))
                .map_err(|e| map_load_error(e, memory, &path))?;
            (loaded, elf_setup_header(), loaded.kernel_load)
        }
        KernelFormat::BzImage => {
            let loaded = BzImage::load(memory, None, &mut file, Some(GuestAddress(HIMEM_START)))
                .map_err(|e| map_load_error(e, memory, &path))?;
            let header = loaded.setup_header.ok_or_else(|| {
                load_err(loader::Error::Bzimage(
                    loader::bzimage::Error::InvalidBzImage,
                ))
            })?;
            let version = header.version;
            let xloadflags = header.xloadflags;
            if version < MIN_BOOT_PROTOCOL_64 || xloadflags & XLF_KERNEL_64 == 0 {
                return Err(BootError::OldKernel { path, version });
            }
            // The kernel decompresses itself into init_size bytes from its load address.
            let needed = loaded.kernel_load.0 + u64::from(header.init_size);
            if needed > ram_end_low {
                return Err(BootError::KernelTooBig {
                    needed,
                    available: ram_end_low,
                });
            }
            (loaded, header, GuestAddress(loaded.kernel_load.0 + 0x200))
        }
    };

    let cmdline = build_cmdline(spec.cmdline)?;
    loader::load_cmdline(memory, GuestAddress(CMDLINE_START), &cmdline).map_err(|e| {
        BootError::Cmdline {
            max: CMDLINE_MAX_SIZE,
            reason: e.to_string(),
        }
    })?;

    let mut params = boot_params {
        hdr: header,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.loadflags |= LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP;
    params.hdr.heap_end_ptr = 0xfe00;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = spec.cmdline.len() as u32 + 1;
    if let Some(rsdp) = spec.rsdp {
        params.acpi_rsdp_addr = rsdp.0;
    }

    if let Some(initrd) = spec.initrd {
        let (addr, size) = load_initrd(memory, initrd, &loaded, &header)?;
        params.hdr.ramdisk_image = addr.0 as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let map = e820_map(memory);
    for (slot, entry) in params.e820_table.iter_mut().zip(map.iter()) {
        *slot = *entry;
    }
    params.e820_entries = map.len().min(params.e820_table.len()) as u8;

    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE_START)),
        memory,
    )
    .map_err(|e| BootError::BootParams(e.to_string()))?;

    Ok(KernelEntry {
        entry,
        boot_params: GuestAddress(ZERO_PAGE_START),
    })
}

/// linux-loader reports a kernel that does not fit as a failed read; say what it means.
fn map_load_error(e: loader::Error, memory: &GuestMemoryMmap, path: &Path) -> BootError {
    let too_big = matches!(
        e,
        loader::Error::Elf(loader::elf::Error::ReadKernelImage)
            | loader::Error::Bzimage(loader::bzimage::Error::ReadBzImageCompressedKernel)
            | loader::Error::MemoryOverflow
    );
    if too_big {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        return BootError::KernelTooBig {
            needed: HIMEM_START + size,
            available: low_ram_end(memory),
        };
    }
    BootError::LoadKernel {
        path: path.to_path_buf(),
        source: e,
    }
}

/// A setup header for an ELF kernel, which carries none: what the kernel checks in boot_params.
fn elf_setup_header() -> setup_header {
    setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        version: MIN_BOOT_PROTOCOL_64,
        kernel_alignment: ELF_KERNEL_ALIGNMENT,
        ..Default::default()
    }
}

fn build_cmdline(text: &str) -> Result<Cmdline, BootError> {
    let err = |reason: String| BootError::Cmdline {
        max: CMDLINE_MAX_SIZE,
        reason,
    };
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| err(e.to_string()))?;
    if !text.trim().is_empty() {
        cmdline
            .insert_str(text.trim())
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(cmdline)
}

/// End of RAM below the MMIO hole.
fn low_ram_end(memory: &GuestMemoryMmap) -> u64 {
    let last = memory.last_addr().0 + 1;
    last.min(MMIO_HOLE_START)
}

/// Places the initrd as high as the kernel allows, page aligned, above the kernel.
fn load_initrd(
    memory: &GuestMemoryMmap,
    path: &Path,
    kernel: &KernelLoaderResult,
    header: &setup_header,
) -> Result<(GuestAddress, u64), BootError> {
    let open_err = |source| BootError::OpenInitrd {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    let size = file.metadata().map_err(open_err)?.len();
    // initrd_addr_max is the highest address the initrd may *occupy*.
    let kernel_limit = match header.initrd_addr_max {
        0 => INITRD_MAX_END,
        max => u64::from(max) + 1,
    };
    let limit = low_ram_end(memory).min(kernel_limit);
    let kernel_end = kernel.kernel_end.max(kernel.kernel_load.0);
    let floor = (kernel_end + 0xfff) & !0xfff;
    let too_big = || BootError::InitrdTooBig {
        path: path.to_path_buf(),
        size,
        free: limit.saturating_sub(floor),
        limit,
    };
    let start = limit.checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if start < floor || size > u64::from(u32::MAX) {
        return Err(too_big());
    }
    memory
        .read_exact_volatile_from(GuestAddress(start), &mut file, size as usize)
        .map_err(|e| BootError::ReadInitrd {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((GuestAddress(start), size))
}

/// The PCI ECAM lies in the MMIO hole: after the low RAM, before the RAM above 4 GiB.
const _: () =
    assert!(PCI_ECAM_START >= MMIO_HOLE_START && PCI_ECAM_START + PCI_ECAM_SIZE <= MMIO_HOLE_END);

/// The guest's e820 memory map, sorted by address. Besides RAM it reserves the EBDA, the ACPI
/// tables and the PCI ECAM (which Linux wants reserved before it uses MMCONFIG).
pub fn e820_map(memory: &GuestMemoryMmap) -> Vec<boot_e820_entry> {
    let entry = |addr, size, r#type| boot_e820_entry { addr, size, r#type };
    let low_end = low_ram_end(memory);
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, ACPI_START - EBDA_START, E820_RESERVED),
        entry(ACPI_START, ACPI_END - ACPI_START, E820_RESERVED),
        entry(HIMEM_START, low_end - HIMEM_START, E820_RAM),
        entry(PCI_ECAM_START, PCI_ECAM_SIZE, E820_RESERVED),
    ];
    let last = memory.last_addr().0 + 1;
    if last > MMIO_HOLE_END {
        map.push(entry(MMIO_HOLE_END, last - MMIO_HOLE_END, E820_RAM));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ram_ranges;
    use std::io::Write;
    use vm_memory::Bytes;

    fn memory(size: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&ram_ranges(size)).unwrap()
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cove-boot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    /// A minimal 64-bit ELF with one PT_LOAD segment at 16 MiB and its entry there.
    fn tiny_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 0x1000];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little endian
        elf[6] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // entry
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        let ph = &mut elf[64..120];
        ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..16].copy_from_slice(&0x800u64.to_le_bytes()); // offset
        ph[16..24].copy_from_slice(&0x100_0000u64.to_le_bytes()); // vaddr
        ph[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // paddr
        ph[32..40].copy_from_slice(&0x10u64.to_le_bytes()); // filesz
        ph[40..48].copy_from_slice(&0x20u64.to_le_bytes()); // memsz
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes()); // align
        elf[0x800..0x810].copy_from_slice(&[0xf4; 16]);
        elf
    }

    #[test]
    fn boots_an_elf_kernel_with_initrd_and_cmdline() {
        let mem = memory(64 << 20);
        let kernel = temp_file("vmlinux", &tiny_elf());
        let initrd = temp_file("initrd", &[0x5a; 10000]);
        let entry = load_kernel(
            &mem,
            &BootSpec {
                kernel: &kernel,
                initrd: Some(&initrd),
                cmdline: "console=ttyS0 quiet",
                rsdp: Some(GuestAddress(ACPI_START)),
            },
        )
        .unwrap();
        assert_eq!(entry.entry, GuestAddress(0x100_0000));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(), 0xf4);
        let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ params.hdr.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!({ params.acpi_rsdp_addr }, ACPI_START);
        let mut cmd = [0u8; 19];
        mem.read_slice(&mut cmd, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cmd, b"console=ttyS0 quiet");
        let (start, size) = ({ params.hdr.ramdisk_image }, { params.hdr.ramdisk_size });
        assert_eq!(size, 10000);
        assert_eq!(start % 4096, 0);
        assert!(u64::from(start) + u64::from(size) <= 64 << 20);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(u64::from(start) + 9999))
                .unwrap(),
            0x5a
        );
        assert_eq!({ params.e820_entries }, 5);
    }

    #[test]
    fn rejects_files_that_are_not_kernels() {
        let mem = memory(64 << 20);
        let junk = temp_file("junk", b"this is not a kernel at all, just some text.");
        let err = load_kernel(
            &mem,
            &BootSpec {
                kernel: &junk,
                initrd: None,
                cmdline: "",
                rsdp: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, BootError::NotAKernel { .. }), "{err}");
        let missing = Path::new("/nonexistent/cove/kernel");
        let err = load_kernel(
            &mem,
            &BootSpec {
                kernel: missing,
                initrd: None,
                cmdline: "",
                rsdp: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, BootError::OpenKernel { .. }), "{err}");
    }

    #[test]
    fn rejects_an_initrd_that_does_not_fit() {
        let mem = memory(32 << 20);
        let kernel = temp_file("vmlinux2", &tiny_elf());
        let initrd = temp_file("big-initrd", &vec![0u8; 20 << 20]);
        let err = load_kernel(
            &mem,
            &BootSpec {
                kernel: &kernel,
                initrd: Some(&initrd),
                cmdline: "",
                rsdp: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, BootError::InitrdTooBig { .. }), "{err}");
        assert!(err.to_string().contains("does not fit"));
    }

    #[test]
    fn rejects_an_overlong_cmdline() {
        let mem = memory(64 << 20);
        let kernel = temp_file("vmlinux3", &tiny_elf());
        let long = "a".repeat(CMDLINE_MAX_SIZE + 10);
        let err = load_kernel(
            &mem,
            &BootSpec {
                kernel: &kernel,
                initrd: None,
                cmdline: &long,
                rsdp: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, BootError::Cmdline { .. }), "{err}");
    }

    #[test]
    fn e820_covers_ram_above_the_hole() {
        let map = e820_map(&memory(4 << 30));
        let last = map.last().unwrap();
        assert_eq!(({ last.addr }, { last.size }), (MMIO_HOLE_END, 1 << 30));
        let ram: u64 = map
            .iter()
            .filter(|e| e.r#type == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (4 << 30) - (ACPI_END - EBDA_START));
        assert_eq!(map.len(), 6);
    }

    #[test]
    fn e820_reserves_the_pci_ecam_and_is_sorted() {
        for size in [64 << 20, 3 << 30, 4 << 30] {
            let map = e820_map(&memory(size));
            let ecam: Vec<_> = map
                .iter()
                .filter(|e| ({ e.addr }, { e.size }) == (PCI_ECAM_START, PCI_ECAM_SIZE))
                .collect();
            assert_eq!(ecam.len(), 1);
            assert_eq!({ ecam[0].r#type }, E820_RESERVED);
            assert_eq!(
                ({ ecam[0].addr }, { ecam[0].size }),
                (0xe000_0000, 0x1000_0000)
            );
            for w in map.windows(2) {
                assert!(
                    w[0].addr + w[0].size <= w[1].addr,
                    "{size:#x}: unsorted or overlapping"
                );
            }
            // No RAM inside the ECAM.
            assert!(map
                .iter()
                .filter(|e| e.r#type == E820_RAM)
                .all(|e| e.addr + e.size <= PCI_ECAM_START
                    || e.addr >= PCI_ECAM_START + PCI_ECAM_SIZE));
        }
    }
}

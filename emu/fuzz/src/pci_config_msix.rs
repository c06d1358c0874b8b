//! Target `pci_config_msix`: guest configuration-space and BAR accesses to a virtio-rng device
//! on the virtio PCI transport, plugged into a CPU-less machine ([`emu::harness::Harness`]) the
//! way the machine builder plugs it in. Accesses go through every path a guest has: the PCI
//! root's own API, configuration mechanism #1 (ports 0xcf8..0xcff), the ECAM window, and the
//! MMIO bus at the device's current BAR 0 address, which holds the virtio registers, the MSI-X
//! table and the PBA.
//!
//! Input layout: a sequence of 8-byte operations (numbers little-endian; a short last one is
//! dropped); at most [`MAX_OPS`] are run.
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | kind ([`op`]), `b % 8` |
//! | 1 | access size: `1 << (b % 3)`, so 1, 2 or 4 bytes |
//! | 2..4 | offset (u16): config register (`% 4096`), BAR offset (`% BAR_SIZE`), port offset from 0xcf8 (`% 8`), or for ECAM bits 0..11 the register and bits 12..15 the device number on bus 0 |
//! | 4..8 | value written (the low `size` bytes; ignored by reads) |
//!
//! Before the first operation the device's memory decoding and bus mastering are turned on, as
//! a driver's probe does; the operations may turn them off again or move the BAR. Property:
//! nothing panics, and every read fills exactly the bytes asked for.

use emu::arch::x86_64::layout::{ports, PCI_ECAM_START};
use emu::harness::Harness;
use emu::pci::config_space::{BAR0, COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use emu::pci::PciAddress;
use emu::virtio::pci::BAR_SIZE;

/// Bytes per operation.
pub const OP_LEN: usize = 8;
/// The most operations one input runs.
pub const MAX_OPS: usize = 512;
/// Guest RAM of the harness machine (the device may DMA into it once the fuzzer sets it up).
pub const MEMORY_SIZE: u64 = 2 << 20;

/// Operation kinds (byte 0 of an operation, modulo 8).
pub mod op {
    /// Configuration read through [`emu::pci::PciRoot::config_read`].
    pub const CONFIG_READ: u8 = 0;
    /// Configuration write through [`emu::pci::PciRoot::config_write`].
    pub const CONFIG_WRITE: u8 = 1;
    /// MMIO read at BAR 0's current address plus the offset.
    pub const BAR_READ: u8 = 2;
    /// MMIO write at BAR 0's current address plus the offset.
    pub const BAR_WRITE: u8 = 3;
    /// Port read at 0xcf8 plus the offset.
    pub const PORT_READ: u8 = 4;
    /// Port write at 0xcf8 plus the offset.
    pub const PORT_WRITE: u8 = 5;
    /// MMIO read in the ECAM window.
    pub const ECAM_READ: u8 = 6;
    /// MMIO write in the ECAM window.
    pub const ECAM_WRITE: u8 = 7;
}

/// One decoded operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// One of [`op`].
    pub kind: u8,
    /// 1, 2 or 4.
    pub size: usize,
    /// See the module doc.
    pub offset: u16,
    /// Written value.
    pub value: u32,
}

impl Op {
    /// Decodes an 8-byte operation.
    pub fn decode(raw: &[u8; OP_LEN]) -> Self {
        Self {
            kind: raw[0] % 8,
            size: 1 << (raw[1] % 3),
            offset: u16::from_le_bytes([raw[2], raw[3]]),
            value: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
        }
    }

    /// The bytes [`Op::decode`] turns back into `self`.
    pub fn encode(&self) -> [u8; OP_LEN] {
        let mut raw = [0u8; OP_LEN];
        raw[0] = self.kind;
        raw[1] = self.size.trailing_zeros() as u8;
        raw[2..4].copy_from_slice(&self.offset.to_le_bytes());
        raw[4..8].copy_from_slice(&self.value.to_le_bytes());
        raw
    }
}

/// What a run left behind, for the seed checks.
pub struct Outcome {
    /// Where the device sits.
    pub address: PciAddress,
    /// Every read's bytes, in order.
    pub reads: Vec<Vec<u8>>,
    /// MSI messages the device sent.
    pub msi_sent: usize,
}

fn config_read(h: &Harness, address: PciAddress, register: usize, len: usize) -> u32 {
    let mut data = [0u8; 4];
    h.pci.root.config_read(address, register, &mut data[..len]);
    u32::from_le_bytes(data)
}

/// BAR 0's current guest-physical address (a 64-bit or 32-bit memory BAR).
fn bar0_address(h: &Harness, address: PciAddress) -> u64 {
    let low = config_read(h, address, BAR0, 4);
    let high = if low & 0x6 == 0x4 {
        config_read(h, address, BAR0 + 4, 4)
    } else {
        0
    };
    (u64::from(high) << 32) | u64::from(low & !0xf)
}

/// Runs one input. Never panics on any input; a panic is a bug in emu.
pub fn run(data: &[u8]) -> Outcome {
    let h = Harness::new(MEMORY_SIZE);
    let address = h.pci.add_rng().expect("plug virtio-rng in");
    let command = config_read(&h, address, COMMAND, 2) as u16;
    let enabled = command | COMMAND_MEMORY | COMMAND_BUS_MASTER;
    h.pci
        .root
        .config_write(address, COMMAND, &enabled.to_le_bytes());

    let mut reads = Vec::new();
    for raw in data.chunks_exact(OP_LEN).take(MAX_OPS) {
        let Ok(raw) = <&[u8; OP_LEN]>::try_from(raw) else {
            break;
        };
        let op = Op::decode(raw);
        let value = op.value.to_le_bytes();
        let value = &value[..op.size];
        let mut buf = vec![0u8; op.size];
        let register = usize::from(op.offset) % 4096;
        let bar = bar0_address(&h, address).wrapping_add(u64::from(op.offset) % BAR_SIZE);
        let port = ports::PCI_CONFIG_ADDRESS + u64::from(op.offset % 8);
        let ecam =
            PCI_ECAM_START + (u64::from(op.offset >> 12) << 15) + (u64::from(op.offset) & 0xfff);
        match op.kind {
            op::CONFIG_READ => h.pci.root.config_read(address, register, &mut buf),
            op::CONFIG_WRITE => h.pci.root.config_write(address, register, value),
            op::BAR_READ => {
                h.mmio.read(bar, &mut buf);
            }
            op::BAR_WRITE => {
                h.mmio.write(bar, value);
            }
            op::PORT_READ => {
                h.pio.read(port, &mut buf);
            }
            op::PORT_WRITE => {
                h.pio.write(port, value);
            }
            op::ECAM_READ => {
                h.mmio.read(ecam, &mut buf);
            }
            _ => {
                h.mmio.write(ecam, value);
            }
        }
        if matches!(
            op.kind,
            op::CONFIG_READ | op::BAR_READ | op::PORT_READ | op::ECAM_READ
        ) {
            assert_eq!(buf.len(), op.size, "a read changed its size");
            reads.push(buf);
        }
    }
    Outcome {
        address,
        reads,
        msi_sent: h.msi.sent().len(),
    }
}

/// Well-formed inputs for the seed corpus (`seeds/pci_config_msix/`): what a guest driver does.
pub mod seeds {
    use super::{op, Op};
    use emu::pci::config_space::{BAR0, CAPABILITIES_POINTER, COMMAND, VENDOR_ID};
    use emu::virtio::pci::{MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET};

    /// One seed input and the reads it must give.
    pub struct Seed {
        /// File name under `seeds/pci_config_msix/`.
        pub name: &'static str,
        /// The input.
        pub bytes: Vec<u8>,
        /// (index of a read, the value it must return)
        pub expect: Vec<(usize, u32)>,
    }

    fn op(kind: u8, size: usize, offset: u64, value: u32) -> Op {
        Op {
            kind,
            size,
            offset: offset as u16,
            value,
        }
    }

    fn bytes(ops: &[Op]) -> Vec<u8> {
        ops.iter().flat_map(|op| op.encode()).collect()
    }

    /// The seeds; `device` is the device number the rng gets on bus 0.
    pub fn all(device: u8) -> Vec<Seed> {
        let cf8 = 0x8000_0000u32 | u32::from(device) << 11;
        let ecam = u64::from(device) << 12;
        let table = MSIX_TABLE_OFFSET;
        vec![
            Seed {
                name: "config_reads",
                bytes: bytes(&[
                    op(op::CONFIG_READ, 2, VENDOR_ID as u64, 0),
                    op(op::CONFIG_READ, 1, CAPABILITIES_POINTER as u64, 0),
                    op(op::CONFIG_READ, 4, BAR0 as u64, 0),
                    op(op::CONFIG_READ, 4, 0x1000, 0),
                ]),
                expect: vec![(0, 0x1af4)],
            },
            Seed {
                name: "bar_sizing",
                bytes: bytes(&[
                    op(op::CONFIG_WRITE, 2, COMMAND as u64, 0),
                    op(op::CONFIG_WRITE, 4, BAR0 as u64, u32::MAX),
                    op(op::CONFIG_READ, 4, BAR0 as u64, 0),
                    op(op::CONFIG_WRITE, 4, BAR0 as u64 + 4, u32::MAX),
                    op(op::CONFIG_READ, 4, BAR0 as u64 + 4, 0),
                    op(op::CONFIG_WRITE, 4, BAR0 as u64, 0xc000_0000),
                    op(op::CONFIG_WRITE, 4, BAR0 as u64 + 4, 0),
                    op(op::CONFIG_WRITE, 2, COMMAND as u64, 6),
                ]),
                expect: vec![],
            },
            Seed {
                name: "msix_table",
                bytes: bytes(&[
                    op(op::BAR_WRITE, 4, table, 0xfee0_0000),
                    op(op::BAR_WRITE, 4, table + 4, 0),
                    op(op::BAR_WRITE, 4, table + 8, 0x41),
                    op(op::BAR_WRITE, 4, table + 12, 0),
                    op(op::BAR_READ, 4, table + 8, 0),
                    op(op::BAR_READ, 2, table + 12, 0),
                    op(op::BAR_READ, 4, MSIX_PBA_OFFSET, 0),
                    op(op::BAR_READ, 1, 0, 0),
                ]),
                expect: vec![(0, 0x41)],
            },
            Seed {
                name: "config_ports",
                bytes: bytes(&[
                    op(op::PORT_WRITE, 4, 0, cf8),
                    op(op::PORT_READ, 4, 4, 0),
                    op(op::PORT_READ, 2, 6, 0),
                    op(op::PORT_READ, 4, 0, 0),
                    op(op::PORT_WRITE, 4, 0, cf8 | BAR0 as u32),
                    op(op::PORT_READ, 4, 4, 0),
                ]),
                expect: vec![(2, cf8)],
            },
            Seed {
                name: "ecam",
                bytes: bytes(&[
                    op(op::ECAM_READ, 4, ecam, 0),
                    op(op::ECAM_READ, 1, ecam + CAPABILITIES_POINTER as u64, 0),
                    op(op::ECAM_WRITE, 2, ecam + COMMAND as u64, 6),
                    op(op::ECAM_READ, 4, 0, 0),
                ]),
                expect: vec![],
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> u8 {
        run(&[]).address.device
    }

    #[test]
    fn seeds_read_what_a_driver_expects() {
        for seed in seeds::all(device()) {
            let outcome = run(&seed.bytes);
            for &(index, expect) in &seed.expect {
                let read = &outcome.reads[index];
                let mut raw = [0u8; 4];
                raw[..read.len()].copy_from_slice(read);
                assert_eq!(
                    u32::from_le_bytes(raw),
                    expect,
                    "{}: read {index}",
                    seed.name
                );
            }
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all(device());
        crate::check_seed_files(
            "pci_config_msix",
            seeds.iter().map(|seed| (seed.name, seed.bytes.as_slice())),
        );
    }

    #[test]
    fn short_and_hostile_inputs_end_cleanly() {
        run(&[0xff; 7]);
        run(&[0xff; 4096]);
        run(&[0x55; 4096]);
    }
}

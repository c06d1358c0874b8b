//! virtio-blk: a disk image as a virtio block device. Requests are served by one worker
//! thread per device, which polls every queue (multiqueue up to the vCPU count), off the
//! vCPU threads; the image is reached through [`crate::block::DiskBackend`].

pub mod request;

use super::queue_service::serve_queue;
use super::{device_type, features, ActivateError, Activation, Service, VirtioDevice};
use crate::block::DiskBackend;
use request::{execute, Limits, RequestContext, ID_BYTES, SECTOR_SIZE};
use std::sync::Arc;

/// Feature bits of virtio-blk, as masks of the bit numbers `virtio-bindings` names.
pub mod feature {
    use virtio_bindings::virtio_blk as blk;
    /// `VIRTIO_BLK_F_SEG_MAX`: `seg_max` in the config limits data segments per request.
    pub const SEG_MAX: u64 = 1 << blk::VIRTIO_BLK_F_SEG_MAX;
    /// `VIRTIO_BLK_F_RO`: the disk is read-only.
    pub const RO: u64 = 1 << blk::VIRTIO_BLK_F_RO;
    /// `VIRTIO_BLK_F_BLK_SIZE`: `blk_size` in the config gives the logical block size.
    pub const BLK_SIZE: u64 = 1 << blk::VIRTIO_BLK_F_BLK_SIZE;
    /// `VIRTIO_BLK_F_FLUSH`: the FLUSH request type is supported.
    pub const FLUSH: u64 = 1 << blk::VIRTIO_BLK_F_FLUSH;
    /// `VIRTIO_BLK_F_MQ`: `num_queues` in the config gives more than one request queue.
    pub const MQ: u64 = 1 << blk::VIRTIO_BLK_F_MQ;
    /// `VIRTIO_BLK_F_DISCARD`: the DISCARD request type is supported.
    pub const DISCARD: u64 = 1 << blk::VIRTIO_BLK_F_DISCARD;
    /// `VIRTIO_BLK_F_WRITE_ZEROES`: the WRITE_ZEROES request type is supported.
    pub const WRITE_ZEROES: u64 = 1 << blk::VIRTIO_BLK_F_WRITE_ZEROES;
}

/// Size of each request queue.
pub const QUEUE_SIZE: u16 = 256;
/// The most queues a device offers.
pub const MAX_QUEUES: u16 = 16;
/// Largest discard or write-zeroes range, in sectors (1 GiB).
pub const MAX_RANGE_SECTORS: u32 = 1 << 21;
/// What the device lets one request do, as its config space announces it: one range of at most
/// [`MAX_RANGE_SECTORS`] per discard or write-zeroes request.
pub const LIMITS: Limits = Limits {
    max_discard_sectors: MAX_RANGE_SECTORS,
    max_discard_segments: 1,
    max_write_zeroes_sectors: MAX_RANGE_SECTORS,
    max_write_zeroes_segments: 1,
};

/// The virtio-blk config space (virtio 1.2, 5.2.4) up to the fields Cove offers, little-endian.
/// The spec's struct is packed; this one keeps every field at the spec's offset (checked below
/// against `virtio-bindings`) and ends with explicit zero bytes instead of padding.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct BlockConfig {
    capacity: u64,
    size_max: u32,
    seg_max: u32,
    geometry_cylinders: u16,
    geometry_heads: u8,
    geometry_sectors: u8,
    blk_size: u32,
    physical_block_exp: u8,
    alignment_offset: u8,
    min_io_size: u16,
    opt_io_size: u32,
    wce: u8,
    unused: u8,
    num_queues: u16,
    max_discard_sectors: u32,
    max_discard_seg: u32,
    discard_sector_alignment: u32,
    max_write_zeroes_sectors: u32,
    max_write_zeroes_seg: u32,
    write_zeroes_may_unmap: u8,
    unused1: [u8; 7],
}

const _: () = {
    use std::mem::offset_of;
    use virtio_bindings::virtio_blk::virtio_blk_config as Spec;
    assert!(offset_of!(BlockConfig, seg_max) == offset_of!(Spec, seg_max));
    assert!(offset_of!(BlockConfig, blk_size) == offset_of!(Spec, blk_size));
    assert!(offset_of!(BlockConfig, num_queues) == offset_of!(Spec, num_queues));
    assert!(offset_of!(BlockConfig, max_discard_sectors) == offset_of!(Spec, max_discard_sectors));
    assert!(
        offset_of!(BlockConfig, discard_sector_alignment)
            == offset_of!(Spec, discard_sector_alignment)
    );
    assert!(
        offset_of!(BlockConfig, max_write_zeroes_seg) == offset_of!(Spec, max_write_zeroes_seg)
    );
    assert!(
        offset_of!(BlockConfig, write_zeroes_may_unmap) == offset_of!(Spec, write_zeroes_may_unmap)
    );
};

/// How to build a block device.
pub struct BlockOptions {
    /// Queues to offer (1 to [`MAX_QUEUES`]).
    pub queues: u16,
    /// Returned by GET_ID (at most 20 bytes).
    pub serial: Option<String>,
}

/// A virtio block device.
pub struct Block {
    name: String,
    disk: Arc<dyn DiskBackend>,
    serial: [u8; ID_BYTES],
    queues: u16,
    config: BlockConfig,
}

impl Block {
    /// A virtio-blk device for `disk`, 1 to [`MAX_QUEUES`] queues; the serial is cut to 20 bytes.
    pub fn new(disk: Arc<dyn DiskBackend>, options: BlockOptions) -> Self {
        let queues = options.queues.clamp(1, MAX_QUEUES);
        let mut serial = [0u8; ID_BYTES];
        if let Some(id) = &options.serial {
            let n = id.len().min(ID_BYTES);
            serial[..n].copy_from_slice(&id.as_bytes()[..n]);
        }
        let alignment = (disk.discard_alignment() / SECTOR_SIZE).max(1) as u32;
        let config = BlockConfig {
            capacity: (disk.size() / SECTOR_SIZE).to_le(),
            seg_max: u32::from(QUEUE_SIZE - 2).to_le(),
            blk_size: (SECTOR_SIZE as u32).to_le(),
            num_queues: queues.to_le(),
            max_discard_sectors: LIMITS.max_discard_sectors.to_le(),
            max_discard_seg: LIMITS.max_discard_segments.to_le(),
            discard_sector_alignment: alignment.to_le(),
            max_write_zeroes_sectors: LIMITS.max_write_zeroes_sectors.to_le(),
            max_write_zeroes_seg: LIMITS.max_write_zeroes_segments.to_le(),
            write_zeroes_may_unmap: 1,
            ..BlockConfig::default()
        };
        Self {
            name: "virtio-blk".into(),
            disk,
            serial,
            queues,
            config,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; usize::from(self.queues)]
    }

    fn features(&self) -> u64 {
        let mut bits = features::RING_INDIRECT_DESC
            | features::RING_EVENT_IDX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH;
        if self.queues > 1 {
            bits |= feature::MQ;
        }
        if self.disk.read_only() {
            bits |= feature::RO;
        } else {
            bits |= feature::DISCARD | feature::WRITE_ZEROES;
        }
        bits
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_struct(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<Service, ActivateError> {
        let Activation {
            memory,
            queues,
            interrupt,
            ..
        } = activation;
        let disk = self.disk.clone();
        let serial = self.serial;
        let mut buffer = Vec::new();
        Service::per_queue(queues, move |index, queue| {
            let mut ctx = RequestContext {
                disk: disk.as_ref(),
                serial: &serial,
                limits: &LIMITS,
                buffer: &mut buffer,
            };
            serve_queue(queue, index, &memory, &interrupt, |chain| {
                execute(chain, &memory, &mut ctx)
            })
        })
    }
}

#[cfg(test)]
mod tests;

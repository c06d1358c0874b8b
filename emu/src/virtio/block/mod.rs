//! virtio-blk: a disk image as a virtio block device. Requests are served by one worker
//! thread per device, which polls every queue (multiqueue up to the vCPU count), off the
//! vCPU threads; the image is reached through [`crate::block::DiskBackend`].

pub mod request;

use super::queue_service::serve_queue;
use super::{device_type, features, ActivateError, Activation, Service, VirtioDevice};
use crate::block::DiskBackend;
use request::{execute, Limits, RequestContext, ID_BYTES, SECTOR_SIZE};
use std::sync::Arc;

/// Feature bits of virtio-blk.
pub mod feature {
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const MQ: u64 = 1 << 12;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
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
const CONFIG_LEN: usize = 60;

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
    config: [u8; CONFIG_LEN],
}

impl Block {
    pub fn new(disk: Arc<dyn DiskBackend>, options: BlockOptions) -> Self {
        let queues = options.queues.clamp(1, MAX_QUEUES);
        let mut serial = [0u8; ID_BYTES];
        if let Some(id) = &options.serial {
            let n = id.len().min(ID_BYTES);
            serial[..n].copy_from_slice(&id.as_bytes()[..n]);
        }
        let mut config = [0u8; CONFIG_LEN];
        let mut put = |offset: usize, bytes: &[u8]| {
            config[offset..offset + bytes.len()].copy_from_slice(bytes)
        };
        put(0, &(disk.size() / SECTOR_SIZE).to_le_bytes());
        put(12, &u32::from(QUEUE_SIZE - 2).to_le_bytes());
        put(20, &(SECTOR_SIZE as u32).to_le_bytes());
        put(34, &queues.to_le_bytes());
        put(36, &MAX_RANGE_SECTORS.to_le_bytes());
        put(40, &1u32.to_le_bytes());
        let alignment = (disk.discard_alignment() / SECTOR_SIZE).max(1) as u32;
        put(44, &alignment.to_le_bytes());
        put(48, &MAX_RANGE_SECTORS.to_le_bytes());
        put(52, &1u32.to_le_bytes());
        put(56, &[1]);
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
        super::read_config_bytes(&self.config, offset, data);
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

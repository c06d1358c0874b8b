//! virtio-gpu, 2D: a control queue and a cursor queue served by one worker thread, resources
//! kept as host copies of guest surfaces, scanouts shown through a [`crate::scanout`] sink,
//! display-size change events for dynamic resolution, and screendumps. 3D (virgl) comes later.

mod edid;
pub mod protocol;
pub mod state;

use super::chain::SegmentCursor;
use super::queue_service::serve_queue;
use super::{
    device_type, features, ActivateError, Activation, Service, VirtioDevice, VirtioInterrupt,
};
use crate::scanout::SharedSink;
use parking_lot::Mutex;
use protocol::{EVENT_DISPLAY, F_EDID};
use state::GpuState;
use std::sync::Arc;

const QUEUE_SIZE: u16 = 256;
/// The largest command read from a chain (ATTACH_BACKING with the most entries fits).
const MAX_COMMAND: usize = 512 * 1024;
/// Host memory for resources unless configured otherwise.
pub const DEFAULT_BUDGET: u64 = 256 << 20;

/// How to build the GPU.
#[derive(Clone)]
pub struct GpuOptions {
    /// Number of scanouts, clamped to 1 to [`MAX_SCANOUTS`](protocol::MAX_SCANOUTS).
    pub scanouts: usize,
    /// The initial display size the guest is offered.
    pub width: u32,
    /// The initial display height in pixels.
    pub height: u32,
    /// Host memory for resources, in bytes.
    pub budget: u64,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            scanouts: 1,
            width: 1024,
            height: 768,
            budget: DEFAULT_BUDGET,
        }
    }
}

/// The virtio-gpu config space (virtio 1.2, 5.7.4), little-endian.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GpuConfig {
    events_read: u32,
    /// Write-only: the driver writes the event bits it handled.
    events_clear: u32,
    num_scanouts: u32,
    num_capsets: u32,
}

const _: () = assert!(
    std::mem::size_of::<GpuConfig>()
        == std::mem::size_of::<virtio_bindings::virtio_gpu::virtio_gpu_config>()
);

struct Shared {
    state: Mutex<GpuState>,
    /// Set once the driver started the device, to send config interrupts.
    interrupt: Mutex<Option<Arc<VirtioInterrupt>>>,
}

/// The host's handle on a GPU: resize its display, take screenshots.
#[derive(Clone)]
pub struct GpuHandle {
    shared: Arc<Shared>,
}

impl GpuHandle {
    /// The window showing scanout `index` is now `width` x `height`: offer the guest that
    /// mode (a display-change event; the guest re-reads the display info).
    pub fn set_display_size(&self, index: usize, width: u32, height: u32) {
        let changed = self
            .shared
            .state
            .lock()
            .set_display_size(index, width, height);
        if changed {
            if let Some(interrupt) = self.shared.interrupt.lock().as_ref() {
                interrupt.signal_config();
            }
        }
    }

    /// What scanout `index` shows now: width, height and RGBA pixels.
    pub fn snapshot(&self, index: usize) -> Option<(u32, u32, Vec<u8>)> {
        self.shared.state.lock().snapshot(index)
    }
}

/// A virtio-gpu device.
pub struct Gpu {
    shared: Arc<Shared>,
}

impl Gpu {
    /// The device and a handle the host display uses to offer new sizes; `sink` shows the scanouts.
    pub fn new(options: &GpuOptions, sink: Option<SharedSink>) -> (Self, GpuHandle) {
        let shared = Arc::new(Shared {
            state: Mutex::new(GpuState::new(
                options.scanouts,
                options.width,
                options.height,
                options.budget,
                sink,
            )),
            interrupt: Mutex::new(None),
        });
        (
            Self {
                shared: shared.clone(),
            },
            GpuHandle { shared },
        )
    }
}

impl VirtioDevice for Gpu {
    fn device_type(&self) -> u32 {
        device_type::GPU
    }

    fn name(&self) -> &str {
        "virtio-gpu"
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        features::RING_INDIRECT_DESC | features::RING_EVENT_IDX | F_EDID
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let state = self.shared.state.lock();
        let config = GpuConfig {
            events_read: state.events_read.to_le(),
            events_clear: 0,
            num_scanouts: (state.scanout_count() as u32).to_le(),
            num_capsets: 0,
        };
        super::read_config_struct(&config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // events_clear: clear the bits written.
        if offset == std::mem::offset_of!(GpuConfig, events_clear) as u64 && data.len() == 4 {
            let clear = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.shared.state.lock().events_read &= !clear;
        }
    }

    fn activate(&mut self, activation: Activation) -> Result<Service, ActivateError> {
        let Activation {
            memory,
            queues,
            interrupt,
            ..
        } = activation;
        if queues.first().map(|q| q.index) != Some(0) {
            return Err(ActivateError::MissingQueue(0));
        }
        *self.shared.interrupt.lock() = Some(interrupt.clone());
        // A display change the guest has not acknowledged yet: tell it again.
        if self.shared.state.lock().events_read & EVENT_DISPLAY != 0 {
            interrupt.signal_config();
        }
        let shared = self.shared.clone();
        let mut command = Vec::new();
        Service::per_queue(queues, move |index, queue| {
            serve_queue(queue, index, &memory, &interrupt, |chain| {
                let readable = chain.readable();
                let writable = chain.writable();
                let len = (chain.readable_len() as usize).min(MAX_COMMAND);
                command.resize(len, 0);
                let read = SegmentCursor::new(&readable).read(&memory, &mut command);
                let response = {
                    let mut state = shared.state.lock();
                    match read {
                        Ok(n) if index == 0 => state.handle_control(&command[..n], &memory),
                        Ok(n) => state.handle_cursor(&command[..n]),
                        Err(e) => {
                            log::debug!("virtio-gpu: {e}");
                            protocol::Header::default().response(protocol::RESP_ERR_UNSPEC)
                        }
                    }
                };
                let written = SegmentCursor::new(&writable)
                    .write(&memory, &response)
                    .unwrap_or(0);
                Ok(written as u32)
            })
        })
    }

    /// The worker is gone: no more config interrupts to a driver that reset the device.
    fn reset(&mut self) {
        *self.shared.interrupt.lock() = None;
    }
}

#[cfg(test)]
mod tests;

//! The host's side of a VM's display hardware: where scanouts go, the keyboard and tablet
//! event queues, the display size the window asks for, and snapshots of the screen (the
//! control plane encodes and writes screendumps). It outlives reboots, so a window keeps
//! working while the machine behind it is rebuilt.

use crate::scanout::SharedSink;
use crate::virtio::gpu::GpuHandle;
use crate::virtio::input::{InputEvent, InputQueue};
use parking_lot::Mutex;
use std::sync::Arc;

/// Cheap to clone; every clone talks to the same display.
#[derive(Clone)]
pub struct DisplayPort {
    inner: Arc<Inner>,
}

struct Inner {
    keyboard: Arc<InputQueue>,
    tablet: Arc<InputQueue>,
    sink: Mutex<Option<SharedSink>>,
    size: Mutex<(u32, u32)>,
    gpu: Mutex<Option<GpuHandle>>,
}

impl DisplayPort {
    pub(crate) fn new(width: u32, height: u32) -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                keyboard: InputQueue::new()?,
                tablet: InputQueue::new()?,
                sink: Mutex::new(None),
                size: Mutex::new((width, height)),
                gpu: Mutex::new(None),
            }),
        })
    }

    /// Shows scanouts on `sink` from the next boot on (set it before starting the VM).
    pub fn set_sink(&self, sink: SharedSink) {
        *self.inner.sink.lock() = Some(sink);
    }

    pub(crate) fn sink(&self) -> Option<SharedSink> {
        self.inner.sink.lock().clone()
    }

    pub(crate) fn keyboard_queue(&self) -> Arc<InputQueue> {
        self.inner.keyboard.clone()
    }

    pub(crate) fn tablet_queue(&self) -> Arc<InputQueue> {
        self.inner.tablet.clone()
    }

    pub(crate) fn size(&self) -> (u32, u32) {
        *self.inner.size.lock()
    }

    /// The machine built a new GPU (a boot); None while between boots.
    pub(crate) fn set_gpu(&self, gpu: Option<GpuHandle>) {
        *self.inner.gpu.lock() = gpu;
    }

    /// Keyboard events (evdev key codes), ending with a sync.
    pub fn send_keyboard(&self, events: &[InputEvent]) {
        self.inner.keyboard.send(events);
    }

    /// Tablet events (absolute position 0..=0x7fff, buttons, wheel), ending with a sync.
    pub fn send_tablet(&self, events: &[InputEvent]) {
        self.inner.tablet.send(events);
    }

    /// The window is now `width` x `height`: the guest is offered that mode.
    pub fn set_display_size(&self, width: u32, height: u32) {
        *self.inner.size.lock() = (width, height);
        if let Some(gpu) = self.inner.gpu.lock().as_ref() {
            gpu.set_display_size(0, width, height);
        }
    }

    /// The guest's screen now: width, height, RGBA pixels. None before the guest set a mode.
    pub fn snapshot(&self) -> Option<(u32, u32, Vec<u8>)> {
        self.inner.gpu.lock().as_ref()?.snapshot(0)
    }
}
